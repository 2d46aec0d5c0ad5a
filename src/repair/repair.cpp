// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The engine of `vmcsum repair`. Order of work for one image, and why:
//  1. refusals (not btrfs, in use, locked, read-only...) exactly as `set` words them;
//  2. scrub it per copy (no kernel pass: reads through btrfs would repair copies before we
//     know what they held), classify;
//  3. sectors some copy matches: one read through btrfs (read repair), then look again;
//  4. the damaged extents' file ranges (EXTENT_DATA items), their other references;
//  5. space for the rewrite and the backup, then the backup: every byte it will write over,
//     every copy of each bad sector, fsync'ed and renamed into place (".pending");
//  6. the backup's chosen bytes written back at the same offsets (buffered pwrite: btrfs COWs
//     them into new extents with fresh checksums), fdatasync, mtime kept;
//  7. read back with O_DIRECT (btrfs verifies every checksum), commit, check the old extents
//     are gone, scrub the ranges per copy again; only then the backup loses ".pending".
// A SIGKILL anywhere leaves every sector old or new (a page is copied whole or not at all) and
// the backup complete; the rerun finds the pending backup and rewrites its ranges again.
#include <vmcsum/btrfs/backref.hpp>
#include <vmcsum/btrfs/file_extents.hpp>
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/btrfs/profile.hpp>
#include <vmcsum/btrfs/tree_search.hpp>
#include <vmcsum/checksum.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/kernel_log_reader.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/host/rate_limiter.hpp>
#include <vmcsum/host/subvol_paths.hpp>
#include <vmcsum/image/file_facts.hpp>
#include <vmcsum/repair/repair.hpp>
#include <vmcsum/repair/repair_backup.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/scrub/scrub_state.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/lease.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/walk.hpp>

#include <systemd/sd-journal.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <set>

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace vmcsum::core {

namespace {

constexpr size_t k_chunk = 4u << 20;
constexpr long k_btrfs_magic = 0x9123683e;
constexpr uint8_t k_extent_item_key = 168;
constexpr uint64_t k_extent_tree = 2;
constexpr uint64_t k_backup_margin = 1u << 20;

// Ends the work on one file.
struct Stop
{
  std::string action; // refused or failed
  std::string code;
  std::string message;
};

[[noreturn]] void stop_errno(int err, const std::string& code, const std::string& what)
{
  std::string c = err == ENOSPC || err == EDQUOT ? "no-space" : err == EROFS ? "read-only" : code;
  throw Stop{"failed", c, what + ": " + errno_text(err)};
}

std::vector<uint8_t> from_hex(const std::string& hex)
{
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::string utc_stamp()
{
  std::time_t t = std::time(nullptr);
  std::tm tm = {};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string utc_iso()
{
  std::time_t t = std::time(nullptr);
  std::tm tm = {};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void pwrite_all(int fd, const uint8_t* buf, size_t len, uint64_t off, const std::string& path)
{
  if (int err = sys::pwrite_full(fd, buf, len, off)) {
    stop_errno(err, "io-error", "write to " + path + " at offset " + std::to_string(off));
  }
}

// pread that reports EIO instead of throwing; other errors stop.
bool pread_full(int fd, uint8_t* buf, size_t len, uint64_t off, const std::string& path)
{
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EIO) {
      return false;
    }
    if (n < 0) {
      stop_errno(errno, "io-error", "read " + path + " at offset " + std::to_string(off + done));
    }
    if (n == 0) {
      throw Stop{"failed", "changed", path + " got shorter during the repair"};
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

void mkdir_p(const std::string& dir)
{
  if (dir.empty()) {
    return;
  }
  struct stat st = {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      throw Stop{"refused", "backup-dir", dir + " is not a directory"};
    }
    return;
  }
  mkdir_p(sys::parent_dir(dir));
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) {
    stop_errno(errno, "backup-dir", "create the backup directory " + dir);
  }
}

uint64_t free_bytes(const std::string& dir)
{
  struct statvfs sv = {};
  if (::statvfs(dir.c_str(), &sv) < 0) {
    return ~0ULL; // unknown: let the writes tell
  }
  return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
}

bool extent_exists(int fd, uint64_t bytenr, const std::string& path)
{
  btrfs::SearchRange r;
  r.tree_id = k_extent_tree;
  r.min = {bytenr, k_extent_item_key, 0};
  r.max = {bytenr, k_extent_item_key, ~0ULL};
  bool found = false;
  btrfs::tree_search(
    fd, r,
    [&](const btrfs::Key& k, std::span<const uint8_t>) {
      found = found || (k.objectid == bytenr && k.type == k_extent_item_key);
      return !found;
    },
    path);
  return found;
}

// Who holds which range, for the per-range digests of what was written.
size_t range_index(const std::vector<RewriteRange>& ranges, uint64_t off)
{
  // Ranges are sorted by offset and do not overlap: the last one starting at or before `off`.
  auto it = std::upper_bound(ranges.begin(), ranges.end(), off,
                             [](uint64_t o, const RewriteRange& r) { return o < r.offset; });
  if (it == ranges.begin()) {
    return ranges.size();
  }
  --it;
  return off < it->offset + it->length ? static_cast<size_t>(it - ranges.begin()) : ranges.size();
}

class Digests
{
public:
  explicit Digests(size_t n)
  {
    for (size_t i = 0; i < n; ++i) {
      m_states.emplace_back(XXH64_createState(), XXH64_freeState);
      XXH64_reset(m_states.back().get(), 0);
    }
  }
  void update(size_t i, const uint8_t* p, size_t n)
  {
    if (i < m_states.size()) {
      XXH64_update(m_states[i].get(), p, n);
    }
  }
  uint64_t digest(size_t i) const { return XXH64_digest(m_states[i].get()); }
  size_t size() const { return m_states.size(); }

private:
  std::vector<std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)>> m_states;
};

// Writes the bytes of a backup back at their offsets: records read through the filesystem as
// they are, and for each bad sector the copy flagged as chosen (or `prefer`, when the backup has
// that copy). Feeds what it writes to `digests` (per range). Returns the bytes written.
class BackupApplier
{
public:
  BackupApplier(int fd, const std::string& path, const std::vector<RewriteRange>& ranges,
                std::optional<unsigned> prefer, RateLimiter& limiter,
                const std::function<void(uint64_t)>& tick, const std::function<void()>& check)
    : m_fd(fd)
    , m_path(path)
    , m_ranges(ranges)
    , m_prefer(prefer)
    , m_limiter(limiter)
    , m_tick(tick)
    , m_check(check)
    , m_digests(ranges.size())
  {
  }

  // `write` false: only compare with what the file holds now; returns false at the first
  // difference (or EIO), which it describes in `difference`.
  bool run(BackupReader& reader, bool write, std::string& difference)
  {
    BackupRecord r;
    std::vector<BackupRecord> group;
    auto flush = [&]() -> bool {
      if (group.empty()) {
        return true;
      }
      const BackupRecord* pick = nullptr;
      for (const auto& g : group) {
        if (m_prefer && g.mirror == *m_prefer) {
          pick = &g;
        }
      }
      for (const auto& g : group) {
        if (!pick && g.chosen()) {
          pick = &g;
        }
      }
      if (!pick) {
        pick = &group.front();
      }
      bool ok = handle(*pick, write, difference);
      group.clear();
      return ok;
    };
    while (reader.next(r)) {
      if (r.mirror == 0) {
        if (!flush() || !handle(r, write, difference)) {
          return false;
        }
        continue;
      }
      if (!group.empty() && group.front().offset != r.offset && !flush()) {
        return false;
      }
      group.push_back(r);
    }
    return flush();
  }

  const Digests& digests() const { return m_digests; }
  uint64_t written() const { return m_written; }

private:
  bool handle(const BackupRecord& r, bool write, std::string& difference)
  {
    m_check();
    const size_t idx = range_index(m_ranges, r.offset);
    m_digests.update(idx, r.data.data(), r.data.size());
    m_limiter.consumed(2 *
                       r.data.size()); // read from the backup, written to (or read from) the image
    if (write) {
      pwrite_all(m_fd, r.data.data(), r.data.size(), r.offset, m_path);
      m_written += r.data.size();
    } else {
      m_cmp.resize(r.data.size());
      if (!pread_full(m_fd, m_cmp.data(), m_cmp.size(), r.offset, m_path)) {
        difference = "offset " + std::to_string(r.offset) + " reads as EIO";
        return false;
      }
      if (std::memcmp(m_cmp.data(), r.data.data(), r.data.size()) != 0) {
        difference = "the " + std::to_string(r.data.size()) + " bytes at offset " +
                     std::to_string(r.offset) + " are not what the repair wrote";
        return false;
      }
    }
    m_tick(r.data.size());
    return true;
  }

  int m_fd;
  const std::string& m_path;
  const std::vector<RewriteRange>& m_ranges;
  std::optional<unsigned> m_prefer;
  RateLimiter& m_limiter;
  const std::function<void(uint64_t)>& m_tick;
  const std::function<void()>& m_check;
  Digests m_digests;
  std::vector<uint8_t> m_cmp;
  uint64_t m_written = 0;
};

// Reads each range back with O_DIRECT, so btrfs verifies every checksum and no page cache
// answers for the disk; compares with the digests of what was written.
RepairVerify verify_ranges(const std::string& path, const std::vector<RewriteRange>& ranges,
                           const Digests& expected, uint64_t size, uint8_t* buf, size_t chunk,
                           RateLimiter& limiter, std::vector<std::string>& notes)
{
  RepairVerify v;
  v.method = "o_direct";
  sys::Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECT | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    throw Stop{"failed", "verify-failed",
               "cannot open " + path + " with O_DIRECT to read it back: " + errno_text(errno)};
  }
  v.readable = true;
  v.matches = true;
  for (size_t i = 0; i < ranges.size(); ++i) {
    XXH64_state_t* st = XXH64_createState();
    XXH64_reset(st, 0);
    const uint64_t end = std::min(ranges[i].offset + ranges[i].length, size);
    for (uint64_t off = ranges[i].offset; off < end;) {
      const uint64_t left = end - off;
      const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk, (left + 4095) & ~4095ULL));
      ssize_t n = ::pread(*fd, buf, want, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        v.readable = false;
        notes.push_back("reading back offset " + std::to_string(off) +
                        " failed: " + (n < 0 ? errno_text(errno) : std::string("end of file")));
        break;
      }
      const size_t got = std::min<size_t>(static_cast<size_t>(n), static_cast<size_t>(left));
      limiter.consumed(static_cast<uint64_t>(n));
      XXH64_update(st, buf, got);
      off += got;
    }
    if (v.readable && XXH64_digest(st) != expected.digest(i)) {
      v.matches = false;
      notes.push_back("the bytes read back at offset " + std::to_string(ranges[i].offset) +
                      " differ from the bytes written");
    }
    XXH64_freeState(st);
  }
  return v;
}

// Backups of one file (fsid, subvolume, inode) that were left pending by an interrupted run.
struct Pending
{
  std::string path;
  BackupHeader header;
};

std::vector<Pending> pending_backups(const std::string& dir, const std::string& fsid,
                                     uint64_t subvol, uint64_t ino, std::vector<std::string>& notes)
{
  std::vector<Pending> out;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) {
    return out;
  }
  const std::string suffix = std::string(k_backup_suffix) + k_pending_suffix;
  while (auto* ent = ::readdir(d.get())) {
    std::string name = ent->d_name;
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    const std::string p = dir + "/" + name;
    try {
      BackupReader r(p);
      const auto& h = r.header();
      if (h.fsid == fsid && h.subvolume == subvol && h.inode == ino) {
        r.verify_complete();
        out.push_back({p, h});
      }
    } catch (const Error& e) {
      notes.push_back("ignored " + escape_name(p) + ": " + e.what());
    }
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.path < b.path; });
  return out;
}

void fsync_dir(const std::string& dir)
{
  sys::Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d) {
    ::fsync(*d);
  }
}

// Drops the pending suffix: the repair this backup belongs to is verified.
std::string finalize_backup(const std::string& pending_path)
{
  const std::string fin =
    pending_path.substr(0, pending_path.size() - std::strlen(k_pending_suffix));
  if (::rename(pending_path.c_str(), fin.c_str()) < 0) {
    return pending_path;
  }
  fsync_dir(sys::parent_dir(fin));
  return fin;
}

// One line in the system journal for every image repair or undo wrote to: the admin's audit
// trail, with the backup that undoes it. Best effort: no journal, no line.
void journal_record(const std::string& what, const RepairEntry& e)
{
  const std::string backup = e.backup.value_or("");
  sd_journal_send("MESSAGE=vmcsum repair: %s %s (%zu sector(s), %llu bytes rewritten; backup %s)",
                  what.c_str(), e.acted_on.c_str(), e.repaired.size(),
                  static_cast<unsigned long long>(e.rewritten_bytes), backup.c_str(), "PRIORITY=5",
                  "SYSLOG_IDENTIFIER=vmcsum", "VMCSUM_ACTION=%s", what.c_str(), "VMCSUM_PATH=%s",
                  e.acted_on.c_str(), "VMCSUM_BACKUP=%s", backup.c_str(), nullptr);
}

class Repairer
{
public:
  Repairer(const RepairOptions& opts, const RepairProgressFn& progress,
           const std::atomic<bool>& cancel)
    : m_opts(opts)
    , m_progress(progress)
    , m_cancel(cancel)
    , m_collector(opts.mountinfo)
    , m_limiter(opts.limit_rate)
    , m_chunk(static_cast<size_t>(m_limiter.chunk(k_chunk)))
  {
  }

  RepairResult run()
  {
    sys::IgnoreSigio sigio;
    std::vector<std::string> paths;
    for (const auto& p : m_opts.paths) {
      expand(p, paths);
    }
    if (paths.empty() && m_opts.from_report) {
      for (const auto& [p, _] : *m_opts.from_report) {
        paths.push_back(p);
      }
    }
    for (const auto& p : paths) {
      RepairEntry e;
      e.path = p;
      e.acted_on = p;
      if (m_cancel.load()) {
        e.action = "failed";
        e.code = "interrupted";
        e.reason = "interrupted before it was reached";
        m_result.interrupted = true;
      } else {
        try {
          process(p, e);
        } catch (const Stop& s) {
          e.action = s.action;
          e.code = s.code;
          e.reason = s.message;
          if (s.code == "interrupted") {
            m_result.interrupted = true;
          }
        } catch (const Error& err) {
          e.action = "failed";
          e.code = err.code() == Errc::permission ? "needs-root" : "io-error";
          e.reason = err.path() == e.path || err.path() == e.acted_on ? err.detail() : err.what();
        }
      }
      m_result.files.push_back(std::move(e));
    }
    return std::move(m_result);
  }

private:
  // A directory stands for the regular files below it (symlinks are never followed out).
  void expand(const std::string& path, std::vector<std::string>& out)
  {
    struct stat st = {};
    if (::lstat(path.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
      out.push_back(path);
      return;
    }
    std::vector<std::string> found;
    sys::walk_tree(
      path,
      [&](sys::WalkEntry& w) {
        unsigned char t = w.d_type();
        if (t == DT_UNKNOWN) {
          const struct stat* ls = w.lstat();
          t = ls && S_ISREG(ls->st_mode) ? DT_REG : DT_UNKNOWN;
        }
        if (t == DT_REG) {
          found.push_back(w.path());
        }
      },
      [&](const std::string& p, const std::string& why) {
        m_result.notes.push_back(escape_name(p) + ": " + why);
      });
    std::sort(found.begin(), found.end());
    if (found.empty()) {
      m_result.notes.push_back(escape_name(path) + ": no regular file below it");
    }
    out.insert(out.end(), found.begin(), found.end());
  }
  void process(const std::string& path, RepairEntry& e);
  void report(const std::string& path, const char* phase, uint64_t done, uint64_t total)
  {
    if (m_progress) {
      m_progress({path, phase, done, total});
    }
  }
  FileScrub scrub_one(const std::string& path,
                      const std::vector<std::pair<uint64_t, uint64_t>>& ranges, const char* phase);
  int device_fd(const std::string& dev);

  const RepairOptions& m_opts;
  const RepairProgressFn& m_progress;
  const std::atomic<bool>& m_cancel;
  FactCollector m_collector;
  RateLimiter m_limiter;
  size_t m_chunk; // bytes per request: shorter under --limit-rate, so bursts stay short
  std::map<std::string, sys::Fd> m_devs;
  RepairResult m_result;
};

int Repairer::device_fd(const std::string& dev)
{
  auto it = m_devs.find(dev);
  if (it == m_devs.end()) {
    // O_DIRECT: the bytes on the medium, not what the block device's page cache holds.
    sys::Fd fd(::open(dev.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
    if (!fd) {
      stop_errno(errno, "io-error", "open the device " + dev);
    }
    it = m_devs.emplace(dev, std::move(fd)).first;
  }
  return *it->second;
}

FileScrub Repairer::scrub_one(const std::string& path,
                              const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                              const char* phase)
{
  // Per copy only: a read through btrfs would repair copies before we know what they held.
  ScrubOptions so;
  so.paths = {path};
  so.kernel_pass = false;
  so.kernel_log.clear();
  so.journal = false;
  so.shared_limiter = &m_limiter;
  so.chunk = m_chunk;
  so.proc_root = m_opts.proc_dir;
  so.ranges = ranges;
  so.state_dir = m_opts.state_dir;
  so.vm_configs = m_opts.vm_configs;
  auto r = scrub(so, [&](uint64_t d, uint64_t t, const std::string& p) { report(p, phase, d, t); });
  if (r.files.empty()) {
    throw Stop{"failed", "scrub-failed", "scrub found nothing to examine"};
  }
  FileScrub f = std::move(r.files.front());
  if (!f.examined) {
    throw Stop{"failed", "scrub-failed", "scrub: " + f.error.value_or("cannot examine")};
  }
  return f;
}

void Repairer::process(const std::string& path, RepairEntry& e)
{
  struct stat lst = {};
  if (::lstat(path.c_str(), &lst) < 0) {
    throw Stop{"refused", errno == ENOENT ? "not-found" : "cannot-examine", errno_text(errno)};
  }
  FileFacts ff = m_collector.collect(path, true);
  e.acted_on = ff.canonical_path.empty() ? path : ff.canonical_path;
  const std::string& canon = e.acted_on;
  if (!ff.examined) {
    throw Stop{"refused", "cannot-examine", ff.error.value_or("cannot examine")};
  }
  if (ff.kind != "file") {
    throw Stop{"refused", "not-regular",
               "is a " + ff.kind + ", not a regular file: only image files are repaired"};
  }
  if (!ff.on_btrfs) {
    throw Stop{"refused", "not-btrfs",
               "is on " + (ff.fs.empty() ? "an unknown filesystem" : ff.fs) + ", not btrfs"};
  }
  e.size = ff.size;
  if (ff.inode_flags && (*ff.inode_flags & btrfs::inode_flag::nodatasum)) {
    e.action = "clean";
    e.notes.push_back("NODATASUM: it has no data checksums, so no checksum can mismatch");
    return;
  }
  const uint32_t attr = ff.attr_flags.value_or(0);
  if (attr & (FS_IMMUTABLE_FL | FS_APPEND_FL)) {
    throw Stop{"refused", "immutable",
               std::string("is ") + ((attr & FS_IMMUTABLE_FL) ? "immutable" : "append-only") +
                 ": clear that first (chattr -i -a " + escape_name(canon) + ")"};
  }
  const std::string dir = sys::parent_dir(canon);
  {
    struct statvfs sv = {};
    if (::statvfs(dir.c_str(), &sv) == 0 && (sv.f_flag & ST_RDONLY)) {
      throw Stop{"refused", "read-only", "the filesystem is mounted read-only"};
    }
  }
  // A read-only subvolume (a snapshot) shows only here: statvfs says read-write.
  if (::access(canon.c_str(), W_OK) < 0) {
    if (errno == EROFS) {
      throw Stop{"refused", "read-only", "is in a read-only subvolume (a snapshot)"};
    }
    if (errno == EACCES || errno == EPERM) {
      throw Stop{"refused", "needs-root", "cannot be written by this user: " + errno_text(errno)};
    }
  }
  {
    FileUsers u = find_users(canon, scan_proc(m_opts.proc_dir));
    e.users = u.users;
    e.locks = u.locks;
    auto refusals = in_use_refusals(u.users, u.locks);
    if (!refusals.empty()) {
      std::string why;
      for (const auto& r : refusals) {
        why += (why.empty() ? "" : "; ") + r.message;
      }
      throw Stop{"refused", refusals.front().code, why};
    }
  }
  struct stat st0 = {};
  if (::stat(canon.c_str(), &st0) < 0) {
    stop_errno(errno, "cannot-examine", "stat " + canon);
  }
  const std::string fsid = ff.fsid.value_or("");
  const uint64_t subvol = ff.subvolume_id.value_or(0);
  for (const auto& t : remove_stale_backup_temps(m_opts.backup_dir)) {
    e.notes.push_back("removed " + escape_name(t) + ", the unfinished backup of a killed run");
  }
  std::vector<Pending> pending =
    pending_backups(m_opts.backup_dir, fsid, subvol, static_cast<uint64_t>(st0.st_ino), e.notes);

  // 2. What is bad, per copy.
  std::vector<std::pair<uint64_t, uint64_t>> only;
  if (m_opts.from_report) {
    auto it = m_opts.from_report->find(path);
    if (it == m_opts.from_report->end()) {
      it = m_opts.from_report->find(canon);
    }
    if ((it == m_opts.from_report->end() || it->second.empty()) && pending.empty()) {
      e.action = "clean";
      e.notes.push_back("the scrub report lists no bad sector for it");
      return;
    }
    if (it != m_opts.from_report->end()) {
      only = it->second;
    }
    for (const auto& p : pending) {
      only.insert(only.end(), p.header.ranges.begin(), p.header.ranges.end());
    }
  }
  FileScrub fs = scrub_one(canon, only, "scrub");
  e.checked_bytes = fs.checked_bytes;
  e.bad_sectors = fs.bad.size();
  if (m_opts.from_report && !only.empty()) {
    e.steps.push_back("re-verified the " + std::to_string(only.size()) +
                      " range(s) of the scrub report: " + std::to_string(fs.bad.size()) +
                      " bad sector(s) now");
  }
  if (fs.bad.empty() && pending.empty()) {
    e.action = "clean";
    return;
  }

  RepairChoice choice;
  choice.prefer_mirror = m_opts.prefer_mirror;
  choice.include_undetermined = m_opts.include_undetermined;
  choice.mount_point = ff.mount_point;
  std::vector<const BadSector*> to_read;
  // Sectors to rewrite: file offset -> (sector, copy to write back; nullopt: as btrfs reads it)
  std::map<uint64_t, std::pair<BadSector, std::optional<unsigned>>> rewrite;
  auto skip = [&](const BadSector& b, const SectorDecision& d) {
    e.skipped.push_back({b.offset, b.length, b.logical, b.cls, d.code, d.reason, b.evidence});
  };
  for (const auto& b : fs.bad) {
    SectorDecision d = decide_sector(b, choice);
    if (d.action == SectorAction::read) {
      to_read.push_back(&b);
    } else if (d.action == SectorAction::rewrite) {
      rewrite[b.offset] = {b, d.mirror};
    } else {
      skip(b, d);
    }
  }
  if (m_opts.prefer_mirror) {
    for (const auto& [off, r] : rewrite) {
      if (r.second && *r.second != *m_opts.prefer_mirror) {
        e.notes.push_back("copy " + std::to_string(*m_opts.prefer_mirror) + " of offset " +
                          std::to_string(off) + " was not readable: wrote copy " +
                          std::to_string(*r.second) + " instead");
      }
    }
  }

  // 3. A copy still matches: a read through btrfs lets it repair the others.
  if (!to_read.empty()) {
    e.steps.push_back("read " + std::to_string(to_read.size()) +
                      " sector(s) that a copy still matches through btrfs (read repair)");
    if (m_opts.dry_run) {
      for (const auto* b : to_read) {
        e.repaired.push_back({b->offset, b->length, b->logical, b->cls, "read-repair", std::nullopt,
                              b->copies_identical, b->evidence});
      }
    } else {
      sys::Fd rfd(::open(canon.c_str(), O_RDONLY | O_DIRECT | O_NOFOLLOW | O_CLOEXEC));
      if (!rfd) {
        stop_errno(errno, "io-error", "open " + canon + " with O_DIRECT");
      }
      sys::AlignedBuffer sector = sys::aligned_buffer(64 * 1024);
      std::vector<std::pair<uint64_t, uint64_t>> again;
      for (const auto* b : to_read) {
        report(canon, "read", again.size(), to_read.size());
        ::pread(*rfd, sector.get(), b->length, static_cast<off_t>(b->offset));
        m_limiter.consumed(b->length);
        again.emplace_back(b->offset, b->length);
      }
      rfd.reset();
      FileScrub now = scrub_one(canon, again, "recheck");
      std::map<uint64_t, const BadSector*> still;
      for (const auto& b : now.bad) {
        still[b.offset] = &b;
      }
      RepairChoice after = choice;
      after.after_read = true;
      for (const auto* b : to_read) {
        auto it = still.find(b->offset);
        if (it == still.end()) {
          e.repaired.push_back({b->offset, b->length, b->logical, b->cls, "read-repair",
                                std::nullopt, b->copies_identical, b->evidence});
          continue;
        }
        BadSector nb = *it->second;
        nb.cls = b->cls; // the classification of the whole file's pattern, not of a lone sector
        nb.evidence = b->evidence;
        SectorDecision d = decide_sector(nb, after);
        if (d.action == SectorAction::rewrite) {
          rewrite[nb.offset] = {nb, std::nullopt};
        } else {
          skip(nb, d);
        }
      }
    }
  }
  if (rewrite.empty() && pending.empty()) {
    e.action = e.repaired.empty() ? "left" : (m_opts.dry_run ? "would-repair" : "repaired");
    return;
  }

  // 4. The damaged extents and every file range that references them.
  sys::Fd fd(::open(canon.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    stop_errno(errno, "io-error", "open " + canon);
  }
  btrfs::sync_fs(*fd, canon);
  const auto items = btrfs::file_extents(*fd, static_cast<uint64_t>(st0.st_ino), canon);
  // Items come in file-offset order (the b-tree's key order) and do not overlap.
  auto item_at = [&](uint64_t off) -> const btrfs::FileExtent* {
    auto it = std::upper_bound(
      items.begin(), items.end(), off,
      [](uint64_t o, const btrfs::FileExtent& item) { return o < item.file_offset; });
    if (it == items.begin()) {
      return nullptr;
    }
    --it;
    return off < it->file_offset + it->num_bytes ? &*it : nullptr;
  };
  std::set<uint64_t> damaged;
  for (const auto& [off, r] : rewrite) {
    const auto* it = item_at(off);
    if (!it || it->type != btrfs::FileExtentType::regular || it->compression != 0 || it->hole()) {
      throw Stop{"failed", "changed",
                 "offset " + std::to_string(off) + " is no longer in the extent the scrub read: " +
                   canon + " changed meanwhile; run the repair again"};
    }
    damaged.insert(it->disk_bytenr);
  }
  const uint64_t size = static_cast<uint64_t>(st0.st_size);
  std::vector<RewriteRange> ranges;
  for (const auto& it : items) {
    if (it.type != btrfs::FileExtentType::regular || !damaged.count(it.disk_bytenr) ||
        it.file_offset >= size) {
      continue;
    }
    RewriteRange rr;
    rr.offset = it.file_offset;
    rr.length = std::min(it.num_bytes, size - it.file_offset);
    rr.old_logical = it.logical_of(it.file_offset);
    rr.extent_bytenr = it.disk_bytenr;
    rr.extent_bytes = it.disk_num_bytes;
    ranges.push_back(rr);
  }
  for (const auto& p : pending) {
    for (const auto& [off, len] : p.header.ranges) {
      const bool covered = std::any_of(ranges.begin(), ranges.end(), [&](const RewriteRange& r) {
        return r.offset <= off && off + len <= r.offset + r.length;
      });
      if (covered || off >= size) {
        continue;
      }
      RewriteRange rr;
      rr.offset = off;
      rr.length = std::min(len, size - off);
      rr.resumed = true;
      if (const auto* it = item_at(off); it && !it->hole()) {
        rr.old_logical = it->logical_of(off);
        rr.extent_bytenr = it->disk_bytenr;
        rr.extent_bytes = it->disk_num_bytes;
      }
      ranges.push_back(rr);
    }
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const RewriteRange& a, const RewriteRange& b) { return a.offset < b.offset; });
  // Overlaps (a resumed range inside two items) would write bytes twice: trim them.
  for (size_t i = 1; i < ranges.size(); ++i) {
    const uint64_t prev_end = ranges[i - 1].offset + ranges[i - 1].length;
    if (ranges[i].offset < prev_end) {
      const uint64_t end = ranges[i].offset + ranges[i].length;
      ranges[i].offset = prev_end;
      ranges[i].length = end > prev_end ? end - prev_end : 0;
    }
  }
  ranges.erase(std::remove_if(ranges.begin(), ranges.end(),
                              [](const RewriteRange& r) { return r.length == 0; }),
               ranges.end());
  std::optional<std::vector<MountedSubvol>> mounts;
  for (uint64_t bytenr : damaged) {
    std::vector<SharedRef> refs;
    for (const auto& r : btrfs::extent_refs(*fd, bytenr, canon)) {
      if (r.root == subvol && r.inode == static_cast<uint64_t>(st0.st_ino)) {
        continue;
      }
      SharedRef s{r.root, r.inode, r.offset, std::nullopt};
      if (!mounts) {
        mounts = btrfs_mounts(m_opts.mountinfo);
      }
      s.path = inode_path(*mounts, r.root, r.inode,
                          [&](const MountedSubvol& m) { return m.fsid == fsid; });
      refs.push_back(s);
    }
    if (refs.empty()) {
      continue;
    }
    for (auto& rr : ranges) {
      if (rr.extent_bytenr == bytenr) {
        rr.shared_with = refs;
      }
    }
    e.notes.push_back("the damaged extent at logical " + std::to_string(bytenr) +
                      " is also referenced by " + std::to_string(refs.size()) +
                      " other file range(s) (snapshots or reflinks): they keep the old extent, "
                      "and its bad sectors, until they are rewritten or deleted");
  }
  fd.reset();

  // 5. Space, then the plan.
  uint64_t total = 0;
  for (const auto& r : ranges) {
    total += r.length;
  }
  uint64_t device_sectors = 0;
  unsigned copies = 1;
  for (const auto& [off, r] : rewrite) {
    if (r.second) {
      ++device_sectors;
      copies = std::max<unsigned>(copies, static_cast<unsigned>(r.first.copies.size()));
    }
  }
  const uint32_t ss = ff.sector_size.value_or(4096);
  const uint64_t backup_estimate = 4096 + total + device_sectors * copies * ss +
                                   (ranges.size() + device_sectors * (copies + 2)) * 80;
  e.rewritten_bytes = total;
  const uint64_t need = total + space_margin(total);
  const uint64_t have = free_bytes(dir);
  if (have < need) {
    throw Stop{"refused", "no-space",
               "needs " + human_bytes(need) + " free on its filesystem to rewrite " +
                 human_bytes(total) + " (copy-on-write), has " + human_bytes(have) +
                 "; nothing was changed"};
  }
  e.steps.push_back("back up " + human_bytes(backup_estimate) +
                    " (every byte rewritten, every "
                    "copy of each bad sector) to " +
                    escape_name(m_opts.backup_dir) + ", fsync'ed, before the first write");
  e.steps.push_back("rewrite " + std::to_string(ranges.size()) + " file range(s), " +
                    human_bytes(total) + ", that reference " + std::to_string(damaged.size()) +
                    " damaged extent(s): good sectors as btrfs reads them, " +
                    std::to_string(device_sectors) + " bad sector(s) from the chosen device copy");
  e.steps.push_back("fdatasync, read the ranges back with O_DIRECT and compare, commit, check the "
                    "old extents are freed, scrub the ranges per copy again");
  for (const auto& [off, r] : rewrite) {
    e.repaired.push_back({off, r.first.length, r.first.logical, r.first.cls, "rewritten", r.second,
                          r.first.copies_identical, r.first.evidence});
  }
  if (m_opts.dry_run) {
    e.ranges = ranges;
    e.backup_bytes = backup_estimate;
    e.action = "would-repair";
    return;
  }
  mkdir_p(m_opts.backup_dir);
  const uint64_t backup_free = free_bytes(m_opts.backup_dir);
  if (backup_free < backup_estimate + k_backup_margin) {
    throw Stop{"refused", "no-space",
               "the backup needs " + human_bytes(backup_estimate + k_backup_margin) + " in " +
                 escape_name(m_opts.backup_dir) + ", which has " + human_bytes(backup_free) +
                 "; use --backup-dir elsewhere. Nothing was changed"};
  }
  {
    struct statfs bsf = {};
    sys::Fd bd(::open(m_opts.backup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (bd && ::fstatfs(*bd, &bsf) == 0 && bsf.f_type == k_btrfs_magic) {
      try {
        if (btrfs::fs_info(*bd, m_opts.backup_dir).fsid == fsid) {
          e.notes.push_back("the backup is on the image's own filesystem; --backup-dir on "
                            "another filesystem keeps it safe from that filesystem's faults");
        }
      } catch (const Error&) {
        // unknown: say nothing
      }
    }
  }

  // 6. The backup, then the writes, under a write lease.
  sys::Fd wfd(::open(canon.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!wfd) {
    stop_errno(errno, "io-error", "open " + canon + " for writing");
  }
  struct stat st1 = {};
  if (::fstat(*wfd, &st1) < 0) {
    stop_errno(errno, "io-error", "fstat " + canon);
  }
  if (st1.st_ino != st0.st_ino || st1.st_size != st0.st_size ||
      st1.st_mtim.tv_sec != st0.st_mtim.tv_sec || st1.st_mtim.tv_nsec != st0.st_mtim.tv_nsec) {
    throw Stop{"failed", "changed", canon + " changed since it was scrubbed; run the repair again"};
  }
  sys::Lease lease(*wfd);
  if (!lease.active() && lease.error() == EAGAIN) {
    throw Stop{"refused", "in-use", "another process has it open (the write lease was refused)"};
  }
  if (!lease.active()) {
    e.notes.push_back("no write lease (" + errno_text(lease.error()) +
                      "): a process opening the image meanwhile would not be noticed");
  }
  const std::function<void()> check = [&] {
    if (m_cancel.load()) {
      throw Stop{
        "failed", "interrupted",
        "interrupted: every sector holds its old or its new bytes; the backup " +
          (e.backup ? escape_name(*e.backup) + k_pending_suffix : std::string("was not written")) +
          " is complete; run the repair again to finish"};
    }
    if (lease.broken()) {
      throw Stop{"failed", "in-use",
                 "another process opened the image during the repair: stopped (every sector "
                 "holds its old or new bytes; run the repair again once it is closed)"};
    }
  };

  btrfs::FsInfo info = btrfs::fs_info(*wfd, canon);
  Checksummer sum(info.csum_type);
  BackupHeader h;
  h.path = canon;
  h.fsid = fsid;
  h.subvolume = subvol;
  h.inode = static_cast<uint64_t>(st0.st_ino);
  h.size = size;
  h.mtime_sec = st0.st_mtim.tv_sec;
  h.mtime_nsec = st0.st_mtim.tv_nsec;
  h.sectorsize = ss;
  h.csum_type = btrfs::csum_type_name(info.csum_type);
  h.created = utc_iso();
  for (const auto& r : ranges) {
    h.ranges.emplace_back(r.offset, r.length);
  }
  const std::string name = backup_file_name(sys::base_name(canon), h.inode, utc_stamp());
  sys::AlignedBuffer buf = sys::aligned_buffer(k_chunk);
  sys::AlignedBuffer copy = sys::aligned_buffer(64 * 1024);
  std::string backup_path;
  {
    BackupWriter bw(m_opts.backup_dir, h);
    uint64_t done = 0;
    for (const auto& r : ranges) {
      const uint64_t end = r.offset + r.length;
      for (uint64_t off = r.offset; off < end;) {
        check();
        const size_t n = static_cast<size_t>(std::min<uint64_t>(m_chunk, end - off));
        const uint64_t n_sectors = (n + ss - 1) / ss;
        std::vector<bool> from_dev(n_sectors, false);
        if (!pread_full(*wfd, buf.get(), n, off, canon)) {
          for (uint64_t s = 0; s < n_sectors; ++s) {
            const uint64_t so = off + s * ss;
            const size_t len = static_cast<size_t>(std::min<uint64_t>(ss, off + n - so));
            if (!pread_full(*wfd, buf.get() + s * ss, len, so, canon)) {
              auto it = rewrite.find(so);
              if (it == rewrite.end() || !it->second.second) {
                throw Stop{"failed", "io-error",
                           "offset " + std::to_string(so) +
                             " reads as EIO but the scrub did not list it as a bad sector no "
                             "copy matches; nothing was written. Run `vmcsum scrub` on it"};
              }
            }
          }
        }
        m_limiter.consumed(n);
        // Every copy of each bad sector that is rewritten from a device copy.
        uint64_t run_start = off;
        auto flush_run = [&](uint64_t until) {
          if (until > run_start) {
            bw.add(run_start, 0, 0, 0, {}, buf.get() + (run_start - off),
                   static_cast<uint32_t>(until - run_start));
          }
        };
        for (uint64_t s = 0; s < n_sectors; ++s) {
          const uint64_t so = off + s * ss;
          auto it = rewrite.find(so);
          if (it == rewrite.end() || !it->second.second) {
            continue;
          }
          flush_run(so);
          const BadSector& b = it->second.first;
          const unsigned chosen = *it->second.second;
          const auto expected = from_hex(b.expected_csum);
          bool wrote_chosen = false;
          for (const auto& c : b.copies) {
            if (c.read_error) {
              continue;
            }
            const int dfd = device_fd(c.device);
            bool ok = true;
            size_t got = 0;
            while (got < ss) {
              ssize_t rn =
                ::pread(dfd, copy.get() + got, ss - got, static_cast<off_t>(c.physical + got));
              if (rn < 0 && errno == EINTR) {
                continue;
              }
              if (rn <= 0) {
                ok = false;
                break;
              }
              got += static_cast<size_t>(rn);
            }
            m_limiter.consumed(ss);
            if (!ok) {
              if (c.mirror == chosen) {
                throw Stop{"failed", "io-error",
                           "copy " + std::to_string(c.mirror) + " of offset " + std::to_string(so) +
                             " on " + c.device + " cannot be read any more; nothing was written"};
              }
              continue;
            }
            if (to_hex(sum.compute({copy.get(), ss})) != c.csum) {
              throw Stop{"failed", "changed",
                         "copy " + std::to_string(c.mirror) + " of offset " + std::to_string(so) +
                           " changed since the scrub; nothing was written. Run the repair again"};
            }
            const bool is_chosen = c.mirror == chosen;
            bw.add(so, b.logical, c.mirror, is_chosen ? BackupRecord::k_chosen : 0, expected,
                   copy.get(), ss);
            if (is_chosen) {
              const size_t len = static_cast<size_t>(std::min<uint64_t>(ss, off + n - so));
              std::memcpy(buf.get() + s * ss, copy.get(), len);
              wrote_chosen = true;
            }
          }
          if (!wrote_chosen) {
            throw Stop{"failed", "io-error",
                       "no copy of offset " + std::to_string(so) + " to write"};
          }
          run_start = so + ss;
        }
        flush_run(off + n);
        m_limiter.consumed(n); // the backup's writes
        off += n;
        done += n;
        report(canon, "backup", done, total);
      }
    }
    backup_path = bw.commit(name + k_pending_suffix);
    e.backup_bytes = bw.bytes();
  }
  e.backup = backup_path.substr(0, backup_path.size() - std::strlen(k_pending_suffix));

  BackupReader reader(backup_path);
  uint64_t written = 0;
  const std::function<void(uint64_t)> tick = [&](uint64_t n) {
    written += n;
    report(canon, "write", written, total);
  };
  // The backup's own selection: the chosen copy (--prefer-mirror was applied when choosing).
  BackupApplier applier(*wfd, canon, ranges, std::nullopt, m_limiter, tick, check);
  std::string unused;
  applier.run(reader, true, unused);
  if (::fdatasync(*wfd) < 0) {
    stop_errno(errno, "io-error", "fdatasync " + canon);
  }
  // The data is what it was (the bad sectors now readable): keep the timestamps.
  const struct timespec times[2] = {st0.st_atim, st0.st_mtim};
  ::futimens(*wfd, times);
  ::fsync(*wfd);
  lease.release();
  wfd.reset();
  if (m_cancel.load()) {
    throw Stop{"failed", "interrupted",
               "interrupted after every range was written, before the verification; the backup " +
                 escape_name(backup_path) + " stays pending: run the repair again to verify"};
  }

  // 7. Verify.
  report(canon, "verify", 0, total);
  e.verify =
    verify_ranges(canon, ranges, applier.digests(), size, buf.get(), m_chunk, m_limiter, e.notes);
  {
    sys::Fd vfd(::open(canon.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (vfd) {
      btrfs::sync_fs(*vfd, canon);
      for (auto& rr : ranges) {
        if (rr.extent_bytenr && damaged.count(rr.extent_bytenr)) {
          rr.freed = !extent_exists(*vfd, rr.extent_bytenr, canon);
        }
      }
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> written_ranges;
  for (const auto& r : ranges) {
    written_ranges.emplace_back(r.offset, r.length);
  }
  FileScrub after = scrub_one(canon, written_ranges, "check");
  e.verify->bad_after = after.bad.size();
  e.ranges = ranges;
  for (const auto& rr : ranges) {
    if (rr.freed == false && rr.shared_with.empty()) {
      e.notes.push_back("the old extent at logical " + std::to_string(rr.extent_bytenr) +
                        " is still allocated after the commit");
    }
  }
  if (!e.verify->readable || !e.verify->matches || after.bad.size() > 0) {
    e.action = "failed";
    e.code = "verify-failed";
    e.reason = !e.verify->readable ? "the rewritten ranges do not read back without errors"
               : !e.verify->matches
                 ? "the rewritten ranges read back differently from what was written"
                 : std::to_string(after.bad.size()) +
                     " sector(s) of the rewritten ranges still fail their checksum on some copy";
    e.reason += "; the backup " + escape_name(backup_path) + " keeps every byte";
    e.backup = backup_path;
    return;
  }
  e.backup = finalize_backup(backup_path);
  for (const auto& p : pending) {
    const std::string fin = finalize_backup(p.path);
    e.notes.push_back("finished the interrupted repair of " + escape_name(fin));
  }
  // Verified: audit weighs the kernel log's older checksum events of this image against it.
  if (!m_opts.state_dir.empty() && !fsid.empty()) {
    try {
      record_repair(m_opts.state_dir, fsid, subvol, static_cast<uint64_t>(st0.st_ino), canon,
                    realtime_now_us());
    } catch (const Error& err) {
      e.notes.push_back(std::string("the repair was not recorded in the state directory: ") +
                        err.what());
    }
  }
  e.action = "repaired";
  journal_record("repaired", e);
}

} // namespace

bool nocow_worthwhile(const std::vector<std::string>& data_profiles, std::string& why_not)
{
  if (data_profiles.empty() ||
      std::find(data_profiles.begin(), data_profiles.end(), "unknown") != data_profiles.end()) {
    why_not = "the data profile is unknown";
    return false;
  }
  const bool duplicated =
    std::any_of(data_profiles.begin(), data_profiles.end(),
                [](const std::string& p) { return btrfs::profile_has_duplication(p); });
  if (duplicated) {
    why_not = "its data profile keeps several copies: NOCOW would give up checksums and "
              "self-healing, and kernels from 7.0 fall back to buffered writes for NODATASUM "
              "files on such profiles anyway";
    return false;
  }
  return true;
}

RepairResult repair(const RepairOptions& opts, const RepairProgressFn& progress,
                    const std::atomic<bool>& cancel)
{
  Repairer r(opts, progress, cancel);
  RepairResult result = r.run();
  if (!opts.then_nocow || opts.dry_run) {
    return result;
  }
  for (auto& e : result.files) {
    if (e.action != "repaired" && e.action != "clean") {
      e.nocow = NocowOutcome{"skipped", "not-repaired", "the repair did not finish"};
      continue;
    }
    if (!e.skipped.empty()) {
      e.nocow = NocowOutcome{"skipped", "not-repaired",
                             "bad sectors remain (see skipped): converting now would fail to "
                             "read them"};
      continue;
    }
    FactCollector fc(opts.mountinfo);
    FileFacts ff = fc.collect(e.acted_on, false);
    std::string why_not;
    if (!nocow_worthwhile(ff.data_profiles, why_not)) {
      e.nocow = NocowOutcome{"skipped", "not-worthwhile", why_not};
      continue;
    }
    SetOptions so;
    so.paths = {e.acted_on};
    so.target = CowTarget::nocow;
    so.proc_dir = opts.proc_dir;
    so.mountinfo = opts.mountinfo;
    SetResult sr = set_cow_attribute(
      so,
      [&](const SetProgress& p) {
        if (progress) {
          progress({p.path, "nocow " + p.phase, p.done, p.total});
        }
      },
      cancel);
    if (!sr.files.empty()) {
      const auto& se = sr.files.front();
      e.nocow = NocowOutcome{std::string(outcome_name(se.action)), se.code, se.reason};
    }
  }
  return result;
}

RepairResult undo_repair(const UndoOptions& opts, const RepairProgressFn& progress,
                         const std::atomic<bool>& cancel)
{
  RepairResult result;
  RepairEntry e;
  e.backup = opts.backup;
  // Until the backup names its image, the entry is about the backup itself.
  e.path = opts.backup;
  e.acted_on = opts.backup;
  sys::IgnoreSigio sigio;
  try {
    BackupReader reader(opts.backup);
    reader.verify_complete();
    const BackupHeader& h = reader.header();
    e.path = h.path;
    e.acted_on = h.path;
    e.size = h.size;
    std::vector<RewriteRange> ranges;
    for (const auto& [off, len] : h.ranges) {
      RewriteRange r;
      r.offset = off;
      r.length = len;
      ranges.push_back(r);
      e.rewritten_bytes += len;
    }
    e.ranges = ranges;
    sys::Fd fd(::open(h.path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
      throw Stop{"refused", errno == ENOENT ? "not-found" : "cannot-examine",
                 "open " + escape_name(h.path) + ": " + errno_text(errno)};
    }
    struct stat st = {};
    if (::fstat(*fd, &st) < 0) {
      stop_errno(errno, "io-error", "fstat " + h.path);
    }
    btrfs::FsInfo info = btrfs::fs_info(*fd, h.path);
    const uint64_t subvol = btrfs::subvolume_id(*fd, h.path);
    if ((info.fsid != h.fsid || subvol != h.subvolume ||
         static_cast<uint64_t>(st.st_ino) != h.inode) &&
        !opts.force) {
      throw Stop{
        "refused", "different-file",
        escape_name(h.path) +
          " is not the file the backup was taken of (another "
          "filesystem, subvolume or inode: replaced since, e.g. by `set`); --force restores "
          "the bytes anyway"};
    }
    {
      FileUsers u = find_users(h.path, scan_proc(opts.proc_dir));
      e.users = u.users;
      e.locks = u.locks;
      auto refusals = in_use_refusals(u.users, u.locks);
      if (!refusals.empty()) {
        throw Stop{"refused", refusals.front().code, refusals.front().message};
      }
    }
    RateLimiter limiter(opts.limit_rate);
    sys::Lease lease(*fd);
    if (!lease.active() && lease.error() == EAGAIN) {
      throw Stop{"refused", "in-use", "another process has it open (the write lease was refused)"};
    }
    const std::function<void()> check = [&] {
      if (cancel.load()) {
        throw Stop{"failed", "interrupted", "interrupted: run the undo again to finish"};
      }
      if (lease.broken()) {
        throw Stop{"failed", "in-use", "another process opened the image during the undo"};
      }
    };
    uint64_t done = 0;
    const std::function<void(uint64_t)> tick = [&](uint64_t n) {
      done += n;
      if (progress) {
        progress({h.path, "compare", done, e.rewritten_bytes});
      }
    };
    // What the repair wrote must still be there, or the undo would destroy newer data.
    {
      BackupApplier cmp(*fd, h.path, ranges, std::nullopt, limiter, tick, check);
      std::string difference;
      if (!cmp.run(reader, false, difference)) {
        if (!opts.force) {
          throw Stop{"refused", "changed",
                     escape_name(h.path) + " changed since the repair (" + difference +
                       "): restoring would overwrite newer data; --force restores anyway"};
        }
        e.notes.push_back("changed since the repair (" + difference +
                          "); restored anyway (--force)");
      }
    }
    e.steps.push_back("write the " + human_bytes(e.rewritten_bytes) + " saved in the backup back");
    if (opts.dry_run) {
      e.action = "would-restore";
    } else {
      reader.verify_complete(); // rewinds
      done = 0;
      const std::function<void(uint64_t)> wtick = [&](uint64_t n) {
        done += n;
        if (progress) {
          progress({h.path, "write", done, e.rewritten_bytes});
        }
      };
      BackupApplier applier(*fd, h.path, ranges, opts.prefer_mirror, limiter, wtick, check);
      std::string unused;
      applier.run(reader, true, unused);
      if (::fdatasync(*fd) < 0) {
        stop_errno(errno, "io-error", "fdatasync " + h.path);
      }
      lease.release();
      fd.reset();
      sys::AlignedBuffer buf = sys::aligned_buffer(k_chunk);
      e.verify = verify_ranges(h.path, ranges, applier.digests(), h.size, buf.get(),
                               static_cast<size_t>(limiter.chunk(k_chunk)), limiter, e.notes);
      if (!e.verify->readable || !e.verify->matches) {
        throw Stop{"failed", "verify-failed", "the restored bytes do not read back as written"};
      }
      e.action = "restored";
      journal_record("restored", e);
    }
  } catch (const Stop& s) {
    e.action = s.action;
    e.code = s.code;
    e.reason = s.message;
    result.interrupted = s.code == "interrupted";
  } catch (const Error& err) {
    e.action = err.code() == Errc::usage ? "refused" : "failed";
    e.code = err.code() == Errc::usage ? "bad-backup" : "io-error";
    e.reason = err.path() == e.path || err.path() == e.acted_on ? err.detail() : err.what();
  }
  result.files.push_back(std::move(e));
  return result;
}

} // namespace vmcsum::core
