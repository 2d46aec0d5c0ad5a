// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The one I/O layer for reading images: whole reads despite EINTR and short reads, data ranges
// without reading holes, bounded memory, per-sector retry after EIO, cancellation between
// chunks, O_DIRECT read-back, the digest set and repair compare with, free space and the
// running kernel's release. scrub, audit, set, repair, probe and bench use these instead of
// copies of their own.
#pragma once

#include <vmcsum/sys/aligned_buffer.hpp>
#include <vmcsum/sys/fd.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>

namespace vmcsum::sys {

// pread(2) of `len` bytes at `off`, retried after EINTR and short reads. Returns the bytes read
// (fewer than `len` only at end of file), or -1 with errno set by the failing call.
ssize_t pread_full(int fd, void* buf, size_t len, uint64_t off);

struct ByteRange
{
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const ByteRange&) const = default;
};

// The data ranges of fd below `size`, as SEEK_DATA/SEEK_HOLE see them (a filesystem without
// them reports one range: the whole file). Throws Error naming `display` when lseek fails.
std::vector<ByteRange> data_ranges(int fd, uint64_t size, const std::string& display);

// Asked for between chunks: a cancelled read stops there (ChunkReader) and says so. `check`,
// when set, is called too and may throw (set and repair check their lease and throw their own
// stop); `flag` is the atomic a signal handler sets.
struct Cancel
{
  const std::atomic<bool>* flag = nullptr;
  std::function<void()> check;
  bool requested() const { return flag && flag->load(std::memory_order_relaxed); }
};

// xxh3-128 over a stream (what set compares source and copy with). Each data range may be
// prefixed with its offset and length (range()), so that equal digests mean equal range maps
// (holes where the source has holes) as well as equal bytes.
class Hasher
{
public:
  Hasher();
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void update(const void* data, size_t len);
  void range(uint64_t offset, uint64_t length);
  // 32 lower-case hex digits, high 64 bits first.
  std::string hex() const;
  void reset();

private:
  void* m_state; // XXH3_state_t*, kept out of this header
};

// What a ChunkReader read.
struct ReadOutcome
{
  uint64_t bytes_read = 0;       // delivered to on_data
  uint64_t unreadable_bytes = 0; // sectors that failed with EIO, all counted
  // The unreadable sectors, adjacent ones merged; at most max_listed entries (an extension of
  // the last one is always kept).
  std::vector<ByteRange> unreadable;
  bool cancelled = false; // stopped at Cancel::requested()
  // The file ended before a data range did (it shrank while read); reading stopped there.
  std::optional<uint64_t> short_at;
};

// Reads a file chunk by chunk through one fixed buffer (bounded memory whatever the file
// size): the data ranges (SEEK_DATA/SEEK_HOLE, so holes are never read) or given ranges. A
// chunk that fails with EIO is read again sector by sector; the sectors that still fail are
// recorded (ReadOutcome::unreadable) and the good ones delivered. Any other error throws Error
// naming `display`. With O_DIRECT descriptors (o_direct = true) requests are rounded up to
// whole 4 KiB blocks and the tail past the range is dropped.
class ChunkReader
{
public:
  // (offset, bytes): bytes read at offset; valid until the next call.
  using OnData = std::function<void(uint64_t offset, std::span<const uint8_t> bytes)>;
  // Called at the start of each range, before its data (Hasher::range).
  using OnRange = std::function<void(const ByteRange& range)>;

  struct Options
  {
    size_t chunk = 4u << 20;
    uint32_t sector = 4096; // retry unit after EIO (the filesystem's sector size)
    bool o_direct = false;
    size_t max_listed = 1000;
  };
  ChunkReader();
  explicit ChunkReader(const Options& opts);

  ReadOutcome read_data(int fd, uint64_t size, const std::string& display, const OnData& on_data,
                        const Cancel& cancel = {}, const OnRange& on_range = {});
  ReadOutcome read_ranges(int fd, const std::vector<ByteRange>& ranges, const std::string& display,
                          const OnData& on_data, const Cancel& cancel = {},
                          const OnRange& on_range = {});

private:
  bool read_one(int fd, const ByteRange& r, const std::string& display, const OnData& on_data,
                const Cancel& cancel, ReadOutcome& out);
  void retry_sectors(int fd, uint64_t off, size_t len, const OnData& on_data, ReadOutcome& out);

  Options m_opts;
  AlignedBuffer m_buf;
};

// What readback_hash read.
struct Readback
{
  bool readable = true;              // every byte of every range was read
  std::optional<uint64_t> failed_at; // first offset that could not be read
  int error = 0;                     // its errno (0 for end of file)
  bool cancelled = false;
  std::string digest;                     // Hasher over all ranges, each prefixed by range()
  std::vector<std::string> range_digests; // Hasher over each range's bytes alone
};

// Reads `ranges` of a file back with O_DIRECT, so that no page cache answers for the disk and
// btrfs verifies every checksum, and hashes them. The fd overload expects a descriptor opened
// with O_DIRECT; the (dirfd, name) overload opens the name below dirfd (openat_beneath, regular
// files only) and refuses it unless it is the inode `expect_ino` (pass 0 to skip that check).
// Ranges are clipped to `size`. Throws Error only when the file cannot be opened.
Readback readback_hash(int fd, const std::vector<ByteRange>& ranges, uint64_t size,
                       const Cancel& cancel = {});
Readback readback_hash(int dirfd, const std::string& name, uint64_t expect_ino,
                       const std::vector<ByteRange>& ranges, uint64_t size,
                       const Cancel& cancel = {});

// fstatvfs(2) f_bavail * f_frsize of fd's filesystem (btrfs already divides by the data
// profile); nullopt when unknown.
std::optional<uint64_t> free_bytes(int fd);

// uname(2) release of the running kernel, read once per process.
const std::string& kernel_release();

// The CPUs this process may run on (sched_getaffinity: a container or taskset may allow fewer
// than the machine has), at least 1: how many threads a CPU-bound stage should run.
size_t usable_cpus();

// Starts up to `n` threads running `fn` into `threads` and returns how many started. Where no
// more threads may be had (RLIMIT_NPROC, a cgroup's pids.max: std::thread throws
// std::system_error) it stops there instead of failing: the caller goes on with fewer, or with
// none does the work itself. Room for `n` more is reserved first: a failed allocation throws
// before any thread starts.
size_t start_threads(std::vector<std::thread>& threads, size_t n, const std::function<void()>& fn);

// Whether the calling thread read a disk between this watch's construction and read_disk():
// getrusage(RUSAGE_THREAD) ru_inblock, which the kernel counts for each read bio a thread
// submits (block/blk-core.c: submit_bio() -> task_io_account_read(); kernel/sys.c:
// getrusage()), moved, and ru_majflt did not. A step that read the disk was not served from
// memory: how a walk tells a cold tree from a cached one. A major page fault reads the disk
// too (vmcsum's own code or a library paged in after the page cache was dropped) and says
// nothing of the tree: such a step tells neither (unknown; the next one tells). Never disk
// when inactive (no system call), when getrusage fails, or on a kernel without
// CONFIG_TASK_IO_ACCOUNTING (Debian's has it): then nothing is read ahead and no pool grows.
// docs/kernel-facts.md 3.7.
class DiskReadWatch
{
public:
  enum class Seen { memory, disk, unknown };
  explicit DiskReadWatch(bool active = true);
  Seen seen() const;
  bool read_disk() const { return seen() == Seen::disk; }

private:
  bool m_active = false;
  long m_inblock = 0; // the thread's counts when the watch was made
  long m_majflt = 0;
};

} // namespace vmcsum::sys
