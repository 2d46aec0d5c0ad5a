// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "copy_reader.hpp"

#include <vmcsum/error.hpp>
#include <vmcsum/sys/io.hpp>

#include <algorithm>
#include <cstring>

namespace vmcsum::core {

namespace {

// Two readers per device: one request in flight while the other's sectors are hashed, and a
// queue depth of two for the device (the loop driver and NVMe both serve more than one).
constexpr size_t k_threads_per_device = 2;

bool read_all(int fd, uint8_t* buf, size_t len, uint64_t off)
{
  const ssize_t n = sys::pread_full(fd, buf, len, off);
  return n >= 0 && static_cast<size_t>(n) == len;
}

} // namespace

CopyReader::CopyReader(size_t buffers, size_t buffer_size, uint16_t csum_type)
  : m_buffer_size(buffer_size)
  , m_pool_size(buffers)
  , m_csum_type(csum_type)
{
  Checksummer check(csum_type); // throws Error{unsupported} here rather than in a thread
  for (size_t i = 0; i < buffers; ++i) {
    m_pool.push_back(sys::aligned_buffer(buffer_size));
    m_free.push_back(m_pool.back().get());
  }
}

CopyReader::~CopyReader()
{
  {
    std::lock_guard lock(m_mutex);
    m_stop = true;
  }
  m_work.notify_all();
  for (auto& [devid, d] : m_devices) {
    (void)devid;
    for (auto& t : d->threads) {
      t.join();
    }
  }
}

size_t CopyReader::free_buffers() const
{
  std::lock_guard lock(m_mutex);
  return m_free.size();
}

void CopyReader::submit(CopyRead& r)
{
  if (r.length > m_buffer_size) {
    throw Error(Errc::internal, "CopyReader: a read longer than its buffers");
  }
  std::unique_lock lock(m_mutex);
  if (m_free.empty()) {
    throw Error(Errc::internal, "CopyReader: no free buffer (wait for earlier reads first)");
  }
  r.buf = m_free.back();
  m_free.pop_back();
  r.done = false;
  auto& d = m_devices[r.devid];
  if (!d) {
    d = std::make_unique<Device>();
    for (size_t i = 0; i < k_threads_per_device; ++i) {
      d->threads.emplace_back([this, dev = d.get()] { serve(*dev); });
    }
  }
  d->queue.push_back(&r);
  lock.unlock();
  m_work.notify_all();
}

void CopyReader::wait(CopyRead& r)
{
  std::unique_lock lock(m_mutex);
  m_done.wait(lock, [&] { return r.done; });
  if (r.buf) {
    m_free.push_back(r.buf);
    r.buf = nullptr;
  }
}

void CopyReader::serve(Device& d)
{
  Checksummer sum(m_csum_type);
  std::unique_lock lock(m_mutex);
  for (;;) {
    m_work.wait(lock, [&] { return m_stop || !d.queue.empty(); });
    if (m_stop) {
      return;
    }
    CopyRead* r = d.queue.front();
    d.queue.pop_front();
    lock.unlock();
    verify(*r, sum);
    lock.lock();
    r->done = true;
    m_done.notify_all();
  }
}

// The whole copy in one read; after a failure each sector alone, so one bad sector costs only
// itself (a device read past its end counts as unreadable too).
void CopyReader::verify(CopyRead& r, Checksummer& sum)
{
  const auto& cs = *r.csums;
  const uint32_t ss = cs.sectorsize;
  const size_t nsec = r.length / ss;
  r.bad.assign(nsec, 0);
  const bool ok = read_all(r.fd, r.buf, r.length, r.physical);
  uint8_t computed[Checksummer::k_max_size];
  for (size_t i = 0; i < nsec && i < cs.sectors(); ++i) {
    if (!cs.has(i)) {
      continue;
    }
    uint8_t* p = r.buf + i * ss;
    if (!ok && !read_all(r.fd, p, ss, r.physical + i * ss)) {
      r.bad[i] = 1; // unreadable; fill_copies records the read error
      continue;
    }
    sum.compute({p, ss}, computed);
    const auto exp = cs.csum(i);
    if (std::memcmp(computed, exp.data(), exp.size()) != 0) {
      r.bad[i] = 1;
    }
  }
}

} // namespace vmcsum::core
