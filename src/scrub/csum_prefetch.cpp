// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "csum_prefetch.hpp"

#include <vmcsum/btrfs/csum_tree.hpp>
#include <vmcsum/sys/io.hpp>

#include <exception>

namespace vmcsum::core {

namespace {

// Two searches in flight: leaves of neighbouring chunks are read at once. Ranges shorter than
// k_min_bytes are left to the pass alone (a thread costs more than it saves there).
constexpr size_t k_threads = 2;
constexpr uint64_t k_min_bytes = 32u << 20;

} // namespace

CsumPrefetch::CsumPrefetch(int fd, const btrfs::FsInfo& info, const std::vector<Range>& ranges)
  : m_fd(fd)
  , m_info(info)
{
  uint64_t total = 0;
  for (const auto& [start, end] : ranges) {
    for (uint64_t a = start; a < end; a += k_chunk) {
      m_chunks.emplace_back(a, std::min(end, a + k_chunk));
    }
    total += end - start;
  }
  if (total < k_min_bytes) {
    return;
  }
  m_reached = m_chunks.front().first;
  // None or one may be started (pids.max, RLIMIT_NPROC): the prefetch only saves time.
  sys::start_threads(m_threads, k_threads, [this] { run(); });
}

CsumPrefetch::~CsumPrefetch()
{
  {
    std::lock_guard lock(m_mutex);
    m_stop = true;
  }
  m_moved.notify_all();
  for (auto& t : m_threads) {
    t.join();
  }
}

void CsumPrefetch::reached(uint64_t logical)
{
  if (m_threads.empty()) {
    return;
  }
  {
    std::lock_guard lock(m_mutex);
    if (logical <= m_reached) {
      return;
    }
    m_reached = logical;
  }
  m_moved.notify_all();
}

void CsumPrefetch::run()
{
  btrfs::RangeCsums scratch;
  for (size_t i = m_next++; i < m_chunks.size(); i = m_next++) {
    const auto [start, end] = m_chunks[i];
    {
      std::unique_lock lock(m_mutex);
      m_moved.wait(lock, [&] { return m_stop || start <= m_reached + k_lead; });
      if (m_stop) {
        return;
      }
    }
    try {
      btrfs::read_csums(m_fd, m_info, start, end - start, scratch, {});
    } catch (const std::exception&) {
      return; // the pass's own search reports what is wrong
    }
  }
}

} // namespace vmcsum::core
