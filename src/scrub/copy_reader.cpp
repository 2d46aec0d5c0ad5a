// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "copy_reader.hpp"

#include <vmcsum/error.hpp>
#include <vmcsum/sys/io.hpp>

#include <algorithm>
#include <cstring>

namespace vmcsum::core {

namespace {

// Two readers per device: a queue depth of two for the device (the loop driver and NVMe both
// serve more than one), so the device never idles between requests.
constexpr size_t k_readers_per_device = 2;

// One hasher per CPU this process may run on, at most eight: the pool holds few buffers anyway.
size_t hasher_count()
{
  return std::min<size_t>(sys::usable_cpus(), 8);
}

// A read copy is hashed in slices of 1 MiB (of 4 KiB sectors: 256), so a 4 MiB copy keeps four
// hashers busy and a lone copy does not leave the other cores idle.
constexpr size_t k_slice_bytes = 1u << 20;

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
  m_hash_work.notify_all();
  for (auto& [devid, d] : m_devices) {
    (void)devid;
    for (auto& t : d->threads) {
      t.join();
    }
  }
  for (auto& t : m_hashers) {
    t.join();
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
  // Threads may be refused (a cgroup's pids.max, RLIMIT_NPROC): whatever could not be started
  // is done by the thread that would have handed it over (issue 16: slower, the same result).
  // A new device's readers come first, so that under a tight limit each device read so far
  // reads on its own while the submitter queues.
  auto& d = m_devices[r.devid];
  if (!d) {
    d = std::make_unique<Device>();
    sys::start_threads(d->threads, k_readers_per_device,
                       [this, dev = d.get()] { read_loop(*dev); });
  }
  if (!m_started) {
    m_started = true;
    sys::start_threads(m_hashers, hasher_count(), [this] { hash_loop(); });
  }
  r.buf = m_free.back();
  m_free.pop_back();
  r.done = false;
  if (d->threads.empty()) {
    lock.unlock();
    try {
      read_copy(r);
    } catch (...) { // memory for `bad`: the buffer goes back, the read is not done
      lock.lock();
      m_free.push_back(r.buf);
      r.buf = nullptr;
      throw;
    }
    lock.lock();
    hand_over(r, lock, m_own_sum);
    return;
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

void CopyReader::read_loop(Device& d)
{
  std::optional<Checksummer> own_sum; // only when no hasher thread could be started
  std::unique_lock lock(m_mutex);
  for (;;) {
    m_work.wait(lock, [&] { return m_stop || !d.queue.empty(); });
    if (m_stop) {
      return;
    }
    CopyRead* r = d.queue.front();
    d.queue.pop_front();
    lock.unlock();
    read_copy(*r);
    lock.lock();
    hand_over(*r, lock, own_sum);
  }
}

void CopyReader::hand_over(CopyRead& r, std::unique_lock<std::mutex>& lock,
                           std::optional<Checksummer>& own_sum)
{
  if (m_hashers.empty()) {
    lock.unlock();
    if (!own_sum) {
      own_sum.emplace(m_csum_type);
    }
    hash_slice({&r, 0, r.bad.size()}, *own_sum);
    lock.lock();
    r.done = true;
    m_done.notify_all();
    return;
  }
  const size_t per_slice = std::max<size_t>(1, k_slice_bytes / r.csums->sectorsize);
  r.hashing = 0;
  for (size_t first = 0; first < r.bad.size(); first += per_slice) {
    m_hash_queue.push_back({&r, first, std::min(r.bad.size(), first + per_slice)});
    ++r.hashing;
  }
  if (r.hashing == 0) { // shorter than a sector: nothing to verify
    r.done = true;
    m_done.notify_all();
  }
  m_hash_work.notify_all();
}

void CopyReader::hash_loop()
{
  Checksummer sum(m_csum_type);
  std::unique_lock lock(m_mutex);
  for (;;) {
    m_hash_work.wait(lock, [&] { return m_stop || !m_hash_queue.empty(); });
    if (m_stop) {
      return;
    }
    const Slice slice = m_hash_queue.front();
    m_hash_queue.pop_front();
    lock.unlock();
    hash_slice(slice, sum);
    lock.lock();
    if (--slice.read->hashing == 0) {
      slice.read->done = true;
      m_done.notify_all();
    }
  }
}

// The whole copy in one read; after a failure each sector that has a csum alone, so one bad
// sector costs only itself (a device read past its end counts as unreadable too).
void CopyReader::read_copy(CopyRead& r)
{
  const auto& cs = *r.csums;
  const uint32_t ss = cs.sectorsize;
  const size_t nsec = r.length / ss;
  r.bad.assign(nsec, 0);
  if (read_all(r.fd, r.buf, r.length, r.physical)) {
    return;
  }
  for (size_t i = 0; i < nsec && i < cs.sectors(); ++i) {
    if (cs.has(i) && !read_all(r.fd, r.buf + i * ss, ss, r.physical + i * ss)) {
      r.bad[i] = 1; // unreadable; fill_copies records the read error
    }
  }
}

// Each sector of the slice that has a csum and could be read, compared with its csum. Slices
// of one copy write disjoint parts of its `bad`.
void CopyReader::hash_slice(const Slice& s, Checksummer& sum)
{
  CopyRead& r = *s.read;
  const auto& cs = *r.csums;
  const uint32_t ss = cs.sectorsize;
  uint8_t computed[Checksummer::k_max_size];
  for (size_t i = s.first; i < s.last && i < cs.sectors(); ++i) {
    if (!cs.has(i) || r.bad[i]) {
      continue;
    }
    sum.compute({r.buf + i * ss, ss}, computed);
    const auto exp = cs.csum(i);
    if (std::memcmp(computed, exp.data(), exp.size()) != 0) {
      r.bad[i] = 1;
    }
  }
}

} // namespace vmcsum::core
