// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Reads the csum tree ahead of the per-copy pass. With a cold cache each TREE_SEARCH of the
// csum tree waits for its leaves to be read from disk, one after the other (the search does no
// readahead): for a 1 GiB sha256 image (8 MiB of csums) that was 0.6 s of the submitting
// thread's time, during which no new read was queued. Two threads here run the same searches
// (btrfs::read_csums) up to a bounded distance ahead and drop the results: the leaves are then
// in the kernel's cache when the pass asks for them, and the pass keeps the one csum lookup.
#pragma once

#include <vmcsum/btrfs/ioctl.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace vmcsum::core {

class CsumPrefetch
{
public:
  // [start, end) logical ranges, ascending, that the pass will verify in this order.
  using Range = std::pair<uint64_t, uint64_t>;
  CsumPrefetch(int fd, const btrfs::FsInfo& info, const std::vector<Range>& ranges);
  // Stops after the searches under way (at most one chunk each) and joins.
  ~CsumPrefetch();
  CsumPrefetch(const CsumPrefetch&) = delete;
  CsumPrefetch& operator=(const CsumPrefetch&) = delete;

  // The pass has reached `logical`: chunks up to k_lead beyond it may be searched.
  void reached(uint64_t logical);

  // How far ahead of the pass the searches may run, in logical bytes (for sha256, 256 MiB of
  // data is 2 MiB of csum leaves: a bound on the cache the prefetch fills), and the range one
  // search covers.
  static constexpr uint64_t k_lead = 256u << 20;
  static constexpr uint64_t k_chunk = 16u << 20;

private:
  void run();

  int m_fd;
  const btrfs::FsInfo& m_info;
  std::vector<Range> m_chunks; // the ranges cut at k_chunk
  std::atomic<size_t> m_next{0};
  std::mutex m_mutex;
  std::condition_variable m_moved; // the pass moved on, or stop
  uint64_t m_reached = 0;
  bool m_stop = false;
  std::vector<std::thread> m_threads;
};

} // namespace vmcsum::core
