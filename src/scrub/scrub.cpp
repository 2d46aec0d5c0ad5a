// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum scrub: the per-copy pass (devices, O_DIRECT, user-space checksums), the kernel-verified
// pass (the file through btrfs, O_DIRECT) and the classification.
#include "copy_reader.hpp"
#include "csum_prefetch.hpp"
#include "scrub_raid56.hpp"

#include <vmcsum/btrfs/chunk_map.hpp>
#include <vmcsum/btrfs/csum_tree.hpp>
#include <vmcsum/btrfs/file_extents.hpp>
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/btrfs/raid56.hpp>
#include <vmcsum/btrfs/subvolume.hpp>
#include <vmcsum/btrfs/tree_search.hpp>
#include <vmcsum/checksum.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/kernel_log_reader.hpp>
#include <vmcsum/host/kernel_policy.hpp>
#include <vmcsum/host/kernel_record.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/host/rate_limiter.hpp>
#include <vmcsum/scrub/scrub.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/walk.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <system_error>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <xxhash.h>

namespace vmcsum::core {

namespace {

constexpr long k_btrfs_magic = 0x9123683e; // BTRFS_SUPER_MAGIC (linux/magic.h)
constexpr uint8_t k_extent_item_key = 168; // BTRFS_EXTENT_ITEM_KEY
constexpr uint64_t k_extent_tree = 2;
constexpr uint64_t k_max_compressed = 128 * 1024; // BTRFS_MAX_COMPRESSED (on-disk extent size)

// What one filesystem needs, kept for the run; the chunk map and the device list are read per
// pass (read_map).
struct FsCtx
{
  btrfs::FsInfo info;
  std::unique_ptr<btrfs::ChunkMap> chunks =
    std::make_unique<btrfs::ChunkMap>(std::vector<btrfs::Chunk>{});
  std::map<uint64_t, std::string> dev_paths;
  std::map<uint64_t, sys::Fd> dev_fds;
  std::map<uint64_t, bool> io_errors;
  std::unique_ptr<Checksummer> sum;
  // Which kernel ran at which generation (an entry for this run added first, when the state
  // directory allows it).
  std::optional<KernelRecord> record;
  // What earlier runs confirmed through the kernel (scrub_state.hpp); empty without a state
  // directory.
  ScrubState state;
};

// All `len` bytes or false (a device read past its end counts as EIO).
bool full_pread(int fd, uint8_t* buf, size_t len, uint64_t off)
{
  const ssize_t n = sys::pread_full(fd, buf, len, off);
  if (n >= 0 && static_cast<size_t>(n) < len) {
    errno = EIO;
  }
  return n >= 0 && static_cast<size_t>(n) == len;
}

// Thrown from the chunk loops when the Cancel token asks to stop; caught per file.
struct Interrupted
{
};

// FIEMAP flags of extents whose sectors have no 1:1 logical address to read (skipped).
constexpr uint32_t k_unverifiable = FIEMAP_EXTENT_UNWRITTEN | FIEMAP_EXTENT_DATA_INLINE |
                                    FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_UNKNOWN |
                                    FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_DATA_ENCRYPTED;

// Thrown when an address of the file lies in no chunk, even in the chunk map read again: its
// data moved (a balance removed the chunk) while it was scrubbed. The pass is done again.
struct Moved
{
};

// The device copies of `logical`; Moved when no chunk holds it.
std::vector<btrfs::Copy> copies_at(const FsCtx& fs, uint64_t logical)
{
  if (!fs.chunks->find(logical)) {
    throw Moved{};
  }
  return device_copies(*fs.chunks, logical);
}

// A run of file data at a logical address: where its sectors' findings are reported.
struct Segment
{
  uint64_t logical = 0;
  uint64_t length = 0;
  uint64_t file_offset = 0;
};

// One piece whose copies are being read: contiguous on every copy, at most one buffer long. Its
// segments (sorted by logical address) may come from several file extents that lie next to
// each other on disk.
struct Piece
{
  uint64_t logical = 0;
  std::vector<Segment> segs; // compressed: one, whose file_offset every finding gets
  bool compressed = false;
  uint64_t bad_length = 0; // length reported for a bad sector (compressed: the extent's)
  btrfs::RangeCsums csums;
  std::vector<btrfs::Copy> copies;
  std::vector<CopyRead> reads; // one per copy, in the order of `copies`
};

// The per-copy pass's pieces in flight, oldest first, and their reader. In this order so the
// reader's threads are joined before the pieces they write into go.
struct InFlight
{
  InFlight(size_t buffers, size_t buffer_size, uint16_t csum_type)
    : reader(buffers, buffer_size, csum_type)
  {
  }
  std::deque<Piece> pieces;
  CopyReader reader;
};

// Read buffers shared by all devices: 32 MiB in flight (4 MiB requests: 8), never fewer than
// the four copies of a raid1c4 piece; a bound on memory whatever the image and device count.
constexpr size_t k_inflight_bytes = 32u << 20;
// File extents gathered before they are sorted by disk address and read: a fragmented image's
// extents (100k+ of 4 KiB) then become long sequential reads instead of random ones. A file
// with more extents is read in several windows, and each window's reads pass again through the
// areas where the guest's rewrites were allocated (they hold every window's extents, interleaved
// at a few KiB), reading them through once per window: 64k extents read a 1 GiB image with 165k
// extents 1.8 times over (1.86 GiB read for 1 GiB; one window: 1.44 GiB). 24 bytes each,
// reserved once and touched only as filled: 6 MiB, what the 64 MiB budget leaves beside the
// read buffers (32 MiB), a NODATASUM raid1c4 image's four compare buffers (16 MiB), the kernel
// pass's buffer (4 MiB) and the program (about 10 MiB).
constexpr size_t k_window_segments = 256 * 1024;
// Neighbours on disk at most this far apart are read in one request, the gap read and ignored:
// a rewritten block leaves its old 4 KiB pinned inside the original extent (btrfs frees an
// extent only whole), so a randomly rewritten image's older data has a gap every few blocks,
// and reading 4-128 KiB more costs less than one more request (a seek on rotating disks).
constexpr uint64_t k_max_gap = 128 * 1024;
// The logical ranges a sorted window's segments cover, neighbours less than a csum leaf's
// reach apart merged (their csums sit in the same leaves): what CsumPrefetch searches.
std::vector<CsumPrefetch::Range> csum_ranges(std::span<const Segment> w)
{
  constexpr uint64_t k_merge = 1u << 20;
  std::vector<CsumPrefetch::Range> out;
  for (const auto& sg : w) {
    if (!out.empty() && sg.logical <= out.back().second + k_merge) {
      out.back().second = std::max(out.back().second, sg.logical + sg.length);
    } else {
      out.emplace_back(sg.logical, sg.logical + sg.length);
    }
  }
  return out;
}

size_t inflight_buffers(size_t chunk)
{
  return std::clamp<size_t>(k_inflight_bytes / std::max<size_t>(chunk, 1), 4, 16);
}

class Scrubber
{
public:
  // Keeps references to all four: the owner (scrub(), ScrubSession::Impl) outlives it.
  Scrubber(const ScrubOptions& opts, const HostContext& host, const ScrubProgress& progress,
           const sys::Cancel& cancel)
    : m_opts(opts)
    , m_host(host)
    , m_progress(progress)
    , m_cancel(cancel)
    , m_own_limiter(opts.limit_rate)
    , m_limiter(opts.shared_limiter ? *opts.shared_limiter : m_own_limiter)
  {
    m_buf = sys::aligned_buffer(m_opts.chunk);
    set_ranges(opts.ranges);
    m_sector_a = sys::aligned_buffer(64 * 1024);
    m_sector_b = sys::aligned_buffer(64 * 1024);
  }

  // Sorted and merged, so each sector is verified once and each extent finds its ranges by
  // binary search (a repair can ask for many thousands of sectors). Empty: whole files.
  void set_ranges(const std::vector<std::pair<uint64_t, uint64_t>>& ranges)
  {
    m_whole = ranges.empty();
    m_ranges = ranges;
    std::sort(m_ranges.begin(), m_ranges.end());
    std::vector<std::pair<uint64_t, uint64_t>> merged;
    for (const auto& [off, len] : m_ranges) {
      if (!merged.empty() && off <= merged.back().first + merged.back().second) {
        auto& last = merged.back();
        last.second = std::max(last.first + last.second, off + len) - last.first;
      } else if (len > 0) {
        merged.emplace_back(off, len);
      }
    }
    m_ranges = std::move(merged);
  }
  void set_total(uint64_t total) { m_total = total; }
  FileScrub scrub_file(const sys::FileRef& ref);
  FileScrub scrub_open(int fd, const struct stat& st, const std::string& path);
  const std::vector<std::string>& notes() const { return m_notes; }
  std::vector<ReadWindow>& windows() { return m_windows; }
  const std::vector<ReadWindow>& windows() const { return m_windows; }
  bool interrupted() const { return m_interrupted; }

private:
  // Between pieces: the caller's check (may throw its own stop), then the stop flag.
  void check_cancel()
  {
    if (m_cancel.check) {
      m_cancel.check();
    }
    if (m_cancel.requested()) {
      m_interrupted = true;
      throw Interrupted{};
    }
  }
  FsCtx& fs_for(int fd, const std::string& path);
  void map_all(FsCtx& fs, std::span<const Segment> segs, const std::string& path);
  void read_map(FsCtx& fs, const std::string& path);
  int dev_fd(FsCtx& fs, uint64_t devid);
  // bad_length: what a bad sector's length is reported as (0: the sector size).
  void verify_range(FsCtx& fs, FileScrub& f, uint64_t logical, uint64_t length,
                    uint64_t file_offset, bool compressed, uint64_t bad_length = 0);
  void verify_piece(FsCtx& fs, FileScrub& f, uint64_t logical, uint64_t length,
                    std::vector<Segment> segs, bool compressed, uint64_t bad_length);
  void queue_segment(FsCtx& fs, FileScrub& f, const Segment& s);
  void flush_window(FsCtx& fs, FileScrub& f);
  void verify_run(FsCtx& fs, FileScrub& f, std::span<const Segment> run);
  void finish_oldest(FsCtx& fs, FileScrub& f);
  bool read_copy_sector(FsCtx& fs, const btrfs::Copy& c, uint8_t* out, uint32_t ss);
  void fill_copies(FsCtx& fs, BadSector& b, std::span<const uint8_t> expected);
  void add_rebuilt_copies(FsCtx& fs, BadSector& b, std::span<const uint8_t> expected);
  DeviceRead device_reader(FsCtx& fs);
  bool note_raid56_piece(FsCtx& fs, FileScrub& f, uint64_t logical, uint64_t devid, uint64_t bytes);
  void check_parity(FsCtx& fs, FileScrub& f);
  uint64_t compressed_disk_length(int fd, uint64_t disk_bytenr, uint64_t& start,
                                  const std::string& path);
  void compare_copies(FsCtx& fs, FileScrub& f, const std::vector<btrfs::Copy>& copies,
                      uint64_t logical, uint64_t length, uint64_t file_offset);
  void date_findings(FsCtx& fs, FileScrub& f, int fd);
  static bool scrubbable(int fd, const struct stat& st, FileScrub& f);
  bool note_users(const ProcScan& procs, const struct stat& st, FileScrub& f, ClassifyContext& ctx);
  void verify_stable(int fd, FsCtx& fs, FileScrub& f, const std::string& path, bool& writing,
                     const std::function<bool(FileScrub&)>& writers_now);
  // A file's layout digest, and the first transaction that may have changed it since (0: not
  // known).
  struct Layout
  {
    uint64_t digest = 0;
    uint64_t transid = 0;
  };
  std::optional<Layout> verify_extents(int fd, FsCtx& fs, FileScrub& f, const std::string& path,
                                       bool layout);
  bool queue_from_items(int fd, FsCtx& fs, FileScrub& f, uint64_t& layout);
  uint64_t layout_of(int fd, const FileScrub& f);
  bool layout_moved(int fd, const FileScrub& f, const Layout& before);
  void verify_compressed(int fd, FsCtx& fs, FileScrub& f, const btrfs::Extent& e,
                         const std::string& path, std::set<uint64_t>& compressed_seen);
  static void classify_all(FileScrub& f, ClassifyContext& ctx);
  void kernel_pass(FsCtx& fs, FileScrub& f);
  std::vector<std::pair<uint64_t, uint64_t>> kernel_spans(int kfd, const FileScrub& f,
                                                          uint32_t ss) const;
  static std::pair<uint64_t, uint64_t> sector_range(const BadSector& b, uint32_t ss);
  std::vector<const KernelConfirmation*>
  confirmed_before(const FsCtx& fs, const FileScrub& f,
                   std::vector<std::pair<uint64_t, uint64_t>>& skip) const;
  ReadWindow start_window(const FsCtx& fs, const FileScrub& f) const;
  void kernel_read_span(int kfd, FileScrub& f, uint64_t span_off, uint64_t span_len, uint32_t ss,
                        ReadWindow& win, std::vector<uint64_t>& eio);
  void match_kernel_eio(FsCtx& fs, FileScrub& f, const std::vector<uint64_t>& eio,
                        const std::vector<const KernelConfirmation*>& confirmed,
                        const std::vector<std::pair<uint64_t, uint64_t>>& skip);
  bool read_repaired(FsCtx& fs, BadSector& b);
  void remember(FsCtx& fs, const FileScrub& f);
  void recheck(int fd, FsCtx& fs, FileScrub& f);
  static void note_lost_csums(int fd, FileScrub& f);
  void recheck_divergent(int fd, FsCtx& fs, FileScrub& f);
  void tick(uint64_t bytes, const std::string& path)
  {
    m_done += bytes;
    if (m_progress) {
      m_progress(m_done, m_total, path, k_phase_per_copy);
    }
  }
  // The kernel pass counts apart: its bytes are read a second time, so they are not in the
  // run's total, and without a phase of its own the line would sit at 100% while it reads.
  void kernel_tick(uint64_t bytes, const std::string& path)
  {
    m_kernel_done += bytes;
    if (m_progress) {
      m_progress(m_kernel_done, m_kernel_total, path, k_phase_kernel);
    }
  }

  const ScrubOptions& m_opts;
  const HostContext& m_host;
  const ScrubProgress& m_progress;
  const sys::Cancel& m_cancel;
  bool m_interrupted = false;
  bool m_whole = true; // no ranges asked for: whole files
  RateLimiter m_own_limiter;
  RateLimiter& m_limiter;
  sys::AlignedBuffer m_buf, m_sector_a, m_sector_b;
  std::vector<std::pair<uint64_t, uint64_t>> m_ranges; // opts.ranges, sorted and merged
  std::map<std::string, FsCtx> m_fs;                   // by fsid
  btrfs::RangeCsums m_stored;
  uint64_t m_done = 0, m_total = 0;
  uint64_t m_kernel_done = 0, m_kernel_total = 0; // of the current file's kernel pass
  int m_fd = -1; // the file being scrubbed (any fd on its filesystem serves TREE_SEARCH)
  CsumPrefetch* m_prefetch = nullptr;          // during flush_window
  std::vector<sys::AlignedBuffer> m_copy_bufs; // one per further copy (divergence check)
  std::unique_ptr<InFlight> m_inflight;        // during verify_extents
  std::vector<Segment> m_window;               // extents not yet read, in file order
  std::set<uint64_t> m_full_stripes;           // RAID5/6 full stripes the file's pieces lie in
  std::vector<std::string> m_notes;            // per run, not per file
  std::string m_boot_id = current_boot_id();
  std::vector<ReadWindow> m_windows;       // this run's kernel passes
  std::optional<ReadWindow> m_last_window; // the current file's, for remember()
};

FsCtx& Scrubber::fs_for(int fd, const std::string& path)
{
  auto info = btrfs::fs_info(fd, path);
  auto it = m_fs.find(info.fsid);
  if (it != m_fs.end()) {
    return it->second;
  }
  if (!info.csum_info_valid) {
    throw Error(Errc::unsupported, "the kernel does not report the checksum type", path);
  }
  FsCtx ctx;
  ctx.info = info;
  ctx.sum = std::make_unique<Checksummer>(info.csum_type);
  // Not another user's state directory (root's, for a user without privilege): not ours to read
  // or write, and its refusals would only add warnings after the one that matters (the trees
  // need CAP_SYS_ADMIN). A user's own --state-dir is used.
  struct stat sst = {};
  const bool foreign_state =
    ::geteuid() != 0 && ::stat(m_opts.state_dir.c_str(), &sst) == 0 && sst.st_uid != ::geteuid();
  if (!m_opts.state_dir.empty() && !foreign_state) {
    try {
      ctx.record = record_now(fd, path, m_opts.state_dir, "run", m_opts.kernel_release);
      if (ctx.record->restarted()) {
        m_notes.push_back("kernel record of " + info.fsid + ": " + *ctx.record->restarted());
      }
    } catch (const Error& e) {
      m_notes.push_back("kernel record of " + info.fsid + " not updated: " + e.what());
      try {
        ctx.record = load_record(m_opts.state_dir, info.fsid);
      } catch (const Error& e2) {
        m_notes.push_back("kernel record of " + info.fsid + " unreadable: " + e2.what());
      }
    }
    try {
      ctx.state = load_scrub_state(m_opts.state_dir, info.fsid);
    } catch (const Error& e) {
      m_notes.push_back(std::string("scrub state not used (every bad sector is read through "
                                    "btrfs again): ") +
                        e.what());
    }
  }
  ctx.state.fsid = info.fsid;
  return m_fs.emplace(info.fsid, std::move(ctx)).first->second;
}

// The chunk map and the device list, read (again). The map is read per pass (verify_extents),
// after the layout it is checked against: btrfs hands a new chunk the end of the highest chunk
// that exists now (find_next_chunk() in fs/btrfs/volumes.c), so once the highest chunk is gone
// (a balance emptied it, the cleaner removed it) its addresses are given out again, and a map
// read earlier would send them to the old chunk's devices. A device whose path changed (btrfs
// replace keeps the devid) has its descriptor closed, to be opened again at its new path.
// Called from the main thread with no Chunk pointer held: the readers never look at the map.
void Scrubber::read_map(FsCtx& fs, const std::string& path)
{
  *fs.chunks = btrfs::ChunkMap::read(m_fd, path);
  for (auto& [devid, dev] : btrfs::device_paths(m_fd, path)) {
    auto& known = fs.dev_paths[devid];
    if (known != dev) {
      fs.dev_fds.erase(devid);
      known = dev;
    }
    if (!fs.io_errors.count(devid) && !dev.empty()) {
      const auto st = btrfs::dev_stats(m_fd, devid, path);
      fs.io_errors[devid] = st.read_errs + st.write_errs + st.flush_errs > 0;
    }
  }
}

// Data written during the pass (a file open for writing) can lie in a chunk allocated since the
// map was read: read it again when a segment is unmapped. What is still unmapped then moved.
void Scrubber::map_all(FsCtx& fs, std::span<const Segment> segs, const std::string& path)
{
  const uint32_t ss = fs.info.sectorsize;
  auto mapped = [&] {
    return std::all_of(segs.begin(), segs.end(), [&](const Segment& s) {
      return fs.chunks->find(s.logical) &&
             fs.chunks->find(s.logical + std::max(s.length, uint64_t{ss}) - 1);
    });
  };
  if (mapped()) {
    return;
  }
  read_map(fs, path);
  if (!mapped()) {
    throw Moved{};
  }
}

int Scrubber::dev_fd(FsCtx& fs, uint64_t devid)
{
  auto it = fs.dev_fds.find(devid);
  if (it == fs.dev_fds.end()) {
    auto p = fs.dev_paths.find(devid);
    if (p == fs.dev_paths.end() || p->second.empty()) {
      throw Error(Errc::not_found, "device " + std::to_string(devid) + " is missing");
    }
    // O_DIRECT: what is on the medium, not what the block device's page cache holds.
    it = fs.dev_fds.emplace(devid, sys::open_or_throw(p->second, O_RDONLY | O_DIRECT)).first;
  }
  return *it->second;
}

bool Scrubber::read_copy_sector(FsCtx& fs, const btrfs::Copy& c, uint8_t* out, uint32_t ss)
{
  m_limiter.consumed(ss);
  return full_pread(dev_fd(fs, c.devid), out, ss, c.physical);
}

// Re-reads every copy of one bad sector: the csum of each, and whether the copies are equal.
void Scrubber::fill_copies(FsCtx& fs, BadSector& b, std::span<const uint8_t> expected)
{
  const uint32_t ss = fs.info.sectorsize;
  uint8_t computed[Checksummer::k_max_size];
  b.copies.clear();
  b.copies_identical = true;
  bool have_first = false;
  for (const auto& c : copies_at(fs, b.logical)) {
    SectorCopy sc;
    sc.mirror = c.mirror;
    sc.devid = c.devid;
    sc.device = fs.dev_paths[c.devid];
    sc.physical = c.physical;
    uint8_t* dst = have_first ? m_sector_b.get() : m_sector_a.get();
    if (!read_copy_sector(fs, c, dst, ss)) {
      sc.read_error = true;
      b.copies_identical = false;
    } else {
      fs.sum->compute({dst, ss}, computed);
      std::span<const uint8_t> got(computed, fs.sum->size());
      sc.csum = to_hex(got);
      sc.matches = std::equal(got.begin(), got.end(), expected.begin(), expected.end());
      if (!sc.matches && std::all_of(dst, dst + ss, [&](uint8_t x) { return x == dst[0]; })) {
        sc.fill = dst[0];
      }
      if (have_first && std::memcmp(m_sector_a.get(), dst, ss) != 0) {
        b.copies_identical = false;
      }
      have_first = true;
    }
    b.copies.push_back(std::move(sc));
  }
  add_rebuilt_copies(fs, b, expected);
}

// RAID5/6: the sector's rebuilds from the rest of its full stripe, as further copies (the
// kernel's read retries compute the same). m_sector_a holds the device copy's bytes.
void Scrubber::add_rebuilt_copies(FsCtx& fs, BadSector& b, std::span<const uint8_t> expected)
{
  const btrfs::Chunk* chunk = fs.chunks->find(b.logical);
  if (!chunk || !btrfs::is_raid56(*chunk)) {
    return;
  }
  const uint32_t ss = fs.info.sectorsize;
  const bool have_first = !b.copies.empty() && !b.copies.front().read_error;
  for (auto& r : rebuilt_copies(*chunk, b.logical, ss, device_reader(fs), *fs.sum, expected,
                                fs.dev_paths, static_cast<unsigned>(b.copies.size() + 1))) {
    if (r.copy.read_error || !have_first ||
        std::memcmp(m_sector_a.get(), r.bytes.data(), ss) != 0) {
      b.copies_identical = false;
    }
    b.copies.push_back(std::move(r.copy));
  }
}

// Reads for the RAID5/6 code, charged to the rate limit; false for a missing device.
DeviceRead Scrubber::device_reader(FsCtx& fs)
{
  return [this, &fs](uint64_t devid, uint64_t physical, uint8_t* out, size_t len) {
    auto p = fs.dev_paths.find(devid);
    if (p == fs.dev_paths.end() || p->second.empty()) {
      return false;
    }
    m_limiter.consumed(len);
    return full_pread(dev_fd(fs, devid), out, len, physical);
  };
}

// RAID5/6: remembers the piece's full stripe for check_parity(). False when the piece's data
// unit is on a missing device (a degraded mount): its `bytes` are then counted as skipped, not
// verified, and a note says so (the kernel reads them rebuilt from parity).
bool Scrubber::note_raid56_piece(FsCtx& fs, FileScrub& f, uint64_t logical, uint64_t devid,
                                 uint64_t bytes)
{
  const auto full = full_stripe_of(*fs.chunks, logical);
  if (!full) {
    return true;
  }
  if (fs.dev_paths[devid].empty()) {
    const std::string note = "device " + std::to_string(devid) +
                             " is missing (degraded): sectors stored on it were not verified";
    if (std::find(f.notes.begin(), f.notes.end(), note) == f.notes.end()) {
      f.notes.push_back(note);
    }
    f.skipped_bytes += bytes;
    return false;
  }
  m_full_stripes.insert(*full);
  return true;
}

// RAID5/6: P (and Q) of every full stripe the file's pieces lay in, once the bad sectors are
// known (they explain a mismatch in their row).
void Scrubber::check_parity(FsCtx& fs, FileScrub& f)
{
  std::set<uint64_t> bad;
  for (const auto& b : f.bad) {
    bad.insert(b.logical);
  }
  // Runs of consecutive full stripes of one chunk, one request per device each (at most 16
  // rows: 1 MiB per device).
  constexpr uint64_t k_max_rows = 16;
  for (auto it = m_full_stripes.begin(); it != m_full_stripes.end();) {
    check_cancel();
    const btrfs::Chunk* chunk = fs.chunks->find(*it);
    if (!chunk) { // the map read again during the pass lacks it: the data moved
      throw Moved{};
    }
    const btrfs::Chunk& c = *chunk;
    const uint64_t row_bytes = (c.num_stripes - btrfs::parity_stripes(c)) * c.stripe_len;
    const uint64_t first = *it;
    uint64_t rows = 1;
    for (++it; it != m_full_stripes.end() && rows < k_max_rows && *it == first + rows * row_bytes &&
               fs.chunks->find(*it) == &c;
         ++it) {
      ++rows;
    }
    check_full_stripes(c, first, rows, fs.info.sectorsize, device_reader(fs), fs.dev_paths, bad, f);
  }
  m_full_stripes.clear();
}

// One piece: contiguous on every copy and at most one buffer long. Its copies are queued on
// their devices' readers (CopyReader verifies them there); finish_oldest() collects the result.
// The rate limit is charged here, on the one thread that submits, so it stays exact.
void Scrubber::verify_piece(FsCtx& fs, FileScrub& f, uint64_t logical, uint64_t length,
                            std::vector<Segment> segs, bool compressed, uint64_t bad_length)
{
  const uint32_t ss = fs.info.sectorsize;
  Piece p;
  if (m_prefetch) {
    m_prefetch->reached(logical);
  }
  btrfs::read_csums(m_fd, fs.info, logical, length, p.csums, f.path);
  const size_t nsec = p.csums.sectors();
  // Only the sectors of the piece's segments are this file's: the gaps between them (read to
  // save a request) belong to other extents and are neither verified nor counted.
  std::vector<uint8_t> ours(nsec, segs.empty() ? 1 : 0);
  for (const auto& sg : segs) {
    for (uint64_t a = sg.logical; a < sg.logical + sg.length; a += ss) {
      if (a >= p.csums.logical && (a - p.csums.logical) / ss < nsec) {
        ours[(a - p.csums.logical) / ss] = 1;
      }
    }
  }
  size_t with_csum = 0, owned = 0;
  for (size_t i = 0; i < nsec; ++i) {
    if (!ours[i]) {
      p.csums.present[i] = 0;
    }
    with_csum += p.csums.has(i) ? 1 : 0;
    owned += ours[i];
  }
  p.copies = copies_at(fs, logical);
  if (!note_raid56_piece(fs, f, logical, p.copies.front().devid, owned * ss)) {
    return;
  }
  f.no_csum_bytes += (owned - with_csum) * ss;
  f.copies = std::max<unsigned>(f.copies, static_cast<unsigned>(p.copies.size()));
  if (with_csum == 0) {
    // NODATASUM data: nothing to verify, but the race leaves its copies silently different on
    // duplicated profiles before 7c2830f00c3e (docs/kernel-facts.md 1.4).
    if (p.copies.size() >= 2 && !compressed) {
      for (const auto& sg : segs) {
        auto copies = p.copies;
        for (auto& c : copies) {
          c.physical += sg.logical - logical;
        }
        compare_copies(fs, f, copies, sg.logical, sg.length, sg.file_offset);
      }
    }
    return;
  }
  f.checked_sectors += with_csum;
  f.checked_bytes += with_csum * ss;
  auto& q = *m_inflight;
  if (p.copies.size() > q.reader.buffers()) {
    throw Error(Errc::unsupported, std::to_string(p.copies.size()) + " copies of a sector", f.path);
  }
  while (q.reader.free_buffers() < p.copies.size()) {
    finish_oldest(fs, f);
  }
  p.logical = logical;
  p.segs = std::move(segs);
  p.compressed = compressed;
  p.bad_length = bad_length;
  Piece& in = q.pieces.emplace_back(std::move(p));
  in.reads.resize(in.copies.size());
  for (size_t c = 0; c < in.copies.size(); ++c) {
    m_limiter.consumed(length);
    auto& r = in.reads[c];
    r.devid = in.copies[c].devid;
    r.fd = dev_fd(fs, r.devid);
    r.physical = in.copies[c].physical;
    r.length = length;
    r.csums = &in.csums;
    q.reader.submit(r);
  }
}

// Waits for the oldest piece's copies and records its bad sectors, with every copy's bytes
// (fill_copies). Pieces finish in the order they were queued, so findings stay in file order.
void Scrubber::finish_oldest(FsCtx& fs, FileScrub& f)
{
  auto& q = *m_inflight;
  Piece& p = q.pieces.front();
  const uint32_t ss = fs.info.sectorsize;
  std::vector<uint8_t> bad(p.csums.sectors(), 0);
  for (auto& r : p.reads) {
    q.reader.wait(r);
    for (size_t i = 0; i < r.bad.size() && i < bad.size(); ++i) {
      bad[i] |= r.bad[i];
    }
  }
  for (size_t i = 0; i < bad.size(); ++i) {
    if (!bad[i]) {
      continue;
    }
    BadSector b;
    b.logical = p.csums.logical + i * ss;
    // The segment holding the sector (sorted by logical address, together covering the piece).
    auto sg = std::partition_point(p.segs.begin(), p.segs.end(), [&](const Segment& x) {
      return x.logical + x.length <= b.logical;
    });
    if (sg == p.segs.end()) {
      --sg;
    }
    b.offset = p.compressed ? sg->file_offset : sg->file_offset + (b.logical - sg->logical);
    b.length = p.compressed && p.bad_length ? p.bad_length : ss;
    b.compressed = p.compressed;
    const auto exp = p.csums.csum(i);
    b.expected_csum = to_hex(exp);
    fill_copies(fs, b, std::vector<uint8_t>(exp.begin(), exp.end()));
    f.bad.push_back(std::move(b));
  }
  q.pieces.pop_front();
}

// Reads every copy of a piece without checksums and reports the sectors whose copies differ,
// merged into ranges of equal grouping.
void Scrubber::compare_copies(FsCtx& fs, FileScrub& f, const std::vector<btrfs::Copy>& copies,
                              uint64_t logical, uint64_t length, uint64_t file_offset)
{
  const uint32_t ss = fs.info.sectorsize;
  const size_t n = copies.size();
  while (m_copy_bufs.size() < n) {
    m_copy_bufs.push_back(sys::aligned_buffer(m_opts.chunk));
  }
  std::vector<bool> unreadable(n, false);
  for (size_t c = 0; c < n; ++c) {
    m_limiter.consumed(length);
    if (!full_pread(dev_fd(fs, copies[c].devid), m_copy_bufs[c].get(), length,
                    copies[c].physical)) {
      unreadable[c] = true;
    }
  }
  f.compared_bytes += length;
  const size_t nsec = length / ss;
  for (size_t i = 0; i < nsec; ++i) {
    // Group the copies by content; an unreadable copy is a group of its own.
    std::vector<std::vector<unsigned>> groups;
    std::vector<size_t> rep; // the copy index holding each group's content
    for (size_t c = 0; c < n; ++c) {
      size_t g = 0;
      for (; g < groups.size() && !unreadable[c]; ++g) {
        if (!unreadable[rep[g]] && std::memcmp(m_copy_bufs[c].get() + i * ss,
                                               m_copy_bufs[rep[g]].get() + i * ss, ss) == 0) {
          break;
        }
      }
      if (unreadable[c] || g == groups.size()) {
        groups.push_back({});
        rep.push_back(c);
        g = groups.size() - 1;
      }
      groups[g].push_back(copies[c].mirror);
    }
    if (groups.size() < 2) {
      continue;
    }
    const uint64_t off = file_offset + i * ss;
    auto& d = f.divergent;
    if (!d.empty() && d.back().offset + d.back().length == off && d.back().groups == groups &&
        d.back().logical + d.back().length == logical + i * ss) {
      d.back().length += ss;
      continue;
    }
    DivergentRange r;
    r.offset = off;
    r.length = ss;
    r.logical = logical + i * ss;
    r.groups = std::move(groups);
    d.push_back(std::move(r));
  }
}

// Which generation wrote the extent of each finding, and what the kernel record says of it.
void Scrubber::date_findings(FsCtx& fs, FileScrub& f, int fd)
{
  if (f.bad.empty() && f.divergent.empty()) {
    return;
  }
  std::vector<btrfs::FileExtent> items;
  try {
    items = btrfs::file_extents(fd, f.inode, f.path);
  } catch (const Error& e) {
    f.notes.push_back("extent generations not read: " + std::string(e.what()));
  }
  const bool duplicated = f.copies >= 2;
  auto date = [&](uint64_t offset, bool nodatasum, WriteFacts& w) {
    auto it =
      std::upper_bound(items.begin(), items.end(), offset,
                       [](uint64_t o, const btrfs::FileExtent& e) { return o < e.file_offset; });
    if (it == items.begin()) {
      return;
    }
    --it;
    if (offset >= it->file_offset + std::max<uint64_t>(it->num_bytes, 1) || it->generation == 0) {
      return;
    }
    w.generation = it->generation;
    if (!fs.record) {
      w.window = "gap:no-record";
      return;
    }
    const auto win = fs.record->window_of(it->generation, m_boot_id);
    w.window = win.id;
    w.window_known = win.known;
    w.kernel = win.release;
    if (win.release) {
      if (auto v = parse_kernel_release(*win.release)) {
        w.dio_write = dio_write_for(dio_policy_for(*v), nodatasum, duplicated);
      }
    }
  };
  for (auto& b : f.bad) {
    date(b.offset, false, b.written);
  }
  for (auto& d : f.divergent) {
    date(d.offset, true, d.written);
  }
}

// Gathers a file extent (or the asked-for part of one) for reading in disk order.
void Scrubber::queue_segment(FsCtx& fs, FileScrub& f, const Segment& s)
{
  const uint32_t ss = fs.info.sectorsize;
  m_window.push_back({s.logical, (s.length + ss - 1) / ss * ss, s.file_offset});
  if (m_window.size() >= k_window_segments) {
    flush_window(fs, f);
  }
}

// Whether logical addresses a < b (sector starts) lie in one stretch that every copy holds
// contiguously: then what lies between is mapped and can be read with them in one request.
bool same_stretch(const FsCtx& fs, uint64_t a, uint64_t b)
{
  const uint64_t span = b - a + fs.info.sectorsize;
  if (!fs.chunks->find(a)) {
    throw Moved{};
  }
  return contiguous_length(*fs.chunks, a, span) >= span;
}

// The next piece of a read from `logical`: at most `want` (one buffer) and contiguous on every
// copy, in whole sectors.
uint64_t piece_length(const FsCtx& fs, uint64_t logical, uint64_t want)
{
  const uint32_t ss = fs.info.sectorsize;
  if (!fs.chunks->find(logical)) {
    throw Moved{};
  }
  return std::max<uint64_t>(contiguous_length(*fs.chunks, logical, want) / ss * ss, ss);
}

// Reads the gathered segments sorted by logical address, neighbours on disk merged into runs:
// COW places a guest's rewritten blocks next to each other, so a fragmented image is mostly
// sequential in this order (performance-facts.md: ~20x faster than per-extent file order).
// Findings are put back in file order at the end of the file (verify_extents).
void Scrubber::flush_window(FsCtx& fs, FileScrub& f)
{
  // Ties (one file's ranges sharing disk bytes) by file offset: the searchers add their items
  // in no fixed order, and the reads should not depend on it.
  std::sort(m_window.begin(), m_window.end(), [](const Segment& a, const Segment& b) {
    return a.logical != b.logical ? a.logical < b.logical : a.file_offset < b.file_offset;
  });
  // A run is a stretch of the sorted window, never a copy of it: a contiguous image's run can
  // be the whole window.
  const std::span<const Segment> w(m_window);
  map_all(fs, w, f.path);
  CsumPrefetch prefetch(m_fd, fs.info, csum_ranges(w));
  m_prefetch = &prefetch;
  struct Unset
  {
    CsumPrefetch*& p;
    ~Unset() { p = nullptr; }
  } unset{m_prefetch};
  size_t first = 0;
  for (size_t i = 1; i <= w.size(); ++i) {
    if (i < w.size()) {
      const uint64_t run_end = w[i - 1].logical + w[i - 1].length;
      const Segment& sg = w[i];
      if (sg.logical == run_end || (sg.logical > run_end && sg.logical - run_end <= k_max_gap &&
                                    same_stretch(fs, run_end - fs.info.sectorsize, sg.logical))) {
        continue;
      }
    }
    verify_run(fs, f, w.subspan(first, i - first));
    first = i;
  }
  m_window.clear();
}

// A run of segments close in logical address (sorted, gaps of at most k_max_gap), read in pieces
// of at most one buffer, each contiguous on every copy (piece_length); each piece carries the
// segments it covers.
void Scrubber::verify_run(FsCtx& fs, FileScrub& f, std::span<const Segment> run)
{
  const uint64_t start = run.front().logical;
  const uint64_t length = run.back().logical + run.back().length - start;
  size_t first = 0; // the first segment not wholly before the current piece
  for (uint64_t done = 0; done < length;) {
    check_cancel();
    const uint64_t piece =
      piece_length(fs, start + done, std::min<uint64_t>(m_opts.chunk, length - done));
    const uint64_t a = start + done, e = a + piece;
    std::vector<Segment> segs;
    while (first < run.size() && run[first].logical + run[first].length <= a) {
      ++first;
    }
    for (size_t i = first; i < run.size() && run[i].logical < e; ++i) {
      const uint64_t sa = std::max(a, run[i].logical);
      const uint64_t se = std::min(e, run[i].logical + run[i].length);
      segs.push_back({sa, se - sa, run[i].file_offset + (sa - run[i].logical)});
    }
    uint64_t owned = 0;
    for (const auto& sg : segs) {
      owned += sg.length;
    }
    if (!segs.empty()) {
      verify_piece(fs, f, a, piece, std::move(segs), false, 0);
    }
    done += piece;
    tick(owned, f.path);
  }
}

void Scrubber::verify_range(FsCtx& fs, FileScrub& f, uint64_t logical, uint64_t length,
                            uint64_t file_offset, bool compressed, uint64_t bad_length)
{
  const uint32_t ss = fs.info.sectorsize;
  length = (length + ss - 1) / ss * ss;
  const Segment whole{logical, length, file_offset};
  map_all(fs, {&whole, 1}, f.path);
  uint64_t done = 0;
  while (done < length) {
    check_cancel();
    const uint64_t piece =
      piece_length(fs, logical + done, std::min<uint64_t>(m_opts.chunk, length - done));
    const Segment sg{logical + done, piece, compressed ? file_offset : file_offset + done};
    verify_piece(fs, f, logical + done, piece, {sg}, compressed, bad_length);
    done += piece;
    if (!compressed) {
      tick(piece, f.path);
    }
  }
}

// The on-disk extent holding `disk_bytenr` (compressed extents: FIEMAP gives its start, not its
// length): EXTENT_ITEM key (bytenr, 168, num_bytes) of the extent tree.
uint64_t Scrubber::compressed_disk_length(int fd, uint64_t disk_bytenr, uint64_t& start,
                                          const std::string& path)
{
  btrfs::SearchRange r;
  r.tree_id = k_extent_tree;
  r.min = {disk_bytenr > k_max_compressed ? disk_bytenr - k_max_compressed : 0, 0, 0};
  r.max = {disk_bytenr, 0xff, ~0ULL};
  uint64_t len = 0;
  btrfs::tree_search(
    fd, r,
    [&](const btrfs::Key& k, std::span<const uint8_t>) {
      if (k.type == k_extent_item_key && k.objectid <= disk_bytenr &&
          k.objectid + k.offset > disk_bytenr) {
        start = k.objectid;
        len = k.offset;
      }
      return true;
    },
    path);
  return len;
}

// Reads the file (full mode) or its findings (findings mode) through btrfs with O_DIRECT: the
// kernel verifies every sector read (and repairs a bad copy from a good one on redundant
// profiles). Per sector after an EIO.
// The per-copy pass has run first and decided what is bad; this pass confirms it. A bad sector
// without a good copy that an earlier pass already confirmed, and whose copies still hold the
// same bytes, is not read again (unless --reconfirm): each such read makes the kernel fail every
// mirror, adding corruption_errs to `btrfs device stats` and csum-failed lines to the log, which
// is what monitoring alerts on. Sectors with a good copy are always read: the kernel repairs them.
void Scrubber::kernel_pass(FsCtx& fs, FileScrub& f)
{
  const uint32_t ss = fs.info.sectorsize;
  const KernelPassMode mode = m_opts.kernel_pass_mode;
  if (mode == KernelPassMode::findings && f.bad.empty()) {
    // Nothing to confirm: every checksummed sector verified on every copy against the csum
    // tree the kernel reads too. Not a read, so no read window either.
    f.kernel_pass = true;
    f.kernel_pass_mode = mode;
    return;
  }
  // The descriptor already open switched to O_DIRECT: opening the path again could open
  // another file (issue 12). The flags are put back on every way out.
  const int kfd = m_fd;
  const int old_flags = ::fcntl(kfd, F_GETFL);
  if (old_flags < 0 || ::fcntl(kfd, F_SETFL, old_flags | O_DIRECT) < 0) {
    f.notes.push_back("kernel-verified pass not run: O_DIRECT: " + errno_text(errno));
    return;
  }
  struct RestoreFlags
  {
    int fd, flags;
    ~RestoreFlags() { ::fcntl(fd, F_SETFL, flags); }
  } restore{kfd, old_flags};
  f.kernel_pass = true;
  f.kernel_pass_mode = mode;
  auto spans = kernel_spans(kfd, f, ss);
  std::vector<std::pair<uint64_t, uint64_t>> skip;
  const auto confirmed = confirmed_before(fs, f, skip);
  spans = subtract_ranges(spans, skip);
  m_kernel_done = m_kernel_total = 0;
  for (const auto& sp : spans) {
    m_kernel_total += sp.second;
  }
  kernel_tick(0, f.path);

  ReadWindow win = start_window(fs, f);
  std::vector<uint64_t> eio;
  for (const auto& [span_off, span_len] : spans) {
    kernel_read_span(kfd, f, span_off, span_len, ss, win, eio);
  }
  close_read_window(win);
  m_last_window = win;
  std::sort(eio.begin(), eio.end());
  eio.erase(std::unique(eio.begin(), eio.end()), eio.end());
  f.kernel_eio_sectors = eio.size();
  match_kernel_eio(fs, f, eio, confirmed, skip);
}

// What the kernel pass reads, sorted and merged: the findings' sector ranges (findings mode),
// else the asked-for ranges or the file's data ranges.
std::vector<std::pair<uint64_t, uint64_t>> Scrubber::kernel_spans(int kfd, const FileScrub& f,
                                                                  uint32_t ss) const
{
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  if (m_opts.kernel_pass_mode == KernelPassMode::findings) {
    for (const auto& b : f.bad) {
      spans.push_back(sector_range(b, ss));
    }
  } else if (!m_ranges.empty()) {
    spans = m_ranges;
  } else {
    // Holes have no checksums, so the kernel cannot fail them: only the data ranges are read
    // (a 16 TiB sparse image would otherwise take hours of reading zeros; issue 12).
    try {
      for (const auto& r : sys::data_ranges(kfd, f.size, f.path)) {
        spans.emplace_back(r.offset, r.length);
      }
    } catch (const Error&) {
      spans = {{0, f.size}};
    }
  }
  std::sort(spans.begin(), spans.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (const auto& [off, len] : spans) {
    if (!merged.empty() && off <= merged.back().first + merged.back().second) {
      auto& last = merged.back();
      last.second = std::max(last.first + last.second, off + len) - last.first;
    } else {
      merged.emplace_back(off, len);
    }
  }
  return merged;
}

// The sector-aligned file range a bad sector (or compressed extent) covers.
std::pair<uint64_t, uint64_t> Scrubber::sector_range(const BadSector& b, uint32_t ss)
{
  const uint64_t a = b.offset / ss * ss;
  const uint64_t e = (b.offset + std::max<uint64_t>(b.length, 1) + ss - 1) / ss * ss;
  return std::make_pair(a, e - a);
}

// Which bad sectors an earlier pass confirmed (per f.bad, or null), and in `skip` the ranges the
// kernel pass need not read again.
std::vector<const KernelConfirmation*>
Scrubber::confirmed_before(const FsCtx& fs, const FileScrub& f,
                           std::vector<std::pair<uint64_t, uint64_t>>& skip) const
{
  const uint32_t ss = fs.info.sectorsize;
  std::vector<const KernelConfirmation*> confirmed(f.bad.size(), nullptr);
  std::vector<std::pair<uint64_t, uint64_t>> needed;
  for (size_t i = 0; i < f.bad.size(); ++i) {
    const auto& b = f.bad[i];
    std::vector<std::string> csums;
    bool some_match = false;
    for (const auto& c : b.copies) {
      csums.push_back(c.read_error ? "" : c.csum);
      some_match = some_match || c.matches;
    }
    if (!m_opts.reconfirm) {
      for (const auto& c : fs.state.confirmations) {
        if (c.subvolume == f.subvolume_id && c.inode == f.inode &&
            confirmation_holds(c, b.logical, b.expected_csum, csums, some_match)) {
          confirmed[i] = &c;
          break;
        }
      }
    }
    (confirmed[i] ? skip : needed).push_back(sector_range(b, ss));
  }
  // A compressed extent is read whole: its range is skipped only when none of its bad sectors
  // is new.
  std::erase_if(skip, [&](const auto& r) {
    return std::any_of(needed.begin(), needed.end(), [&](const auto& n) {
      return n.first < r.first + r.second && r.first < n.first + n.second;
    });
  });
  return confirmed;
}

// The read window of this file's kernel pass, so that audit can tell vmcsum's own csum-failed
// log lines from others: the filesystem's device names (as given and as resolved) and the start.
ReadWindow Scrubber::start_window(const FsCtx& fs, const FileScrub& f) const
{
  std::vector<std::string> devices;
  for (const auto& [id, p] : fs.dev_paths) {
    (void)id;
    devices.push_back(p);
  }
  return open_read_window(fs.info.fsid, devices, f.subvolume_id, f.inode);
}

// Reads one span through `kfd` (O_DIRECT) chunk by chunk, then sector by sector where a chunk
// failed; appends the sectors that failed with EIO to `eio` and the span to `win`.
void Scrubber::kernel_read_span(int kfd, FileScrub& f, uint64_t span_off, uint64_t span_len,
                                uint32_t ss, ReadWindow& win, std::vector<uint64_t>& eio)
{
  const uint64_t end =
    std::min((span_off + span_len + ss - 1) / ss * ss, (f.size + ss - 1) / ss * ss);
  if (span_off / ss * ss < end) {
    win.ranges.emplace_back(span_off / ss * ss, end - span_off / ss * ss);
  }
  for (uint64_t off = span_off / ss * ss; off < end;) {
    check_cancel();
    const size_t len = static_cast<size_t>(std::min<uint64_t>(m_opts.chunk, end - off));
    m_limiter.consumed(len);
    ssize_t n = ::pread(kfd, m_buf.get(), len, static_cast<off_t>(off));
    if (n < 0 && errno != EIO) {
      f.notes.push_back("kernel-verified pass stopped at offset " + std::to_string(off) + ": " +
                        errno_text(errno));
      return;
    }
    // A read that falls back to buffered I/O (compressed extents) does not fail with EIO: it
    // stops short at the first page it cannot read. Only end of file excuses a short read.
    const uint64_t got = n < 0 ? 0 : static_cast<uint64_t>(n);
    kernel_tick(len, f.path);
    if (n >= 0 && (got == len || off + got >= f.size)) {
      off += len;
      continue;
    }
    for (uint64_t s = off + got / ss * ss; s < off + len; s += ss) {
      if (::pread(kfd, m_buf.get(), ss, static_cast<off_t>(s)) < 0 && errno == EIO) {
        eio.push_back(s);
      }
    }
    off += len;
  }
}

// Ties the kernel's EIOs (sorted) to the bad sectors found per copy; the rest are the kernel's
// alone.
void Scrubber::match_kernel_eio(FsCtx& fs, FileScrub& f, const std::vector<uint64_t>& eio,
                                const std::vector<const KernelConfirmation*>& confirmed,
                                const std::vector<std::pair<uint64_t, uint64_t>>& skip)
{
  const uint32_t ss = fs.info.sectorsize;
  std::set<uint64_t> explained;
  for (size_t i = 0; i < f.bad.size(); ++i) {
    auto& b = f.bad[i];
    if (confirmed[i] && std::find(skip.begin(), skip.end(), sector_range(b, ss)) != skip.end()) {
      b.kernel_eio = confirmed[i]->kernel_eio;
      b.kernel_confirmed_at_us = confirmed[i]->confirmed_at_us;
      ++f.kernel_confirmed_before;
      continue;
    }
    // A compressed extent is decompressed whole, so a bad on-disk sector makes the kernel fail
    // every sector of the file range the extent covers: any EIO there is this sector's.
    const auto first = std::lower_bound(eio.begin(), eio.end(), b.offset);
    const auto last =
      std::lower_bound(first, eio.end(), b.offset + std::max<uint64_t>(b.length, 1));
    b.kernel_eio = first != last;
    explained.insert(first, last);
    const bool some_match =
      std::any_of(b.copies.begin(), b.copies.end(), [](const auto& c) { return c.matches; });
    if (some_match) {
      b.repaired_by_read = read_repaired(fs, b);
      f.kernel_read_repairs += *b.repaired_by_read ? 1 : 0;
    }
  }
  for (uint64_t off : eio) {
    if (!explained.count(off)) {
      f.kernel_only_eio.push_back(off);
    }
  }
}

// Whether every copy of `b` now matches: the kernel's read repaired the bad ones from a good
// one. `b.copies` keeps what the per-copy pass saw, which is what is reported and classified.
bool Scrubber::read_repaired(FsCtx& fs, BadSector& b)
{
  const auto before = b.copies;
  const bool identical_before = b.copies_identical;
  std::vector<uint8_t> exp;
  for (size_t k = 0; k + 1 < b.expected_csum.size(); k += 2) {
    exp.push_back(static_cast<uint8_t>(std::stoul(b.expected_csum.substr(k, 2), nullptr, 16)));
  }
  fill_copies(fs, b, exp);
  bool repaired = true;
  for (const auto& c : b.copies) {
    repaired = repaired && c.matches;
  }
  b.copies = before;
  b.copies_identical = identical_before; // fill_copies set it for the copies as they are now
  return repaired;
}

// Saves what this file's scrub taught: the kernel's confirmations of sectors without a good
// copy, the outcome of a whole-file scrub, and the read window of the kernel pass.
void Scrubber::remember(FsCtx& fs, const FileScrub& f)
{
  ScrubState u;
  u.fsid = fs.info.fsid;
  const uint64_t now = realtime_now_us();
  if (f.kernel_pass) {
    for (const auto& b : f.bad) {
      const bool some_match =
        std::any_of(b.copies.begin(), b.copies.end(), [](const auto& c) { return c.matches; });
      if (some_match || b.kernel_eio != true) {
        continue;
      }
      KernelConfirmation c;
      c.subvolume = f.subvolume_id;
      c.inode = f.inode;
      c.offset = b.offset;
      c.length = b.length;
      c.logical = b.logical;
      c.expected_csum = b.expected_csum;
      for (const auto& x : b.copies) {
        c.copy_csums.push_back(x.read_error ? "" : x.csum);
      }
      c.kernel_eio = *b.kernel_eio;
      c.confirmed_at_us = b.kernel_confirmed_at_us.value_or(now);
      u.confirmations.push_back(std::move(c));
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> replaced;
  if (m_ranges.empty()) {
    // A whole-file scrub knows every bad sector: confirmations of sectors no longer bad go.
    if (f.kernel_pass) {
      replaced.emplace_back(f.subvolume_id, f.inode);
    }
    ImageOutcome o;
    o.subvolume = f.subvolume_id;
    o.inode = f.inode;
    o.path = f.path;
    o.scrubbed_at_us = now;
    o.clean = f.bad.empty() && f.divergent.empty() && f.kernel_only_eio.empty();
    u.outcomes.push_back(std::move(o));
  }
  if (m_last_window) {
    u.windows.push_back(*m_last_window);
  }
  // The in-memory copy serves later files of this run.
  std::erase_if(fs.state.confirmations, [&](const KernelConfirmation& c) {
    return c.subvolume == f.subvolume_id && c.inode == f.inode;
  });
  fs.state.confirmations.insert(fs.state.confirmations.end(), u.confirmations.begin(),
                                u.confirmations.end());
  if (m_opts.state_dir.empty()) {
    return;
  }
  try {
    if (auto note = merge_scrub_state(m_opts.state_dir, u, replaced)) {
      m_notes.push_back(std::move(*note));
    }
  } catch (const Error& e) {
    m_notes.push_back("scrub state of " + fs.info.fsid + " not saved: " + e.what());
  }
}

// Files being written while scrubbed: map the bad offsets again and re-read, keep only the
// sectors still bad at the same address.
void Scrubber::recheck(int fd, FsCtx& fs, FileScrub& f)
{
  ::fsync(fd);
  btrfs::sync_fs(fd, f.path);
  std::map<uint64_t, uint64_t> logical_of; // file offset -> logical now
  btrfs::for_each_extent(fd, f.path, true, [&](const btrfs::Extent& e) {
    for (const auto& b : f.bad) {
      if (!b.compressed && b.offset >= e.logical && b.offset < e.logical + e.length &&
          !(e.flags & FIEMAP_EXTENT_ENCODED)) {
        logical_of[b.offset] = e.physical + (b.offset - e.logical);
      }
    }
  });
  std::vector<BadSector> kept;
  size_t dropped = 0;
  for (auto& b : f.bad) {
    if (!b.compressed) {
      auto it = logical_of.find(b.offset);
      if (it == logical_of.end() || it->second != b.logical) {
        ++dropped;
        continue;
      }
      btrfs::read_csums(fd, fs.info, b.logical, fs.info.sectorsize, m_stored, f.path);
      if (!m_stored.has(0)) {
        ++dropped;
        continue;
      }
      auto exp = m_stored.csum(0);
      b.expected_csum = to_hex(exp);
      fill_copies(fs, b, std::vector<uint8_t>(exp.begin(), exp.end()));
      if (std::all_of(b.copies.begin(), b.copies.end(), [](auto& c) { return c.matches; })) {
        ++dropped;
        continue;
      }
    }
    kept.push_back(std::move(b));
  }
  f.bad = std::move(kept);
  if (dropped) {
    f.notes.push_back(std::to_string(dropped) +
                      " mismatch(es) vanished on re-reading: rewritten while scrubbed");
  }
  recheck_divergent(fd, fs, f);
}

// A file written while it is scrubbed loses the csums of the extents its writes replace: an
// extent listed before a write and looked up after its commit has none, and its bytes count in
// no_csum_bytes like NODATASUM data (a helper's 128 MiB image rewritten with O_DIRECT during its
// scrub: 8 MiB, no word why). Unless the file is NODATASUM, a note says those bytes were not
// verified and why, lest the image be taken for partly unprotected.
void Scrubber::note_lost_csums(int fd, FileScrub& f)
{
  std::string flag = "its NODATASUM flag could not be read";
  try {
    const auto item = btrfs::read_inode_item(fd, f.subvolume_id, f.inode, f.path);
    if (item && (item->flags & btrfs::inode_flag::nodatasum)) {
      return;
    }
    if (item) {
      flag = "it is not NODATASUM";
    }
  } catch (const Error&) { // said in the note
  }
  f.notes.push_back(std::to_string(f.no_csum_bytes) +
                    " byte(s) had no checksum when looked up: the file was written while "
                    "scrubbed (" +
                    flag +
                    "), so those extents were most likely replaced "
                    "by writes (their checksums deleted with them) and were not verified; "
                    "scrub it again when it is not written to");
}

// The divergent NODATASUM ranges of a file being written, compared again where its data lies
// now; only what still differs is kept. A balance may have moved the file during the pass, which
// then compared the freed space (a chunk allocated over it: two different wrong copies, reported
// as critical for a clean image of a running VM: it.scrub_fs_changes); a write in flight may
// have been between its copies.
void Scrubber::recheck_divergent(int fd, FsCtx& fs, FileScrub& f)
{
  if (f.divergent.empty()) {
    return;
  }
  const std::vector<DivergentRange> old = std::move(f.divergent);
  f.divergent.clear();
  const uint64_t compared = f.compared_bytes;
  btrfs::for_each_extent(fd, f.path, true, [&](const btrfs::Extent& e) {
    if (e.flags & (k_unverifiable | FIEMAP_EXTENT_ENCODED)) {
      return;
    }
    // The old ranges (sorted by offset, never overlapping) that overlap this extent.
    auto r = std::partition_point(old.begin(), old.end(), [&](const DivergentRange& d) {
      return d.offset + d.length <= e.logical;
    });
    for (; r != old.end() && r->offset < e.logical + e.length; ++r) {
      const uint64_t end = std::min(r->offset + r->length, e.logical + e.length);
      for (uint64_t off = std::max(r->offset, e.logical); off < end;) {
        check_cancel();
        const Segment sg{e.physical + (off - e.logical), end - off, off};
        map_all(fs, {&sg, 1}, f.path);
        const uint64_t len =
          piece_length(fs, sg.logical, std::min<uint64_t>(m_opts.chunk, sg.length));
        compare_copies(fs, f, copies_at(fs, sg.logical), sg.logical, len, off);
        off += len;
      }
    }
  });
  f.compared_bytes = compared;
  std::stable_sort(
    f.divergent.begin(), f.divergent.end(),
    [](const DivergentRange& a, const DivergentRange& b) { return a.offset < b.offset; });
  uint64_t before = 0, now = 0;
  for (const auto& d : old) {
    before += d.length;
  }
  for (const auto& d : f.divergent) {
    now += d.length;
  }
  if (now < before) {
    f.notes.push_back(std::to_string(before - now) +
                      " divergent byte(s) no longer differ on comparing again: written or moved "
                      "while scrubbed");
  }
}

// Opens the file the walk listed (FileRef::open: below the walked directory, no symlink, the
// same regular file, O_NONBLOCK so a FIFO swapped in cannot hang the scrub) and scrubs it.
FileScrub Scrubber::scrub_file(const sys::FileRef& ref)
{
  struct stat st = {};
  sys::Fd fd;
  try {
    fd = ref.open(O_RDONLY, &st);
  } catch (const Error& e) {
    FileScrub f;
    f.path = ref.path;
    f.error = e.detail();
    return f;
  }
  return scrub_open(fd.get(), st, ref.path);
}

// The drives of QEMUs started since the run began (the host context has those of the QEMUs
// running then) that name this inode, added to `configured` unless it has them: their cache mode
// is evidence as much as a configuration's.
void add_started_qemus(const ProcScan& procs, const struct stat& st,
                       std::vector<ConfiguredDisk>& configured)
{
  for (auto& c : qemu_configured_disks(procs)) {
    // Matched by the inode the drive named when it was trusted, as HostContext indexes the
    // drives it has: the name is the QEMU's, and looked up again it may name another file.
    if (!c.inode || c.inode->first != static_cast<uint64_t>(st.st_dev) ||
        c.inode->second != static_cast<uint64_t>(st.st_ino)) {
      continue;
    }
    // The whole drive compared, cache mode included: a QEMU started since under a pid that
    // an earlier one had is a configuration of its own.
    if (std::find(configured.begin(), configured.end(), c) == configured.end()) {
      configured.push_back(std::move(c));
    }
  }
}

// Everything after the open works on `fd` alone; `path` is for display.
FileScrub Scrubber::scrub_open(int fd, const struct stat& st, const std::string& path)
{
  FileScrub f;
  f.path = path;
  m_last_window.reset();
  if (!scrubbable(fd, st, f)) {
    return f;
  }
  f.size = static_cast<uint64_t>(st.st_size);
  f.inode = st.st_ino;
  f.canonical_path = sys::path_of_fd(fd, path);
  m_fd = fd;
  try {
    f.subvolume_id = btrfs::subvolume_id(fd, path);
    ClassifyContext ctx;
    bool writing = note_users(m_host.procs, st, f, ctx);
    FsCtx& fs = fs_for(fd, path);
    f.fsid = fs.info.fsid;
    // FIEMAP_FLAG_SYNC writes delalloc back; the commit puts the csums in the tree we search.
    btrfs::sync_fs(fd, path);
    verify_stable(fd, fs, f, path, writing, [&](FileScrub& g) {
      // Taken only when a writer is there now: otherwise the next pass starts as the first.
      FileScrub now = g;
      ClassifyContext now_ctx = ctx;
      try {
        const ProcScan procs = scan_proc(m_opts.proc_root);
        if (!note_users(procs, st, now, now_ctx)) {
          return false;
        }
        add_started_qemus(procs, st, now.configured);
        apply_configured(now.configured, now_ctx);
      } catch (const Error& e) {
        g.notes.push_back(std::string("its users not looked up again: ") + e.what());
        return false;
      }
      g = std::move(now);
      ctx = std::move(now_ctx);
      return true;
    });
    if (writing && (!f.bad.empty() || !f.divergent.empty())) {
      recheck(fd, fs, f);
    }
    if (writing && f.no_csum_bytes != 0) {
      note_lost_csums(fd, f);
    }
    if (m_opts.kernel_pass && m_opts.kernel_pass_mode != KernelPassMode::none) {
      kernel_pass(fs, f);
    }
    date_findings(fs, f, fd);
    ctx.device_io_errors = fs.io_errors; // as read_map() found them, devices added since included
    ctx.open_for_writing = writing;
    classify_all(f, ctx);
    f.examined = true;
    remember(fs, f);
    if (m_last_window) {
      m_windows.push_back(std::move(*m_last_window));
      m_last_window.reset();
    }
  } catch (const Error& e) {
    f.error = e.what();
    // Data reads handle EIO per sector (copy-unreadable, the kernel pass); one that ends the
    // file's scrub came from a tree search: btrfs found no good copy of a metadata block.
    if (e.sys_errno() == EIO) {
      f.metadata_unreadable = true;
      *f.error += ": btrfs could not read this file's metadata (a checksum or extent tree block "
                  "bad on every copy); `btrfs check --readonly` on the unmounted filesystem "
                  "tells more";
    }
  } catch (const Moved&) {
    f = FileScrub{};
    f.path = path;
    f.error = "its data moved while its findings were checked again (a balance?): nothing is "
              "concluded; scrub it again when that is over";
  } catch (const Interrupted&) {
    // Half a file proves nothing: no findings, nothing remembered.
    f = FileScrub{};
    f.path = path;
    f.error = "interrupted before its scrub finished";
  }
  m_fd = -1;
  return f;
}

// A regular file on btrfs, or `f.error` says why not.
bool Scrubber::scrubbable(int fd, const struct stat& st, FileScrub& f)
{
  struct statfs sfs = {};
  if (::fstatfs(fd, &sfs) < 0) {
    f.error = errno_text(errno);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    f.error = "not a regular file";
    return false;
  }
  if (sfs.f_type != k_btrfs_magic) {
    f.error = "not on btrfs";
    return false;
  }
  return true;
}

// Who writes the file now (with or without O_DIRECT) and which VM configurations name it: what
// classification weighs as the likely cause of a mismatch. True when a process writes it.
bool Scrubber::note_users(const ProcScan& procs, const struct stat& st, FileScrub& f,
                          ClassifyContext& ctx)
{
  bool writing = false, direct = false, direct_writer = false;
  for (const auto& of : procs.open_files) {
    if (of.dev == st.st_dev && of.ino == st.st_ino) {
      const bool wr = of.flags && flags_writable(*of.flags);
      const bool od = of.flags && flags_have_o_direct(*of.flags);
      direct = direct || od;
      // Only a writer can race: an O_DIRECT reader (a backup tool, `vmcsum scrub` itself) is no
      // evidence of it.
      direct_writer = direct_writer || (od && wr);
      if (wr) {
        writing = true;
        f.writers.push_back(of.comm + "[" + std::to_string(of.pid) + "]");
      }
    }
  }
  f.open_for_writing = writing;
  f.open_o_direct = direct;
  if (direct_writer) {
    ctx.o_direct = true;
  }
  f.configured = m_host.configured(st.st_dev, st.st_ino);
  apply_configured(f.configured, ctx);
  return writing;
}

// Searchers of a file's EXTENT_DATA items, each over its share of the file's offsets: on a cold
// cache every leaf is a synchronous metadata read and one search reads one leaf at a time (0.25 s
// for the 165k items of a 1 GiB image after 131072 random writes; four searchers 0.15 s, eight
// 0.10 s, sixteen no less). One per 16 MiB of file, so a small image costs no threads it needs not.
constexpr unsigned k_item_searchers = 8;
constexpr uint64_t k_item_search_share = 16u << 20;
// Items a searcher collects before it takes the lock to add them to the window.
constexpr size_t k_item_batch = 1024;

// Runs search(from, to) on the searchers, each over its share [from, to] of the file's offsets,
// and joins them. The last share is this thread's; so is a share whose thread could not be
// started (a cgroup's pids.max, RLIMIT_NPROC). `search` throws nothing: a thread would end the
// process.
template <class Search>
void split_item_search(uint64_t size, uint32_t ss, Search&& search)
{
  const auto n =
    static_cast<unsigned>(std::clamp<uint64_t>(size / k_item_search_share, 1, k_item_searchers));
  const uint64_t share = std::max<uint64_t>((size / n + ss - 1) / ss * ss, ss);
  std::vector<std::jthread> searchers; // joined before what they use goes
  searchers.reserve(n);
  for (unsigned i = 0; i < n; ++i) {
    const uint64_t from = i * share;
    const uint64_t to = i + 1 == n ? ~0ULL : (i + 1) * share - 1;
    if (i + 1 < n) {
      try {
        searchers.emplace_back(search, from, to);
        continue;
      } catch (const std::system_error&) {
      }
    }
    search(from, to);
  }
}

// One EXTENT_DATA item's part of a file's layout digest: the digest is the sum over its items,
// so the searchers may add them in any order. Relocation (balance) changes disk_bytenr only
// (replace_file_extents() in fs/btrfs/relocation.c); a write or defragmentation changes items.
uint64_t layout_mix(const btrfs::FileExtent& x)
{
  const uint64_t v[] = {x.file_offset,   x.num_bytes,   static_cast<uint64_t>(x.type),
                        x.compression,   x.disk_bytenr, x.disk_num_bytes,
                        x.extent_offset, x.generation};
  return XXH3_64bits(v, sizeof v);
}

// The file's layout digest, from its EXTENT_DATA items now.
uint64_t Scrubber::layout_of(int fd, const FileScrub& f)
{
  std::atomic<uint64_t> sum{0};
  std::mutex mutex;
  std::exception_ptr failed; // under `mutex`
  split_item_search(f.size, 4096, [&](uint64_t from, uint64_t to) {
    try {
      btrfs::for_each_file_extent(
        fd, f.inode, f.path,
        [&](const btrfs::FileExtent& x) {
          sum.fetch_add(layout_mix(x), std::memory_order_relaxed);
          return true;
        },
        from, to);
    } catch (...) { // not out of a thread
      std::lock_guard lock(mutex);
      failed = std::current_exception();
    }
  });
  if (failed) {
    std::rethrow_exception(failed);
  }
  return sum.load();
}

// Whether the file's layout differs from `before`. Its items are digested again only when a
// leaf holding them was written in `before.transid` or later: for a file nobody changed that is
// one search through the tree's newer nodes instead of all its items again (a fragmented
// image's 165k items: ~0.1 s on the critical path after the last read).
bool Scrubber::layout_moved(int fd, const FileScrub& f, const Layout& before)
{
  if (before.transid != 0 &&
      !btrfs::inode_items_changed_since(fd, f.inode, before.transid, f.path)) {
    return false;
  }
  return layout_of(fd, f) != before.digest;
}

// The per-copy pass, done again when the file's extents moved while it ran (up to three
// passes). The pass gathers the file's extents first and reads their csums and copies after;
// a balance relocating them in between leaves it reading where they no longer are: whatever
// the freed space holds then (a chunk allocated over it: two different wrong copies, the race's
// very signature) against csums looked up before, and no csum at all for those looked up after.
// Seen here: a balance during a scrub made 64 "false-mismatch" sectors and 22 MiB "without
// csums" of a clean file (it.scrub_fs_changes). So the layout (every EXTENT_DATA item) is digested
// before the pass and compared after it. A file open for writing changes by design: recheck()
// re-reads its findings instead. `writers_now` scans /proc again for the file's writers (after
// a pass whose layout moved); `writing` says whether it is treated as written to.
void Scrubber::verify_stable(int fd, FsCtx& fs, FileScrub& f, const std::string& path,
                             bool& writing, const std::function<bool(FileScrub&)>& writers_now)
{
  constexpr unsigned k_passes = 3;
  FileScrub start = f;
  const uint64_t done = m_done;
  for (unsigned pass = 1;; ++pass) {
    bool moved = false;
    try {
      const auto before = verify_extents(fd, fs, f, path, !writing);
      moved = !writing && layout_moved(fd, f, *before);
    } catch (const Moved&) {
      moved = true;
    }
    if (!moved) {
      if (pass > 1) {
        f.notes.push_back("its extents moved while it was scrubbed (a balance, a "
                          "defragmentation or a write); scrubbed again: " +
                          std::to_string(pass) + " passes");
      }
      return;
    }
    f = start;
    m_done = done;
    if (pass == k_passes) {
      throw Error(Errc::busy, "its extents moved during each of " + std::to_string(k_passes) +
                                " passes (a balance, a defragmentation or writes): nothing is "
                                "concluded; scrub it again when that is over");
    }
    // Writers are known from the /proc scan at the start of the run: a VM started since writes
    // the file, moving its layout every pass. Asked again, it is scrubbed from now on as a
    // file being written (recheck, recheck_divergent), not passed over after three passes.
    if (!writing && writers_now(f)) {
      writing = true;
      std::string who;
      for (const auto& w : f.writers) {
        who += (who.empty() ? "" : ", ") + w;
      }
      f.notes.push_back("opened for writing while it was scrubbed (" + who +
                        "): scrubbed again as a file being written");
      start = f;
    }
  }
}

// A whole-file scrub of a file nobody has open for writing: its EXTENT_DATA items
// (docs/kernel-facts.md §6; sync_fs() ran, so no delalloc lacks one) give the extents FIEMAP
// would, at a fraction of the cost (btrfs's FIEMAP also asks whether each extent is shared:
// 0.31 s of a 1.0 s scrub of that image). Only when every item is a hole or a plain extent
// (regular, not compressed) and all fit one window, so none is read before the last is known;
// anything else (inline, preallocated, compressed, more extents, a failed search) is left to
// FIEMAP, whose flags verify_extents reads: false then, with nothing queued.
bool Scrubber::queue_from_items(int fd, FsCtx& fs, FileScrub& f, uint64_t& layout)
{
  if (!m_whole || f.open_for_writing.value_or(true)) {
    return false;
  }
  const uint32_t ss = fs.info.sectorsize;
  std::mutex mutex;
  bool plain = true; // under `mutex`, like m_window
  std::atomic<uint64_t> sum{0};
  auto search = [&](uint64_t from, uint64_t to) {
    std::vector<Segment> batch;
    auto append = [&] {
      std::lock_guard lock(mutex);
      plain = plain && m_window.size() + batch.size() < k_window_segments; // never reallocated
      if (plain) {
        m_window.insert(m_window.end(), batch.begin(), batch.end());
      }
      batch.clear();
      return plain;
    };
    try {
      btrfs::for_each_file_extent(
        fd, f.inode, f.path,
        [&](const btrfs::FileExtent& x) {
          sum.fetch_add(layout_mix(x), std::memory_order_relaxed);
          if (x.hole()) {
            return true;
          }
          if (x.type != btrfs::FileExtentType::regular || x.compression != 0) {
            std::lock_guard lock(mutex);
            return plain = false;
          }
          // FIEMAP's fe_physical of a regular extent: disk_bytenr + offset (kernel-facts.md §6).
          batch.push_back(
            {x.logical_of(x.file_offset), (x.num_bytes + ss - 1) / ss * ss, x.file_offset});
          return batch.size() < k_item_batch || append();
        },
        from, to);
      append();
    } catch (const std::exception&) { // not out of a thread: FIEMAP says what is wrong
      std::lock_guard lock(mutex);
      plain = false;
    }
  };
  split_item_search(f.size, ss, search);
  if (!plain) {
    m_window.clear();
  }
  layout = sum.load();
  return plain;
}

// The per-copy pass over every extent (or the parts of it in the asked-for ranges).
// Returns the file's layout digest from before the pass when `layout` asks for it.
std::optional<Scrubber::Layout> Scrubber::verify_extents(int fd, FsCtx& fs, FileScrub& f,
                                                         const std::string& path, bool layout)
{
  m_inflight =
    std::make_unique<InFlight>(inflight_buffers(m_opts.chunk), m_opts.chunk, fs.info.csum_type);
  // On every way out (an error, a stop): the threads joined, nothing of this file left queued.
  struct Release
  {
    std::unique_ptr<InFlight>& q;
    std::vector<Segment>& window;
    ~Release()
    {
      q.reset();
      window.clear();
    }
  } release{m_inflight, m_window};
  m_full_stripes.clear();
  // Once, so the window never exists twice while its vector grows.
  m_window.reserve(k_window_segments);
  std::set<uint64_t> compressed_seen;
  std::optional<Layout> before;
  // Before the items are read: whatever changes after them is written in a later transaction
  // than this one (layout_moved).
  const uint64_t transid = layout ? btrfs::commit_transaction(fd, path) + 1 : 0;
  uint64_t from_items = 0;
  const bool items = queue_from_items(fd, fs, f, from_items);
  if (items) {
    before = Layout{from_items, transid};
  } else if (layout) {
    before = Layout{layout_of(fd, f), transid};
  }
  // After the layout: if it is the same after the pass, the chunks holding the file's extents
  // lived throughout, and this map has them (read_map).
  read_map(fs, path);
  if (!items) {
    // What queue_from_items() leaves: FIEMAP's flags tell what each extent is.
    btrfs::for_each_extent(fd, path, true, [&](const btrfs::Extent& e) {
      // The asked-for ranges that overlap this extent: [first_range, m_ranges.end()) while
      // they start before its end.
      auto first_range = std::partition_point(
        m_ranges.begin(), m_ranges.end(), [&](auto& r) { return r.first + r.second <= e.logical; });
      if (!m_whole &&
          (first_range == m_ranges.end() || first_range->first >= e.logical + e.length)) {
        return;
      }
      if (e.flags & k_unverifiable) {
        f.skipped_bytes += e.length;
        tick(e.length, path);
        return;
      }
      if (e.flags & FIEMAP_EXTENT_ENCODED) {
        verify_compressed(fd, fs, f, e, path, compressed_seen);
        return;
      }
      if (m_whole) {
        queue_segment(fs, f, {e.physical, e.length, e.logical});
        return;
      }
      for (auto r = first_range; r != m_ranges.end() && r->first < e.logical + e.length; ++r) {
        const uint64_t a = std::max(r->first, e.logical);
        const uint64_t b = std::min(r->first + r->second, e.logical + e.length);
        if (a < b) {
          queue_segment(fs, f, {e.physical + (a - e.logical), b - a, a});
        }
      }
    });
  }
  flush_window(fs, f);
  while (!m_inflight->pieces.empty()) {
    check_cancel();
    finish_oldest(fs, f);
  }
  check_parity(fs, f);
  // Read in disk order, reported in file order.
  std::stable_sort(f.bad.begin(), f.bad.end(),
                   [](const BadSector& a, const BadSector& b) { return a.offset < b.offset; });
  std::stable_sort(
    f.divergent.begin(), f.divergent.end(),
    [](const DivergentRange& a, const DivergentRange& b) { return a.offset < b.offset; });
  return before;
}

// Compressed: the csums cover the on-disk bytes disk_bytenr..+disk_num_bytes, verified once
// however many file extents share them.
void Scrubber::verify_compressed(int fd, FsCtx& fs, FileScrub& f, const btrfs::Extent& e,
                                 const std::string& path, std::set<uint64_t>& compressed_seen)
{
  uint64_t start = e.physical;
  const uint64_t len = compressed_disk_length(fd, e.physical, start, path);
  if (len == 0) {
    f.skipped_bytes += e.length;
    f.notes.push_back("compressed extent at offset " + std::to_string(e.logical) +
                      " not found in the extent tree");
  } else if (compressed_seen.insert(start).second) {
    // A bad sector is reported over the file range the extent covers.
    verify_range(fs, f, start, len, e.logical, true, e.length);
    f.compressed_bytes += len;
  }
  tick(e.length, path);
}

void Scrubber::classify_all(FileScrub& f, ClassifyContext& ctx)
{
  collect_signature_windows(f.bad, f.divergent, ctx);
  for (auto& b : f.bad) {
    b.evidence.clear();
    classify(b, ctx);
  }
  for (auto& d : f.divergent) {
    d.evidence.clear();
    classify(d, ctx);
  }
}

// One argument's files, or why it has none.
struct Listed
{
  std::optional<sys::FileRef> ref;
  FileScrub failed; // when !ref
};

// The files to scrub below `p`: regular files only when `p` is a directory, `p` itself otherwise
// (scrub_file then refuses what is not a regular file, with a reason). A symlink named as `p` is
// followed once (find -H); none below it. Sorted by path within each argument.
void collect_files(const std::string& p, std::vector<Listed>& out, std::vector<std::string>& notes)
{
  std::vector<Listed> found;
  auto failed = [&](const std::string& path, const std::string& why) {
    Listed l;
    l.failed.path = path;
    l.failed.error = why;
    found.push_back(std::move(l));
  };
  sys::walk_named(
    p,
    [&](sys::WalkEntry& e) {
      if (e.depth() > 0 && e.d_type() != DT_REG) {
        return;
      }
      try {
        found.push_back({e.ref(), {}});
      } catch (const Error& err) {
        failed(e.path(), err.detail());
      }
    },
    [&](const std::string& path, const std::string& why) {
      if (path == p) {
        failed(p, why);
      } else {
        notes.push_back(path + ": " + why);
      }
    });
  auto path_of = [](const Listed& l) -> const std::string& {
    return l.ref ? l.ref->path : l.failed.path;
  };
  std::sort(found.begin(), found.end(),
            [&](const Listed& a, const Listed& b) { return path_of(a) < path_of(b); });
  out.insert(out.end(), std::make_move_iterator(found.begin()),
             std::make_move_iterator(found.end()));
}

// Under --limit-rate, shorter requests keep each burst short.
ScrubOptions tuned_options(const ScrubOptions& opts)
{
  ScrubOptions tuned = opts;
  if (!tuned.shared_limiter && tuned.limit_rate) {
    tuned.chunk = RateLimiter(tuned.limit_rate).chunk(tuned.chunk);
  }
  return tuned;
}

} // namespace

std::string kernel_pass_mode_name(KernelPassMode m)
{
  switch (m) {
  case KernelPassMode::findings:
    return "findings";
  case KernelPassMode::full:
    return "full";
  case KernelPassMode::none:
    return "none";
  }
  return "none";
}

std::optional<KernelPassMode> parse_kernel_pass_mode(const std::string& name)
{
  for (auto m : {KernelPassMode::findings, KernelPassMode::full, KernelPassMode::none}) {
    if (kernel_pass_mode_name(m) == name) {
      return m;
    }
  }
  return std::nullopt;
}

ScrubResult scrub(const ScrubOptions& opts, const ScrubProgress& progress,
                  const sys::Cancel& cancel)
{
  ScrubResult result;
  std::vector<Listed> files;
  for (const auto& p : opts.paths) {
    collect_files(p, files, result.notes);
  }
  uint64_t total = 0;
  for (const auto& l : files) {
    if (!l.ref) {
      continue;
    }
    if (!opts.ranges.empty()) {
      for (const auto& r : opts.ranges) {
        total += r.second;
      }
    } else {
      total += static_cast<uint64_t>(l.ref->blocks) * 512;
    }
  }
  // The cache mode each image is configured with: the same configurations audit reads.
  HostContextOptions ho;
  ho.proc_root = opts.proc_root;
  ho.vm_configs = opts.vm_configs;
  ho.kernel_release = opts.kernel_release;
  const HostContext host = gather_host_context(ho);
  const ScrubOptions tuned = tuned_options(opts);
  Scrubber s(tuned, host, progress, cancel);
  s.set_total(total);
  std::vector<std::string> examined;
  for (auto& l : files) {
    result.files.push_back(l.ref ? s.scrub_file(*l.ref) : std::move(l.failed));
    if (result.files.back().examined) {
      examined.push_back(result.files.back().path);
    }
    if (s.interrupted()) {
      break;
    }
  }
  result.interrupted = s.interrupted();
  result.notes.insert(result.notes.end(), s.notes().begin(), s.notes().end());
  result.windows = std::move(s.windows());
  if (!result.interrupted && !examined.empty() && (!opts.kernel_log.empty() || opts.journal)) {
    HistoryOptions hist;
    hist.kernel_log = opts.kernel_log;
    hist.journal = opts.journal;
    hist.journal_dir = opts.journal_dir;
    hist.state_dir = opts.state_dir;
    hist.extra_windows = &result.windows;
    auto h = scrub_history(examined, hist);
    result.history = std::move(h.history);
    result.notes.insert(result.notes.end(), h.notes.begin(), h.notes.end());
  }
  return result;
}

// Owns what the Scrubber refers to.
struct ScrubSession::Impl
{
  Impl(const ScrubOptions& o, const HostContext& h, ScrubProgress p, sys::Cancel c)
    : opts(tuned_options(o))
    , host(h)
    , progress(std::move(p))
    , cancel(std::move(c))
    , scrubber(opts, host, progress, cancel)
  {
  }
  const ScrubOptions opts;
  const HostContext& host;
  const ScrubProgress progress;
  const sys::Cancel cancel;
  Scrubber scrubber;
};

ScrubSession::ScrubSession(const ScrubOptions& opts, const HostContext& host,
                           ScrubProgress progress, sys::Cancel cancel)
  : m_impl(std::make_unique<Impl>(opts, host, std::move(progress), std::move(cancel)))
{
}

ScrubSession::~ScrubSession() = default;

FileScrub ScrubSession::scrub_file(const sys::Fd& fd, const std::string& display,
                                   const std::vector<std::pair<uint64_t, uint64_t>>& ranges)
{
  Scrubber& s = m_impl->scrubber;
  s.set_ranges(ranges.empty() ? m_impl->opts.ranges : ranges);
  struct stat st = {};
  if (::fstat(fd.get(), &st) < 0) {
    FileScrub f;
    f.path = display;
    f.error = errno_text(errno);
    return f;
  }
  return s.scrub_open(fd.get(), st, display);
}

void ScrubSession::set_total(uint64_t total)
{
  m_impl->scrubber.set_total(total);
}

bool ScrubSession::interrupted() const
{
  return m_impl->scrubber.interrupted();
}

const std::vector<std::string>& ScrubSession::notes() const
{
  return m_impl->scrubber.notes();
}

const std::vector<ReadWindow>& ScrubSession::windows() const
{
  return m_impl->scrubber.windows();
}

} // namespace vmcsum::core
