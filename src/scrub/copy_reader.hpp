// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The per-copy pass's reads, overlapped, in two stages: each device has its own queue served by
// two reader threads that only read a copy with O_DIRECT (one device reads while the other is
// read too on raid1/raid10, and each device has a second request queued while the first is
// served); a read copy then goes to one shared queue of hasher threads, one per CPU, that
// verify its sectors against the stored csums. So reading never waits for hashing while a
// buffer is free, and a slow hash (sha256, blake2) runs on every core at once. Memory is a
// fixed pool of buffers shared by every device, whatever the file's size and the number of
// devices. Where no thread may be started (a cgroup's pids.max, RLIMIT_NPROC), the submitting
// thread reads and hashes itself.
#pragma once

#include <vmcsum/btrfs/csum_tree.hpp>
#include <vmcsum/checksum.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace vmcsum::core {

// One copy of one piece: read `length` bytes at `physical` of device `fd`, then compare each
// sector that has a csum in `csums` (shared by the piece's copies, read-only meanwhile).
struct CopyRead
{
  uint64_t devid = 0;
  int fd = -1;
  uint64_t physical = 0;
  size_t length = 0;
  const btrfs::RangeCsums* csums = nullptr;
  // Result, valid once CopyReader::wait() returned it: 1 for each sector that failed its csum
  // or could not be read (after a per-sector retry).
  std::vector<uint8_t> bad;
  bool done = false;
  uint8_t* buf = nullptr; // a pool buffer while queued or read
  size_t hashing = 0;     // slices of it not yet hashed (CopyReader's)
};

class CopyReader
{
public:
  // `buffers` buffers of `buffer_size` bytes (at least one piece's copies must fit);
  // `csum_type` as Checksummer takes it (one Checksummer per thread: it is not thread-safe).
  CopyReader(size_t buffers, size_t buffer_size, uint16_t csum_type);
  // Stops the threads after the read each is doing (queued reads are dropped) and joins them.
  ~CopyReader();
  CopyReader(const CopyReader&) = delete;
  CopyReader& operator=(const CopyReader&) = delete;

  size_t free_buffers() const;
  size_t buffers() const { return m_pool_size; }
  // Queues `r` on its device (threads started on first use). Needs a free buffer: callers
  // wait() for earlier reads first when free_buffers() is 0.
  void submit(CopyRead& r);
  // Blocks until `r` is done and gives its buffer back to the pool.
  void wait(CopyRead& r);

private:
  struct Device
  {
    std::deque<CopyRead*> queue;
    std::vector<std::thread> threads;
  };
  void read_loop(Device& d);
  void hash_loop();
  // With the lock held, after `r` was read: queues its slices for the hashers, or, when no
  // hasher thread could be started, hashes it on this thread (with `own_sum`, made on first
  // use) and marks it done.
  void hand_over(CopyRead& r, std::unique_lock<std::mutex>& lock,
                 std::optional<Checksummer>& own_sum);
  // Sectors [first, last) of a read copy: a hasher's unit of work, so that every hasher can
  // work on one copy when it is the only one read.
  struct Slice
  {
    CopyRead* read;
    size_t first;
    size_t last;
  };
  static void read_copy(CopyRead& r);
  static void hash_slice(const Slice& s, Checksummer& sum);

  size_t m_buffer_size;
  size_t m_pool_size;
  uint16_t m_csum_type;
  std::vector<sys::AlignedBuffer> m_pool;
  std::vector<uint8_t*> m_free;
  mutable std::mutex m_mutex;
  std::condition_variable m_work;      // a read queued, or stop
  std::condition_variable m_hash_work; // a read copy to hash, or stop
  std::condition_variable m_done;      // a copy verified
  bool m_stop = false;
  std::map<uint64_t, std::unique_ptr<Device>> m_devices; // by devid
  std::deque<Slice> m_hash_queue;
  std::vector<std::thread> m_hashers;   // started with the first device
  bool m_started = false;               // the hashers were asked for (some may have been refused)
  std::optional<Checksummer> m_own_sum; // submit()'s, for a device without reader threads
};

} // namespace vmcsum::core
