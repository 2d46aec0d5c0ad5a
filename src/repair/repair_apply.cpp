// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The pieces repair and undo share (repair_internal.hpp).
#include "repair_internal.hpp"

#include <vmcsum/error.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/walk.hpp>

#include <vmcsum/host/journal_api.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <unistd.h>

namespace vmcsum::core::repair_detail {

namespace {

std::string utc_format(const char* fmt)
{
  std::time_t t = std::time(nullptr);
  std::tm tm = {};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, fmt, &tm);
  return buf;
}

// Which range holds `off` (ranges are sorted and do not overlap); ranges.size() for none.
size_t range_index(const std::vector<RewriteRange>& ranges, uint64_t off)
{
  auto it = std::upper_bound(ranges.begin(), ranges.end(), off,
                             [](uint64_t o, const RewriteRange& r) { return o < r.offset; });
  if (it == ranges.begin()) {
    return ranges.size();
  }
  --it;
  return off < it->offset + it->length ? static_cast<size_t>(it - ranges.begin()) : ranges.size();
}

void fsync_dir(const std::string& dir)
{
  sys::Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d) {
    ::fsync(*d);
  }
}

} // namespace

std::string utc_stamp()
{
  return utc_format("%Y%m%dT%H%M%SZ");
}

std::string utc_iso()
{
  return utc_format("%Y-%m-%dT%H:%M:%SZ");
}

std::vector<uint8_t> from_hex(const std::string& hex)
{
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

void pwrite_all(int fd, const uint8_t* buf, size_t len, uint64_t off, const std::string& path)
{
  if (int err = sys::pwrite_full(fd, buf, len, off)) {
    stop_on_errno(err, "io-error", "write to " + path + " at offset " + std::to_string(off));
  }
}

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
      stop_on_errno(errno, "io-error", "read " + path + " at offset " + std::to_string(off + done));
    }
    if (n == 0) {
      throw Stop{RepairAction::failed, "changed", path + " got shorter during the repair"};
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

sys::Fd reopen(int fd, int flags, const struct stat& want, const std::string& display)
{
  // O_NONBLOCK (reopen_fd adds it): an open for writing of a file another process holds a read
  // lease on would wait out /proc/sys/fs/lease-break-time (45 s, seen here: any user can lease
  // their own image and stall a repair of it); with it the open fails at once (EWOULDBLOCK).
  // Regular files ignore O_NONBLOCK for reads and writes.
  sys::Fd f = sys::reopen_fd(fd, flags);
  if (!f && errno == EWOULDBLOCK) {
    throw Stop{RepairAction::refused, "in-use",
               "another process holds a lease on it (it has it open): not reopened"};
  }
  if (!f) {
    stop_on_errno(errno, "io-error", "reopen " + display);
  }
  struct stat st = {};
  if (::fstat(*f, &st) < 0 || st.st_dev != want.st_dev || st.st_ino != want.st_ino ||
      !S_ISREG(st.st_mode)) {
    throw Stop{RepairAction::failed, "changed", display + " is not the file examined any more"};
  }
  return f;
}

sys::Fd open_regular(const std::string& path, struct stat& st, struct stat* dir_st)
{
  // The path a backup names is the image's canonical path: no component of it was a symlink
  // when the backup was taken. Its directory is resolved from "/" with no symlink followed
  // anywhere (sys::openat_beneath: openat2 RESOLVE_NO_SYMLINKS, or one component at a time), so
  // a directory on the way that someone swapped for a symlink since cannot send the write to
  // another file; the file is opened in that very directory. O_NONBLOCK: a FIFO put in the
  // image's place never blocks the open; O_NOFOLLOW: a symlink there is not followed.
  const auto slash = path.find_last_of('/');
  if (path.empty() || path.front() != '/' || slash + 1 >= path.size()) {
    throw Stop{RepairAction::refused, "cannot-examine",
               escape_name(path) + ": not an absolute path of a file: not opened"};
  }
  auto refuse = [&](int err) {
    // ELOOP/EXDEV: a symlink met (openat2, or one component at a time); ENOTDIR: the last
    // directory of the path is a symlink (O_PATH|O_NOFOLLOW opened the link) or a file now.
    const bool replaced = err == ELOOP || err == EXDEV || err == ENOTDIR;
    throw Stop{RepairAction::refused,
               err == ENOENT ? "not-found"
               : replaced    ? "not-regular"
                             : "cannot-examine",
               "open " + escape_name(path) + ": " +
                 (replaced ? std::string("a symlink or a file on the way, not a directory (the "
                                         "path named was canonical: something on it was "
                                         "replaced since)")
                           : errno_text(err))};
  };
  sys::Fd dir(sys::open_canonical_dir(path.substr(0, slash == 0 ? 1 : slash), O_PATH));
  if (!dir) {
    refuse(errno);
  }
  if (dir_st && ::fstat(*dir, dir_st) < 0) {
    stop_on_errno(errno, "io-error", "fstat the directory of " + path);
  }
  // Looked at through O_PATH, opened only when regular (reopen(): that inode, through
  // /proc/self/fd): a FIFO or device put in the image's place is never opened (a FIFO's writer
  // would wake, a device act).
  sys::Fd look(::openat(*dir, path.c_str() + slash + 1, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!look) {
    refuse(errno);
  }
  if (::fstat(*look, &st) < 0) {
    stop_on_errno(errno, "io-error", "fstat " + path);
  }
  if (!S_ISREG(st.st_mode)) {
    throw Stop{RepairAction::refused, "not-regular",
               escape_name(path) + " is not a regular file: only image files are written"};
  }
  return reopen(*look, O_RDONLY, st, escape_name(path));
}

Digests::Digests(size_t n)
{
  for (size_t i = 0; i < n; ++i) {
    m_states.push_back(std::make_unique<sys::Hasher>());
  }
}

void Digests::update(size_t i, const uint8_t* p, size_t n)
{
  if (i < m_states.size()) {
    m_states[i]->update(p, n);
  }
}

const BackupRecord& pick_record(const std::vector<BackupRecord>& group,
                                std::optional<unsigned> prefer)
{
  if (prefer) {
    for (const auto& g : group) {
      if (g.mirror == *prefer) {
        return g;
      }
    }
  }
  for (const auto& g : group) {
    if (g.chosen()) {
      return g;
    }
  }
  return group.front();
}

BackupApplier::BackupApplier(int fd, const std::string& path,
                             const std::vector<RewriteRange>& ranges,
                             std::optional<unsigned> prefer, RateLimiter& limiter,
                             std::function<void(uint64_t)> tick, std::function<void()> check)
  : m_fd(fd)
  , m_path(path)
  , m_ranges(ranges)
  , m_prefer(prefer)
  , m_limiter(limiter)
  , m_tick(std::move(tick))
  , m_check(std::move(check))
  , m_digests(ranges.size())
{
}

bool BackupApplier::run(BackupReader& reader, ApplyMode mode, std::string& difference)
{
  BackupRecord r;
  std::vector<BackupRecord> group;
  auto flush = [&]() -> bool {
    if (group.empty()) {
      return true;
    }
    const bool ok = handle(pick_record(group, m_prefer), mode, difference);
    group.clear();
    return ok;
  };
  while (reader.next(r)) {
    if (r.mirror == 0) {
      if (!flush() || !handle(r, mode, difference)) {
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

bool BackupApplier::handle(const BackupRecord& r, ApplyMode mode, std::string& difference)
{
  m_check();
  if (r.hashed()) {
    return handle_hashed(r, mode, difference);
  }
  if (mode == ApplyMode::compare_hashed) {
    return true;
  }
  const size_t idx = range_index(m_ranges, r.offset);
  // A device copy of the last sector is a whole sector: never write past the range (the size).
  size_t len = r.data.size();
  if (idx < m_ranges.size()) {
    len = static_cast<size_t>(
      std::min<uint64_t>(len, m_ranges[idx].offset + m_ranges[idx].length - r.offset));
  }
  m_digests.update(idx, r.data.data(), len);
  m_limiter.consumed(2 * len); // read from the backup, written to (or read from) the image
  if (mode == ApplyMode::rewrite || mode == ApplyMode::restore) {
    pwrite_all(m_fd, r.data.data(), len, r.offset, m_path);
  } else {
    m_cmp.resize(len);
    if (!pread_full(m_fd, m_cmp.data(), len, r.offset, m_path)) {
      difference = "offset " + std::to_string(r.offset) + " reads as EIO";
      m_difference_hashed = false;
      return false;
    }
    if (std::memcmp(m_cmp.data(), r.data.data(), len) != 0) {
      difference = "the " + std::to_string(len) + " bytes at offset " + std::to_string(r.offset) +
                   (r.mirror != 0 && !r.chosen()
                      ? " are not copy " + std::to_string(r.mirror) + ", which would be written"
                      : " are not what the repair wrote");
      m_difference_hashed = false;
      return false;
    }
  }
  m_tick(len);
  return true;
}

// A stretch the backup keeps the digest of: the file must still hold those bytes. They are read
// into one buffer (at most k_max_hashed) and checked before any of them is written back.
bool BackupApplier::handle_hashed(const BackupRecord& r, ApplyMode mode, std::string& difference)
{
  const size_t len = r.length;
  m_cmp.resize(len);
  const bool readable = pread_full(m_fd, m_cmp.data(), len, r.offset, m_path);
  m_limiter.consumed(mode == ApplyMode::rewrite ? 2 * len : len);
  const bool same = readable && stretch_matches(r, m_cmp.data(), len);
  if (!same) {
    const std::string what = "the " + std::to_string(len) + " bytes at offset " +
                             std::to_string(r.offset) +
                             (readable ? " are not what they were at the repair" : " read as EIO");
    if (mode == ApplyMode::rewrite || mode == ApplyMode::restore) {
      // The repair hashed every stretch for its backup, and undo compared them, just before and
      // under the lease: a writer that had the file open already. What was written before this
      // stretch stays.
      throw Stop{RepairAction::failed, "changed",
                 what + " (the backup keeps their digest, not a copy): stopped there, without "
                        "writing them; the sectors before them were written"};
    }
    difference = what;
    m_difference_hashed = true;
    return false;
  }
  if (mode == ApplyMode::compare || mode == ApplyMode::compare_hashed) {
    m_matched[r.offset] = {r.length, stretch_xxh3(m_cmp.data(), len), r.sha256};
  }
  m_digests.update(range_index(m_ranges, r.offset), m_cmp.data(), len);
  if (mode == ApplyMode::rewrite) {
    pwrite_all(m_fd, m_cmp.data(), len, r.offset, m_path);
  }
  m_tick(len);
  return true;
}

bool BackupApplier::stretch_matches(const BackupRecord& r, const uint8_t* data, size_t len) const
{
  if (m_known != nullptr) {
    const auto it = m_known->find(r.offset);
    if (it != m_known->end() && it->second.length == len) {
      return it->second.sha256 == r.sha256 && stretch_xxh3(data, len) == it->second.xxh3;
    }
  }
  return stretch_digest(data, len) == r.sha256;
}

std::string stretch_xxh3(const uint8_t* data, size_t length)
{
  sys::Hasher h;
  h.update(data, length);
  return h.hex();
}

void take_write_lease(std::optional<sys::Lease>& lease, int fd, std::vector<std::string>& notes)
{
  lease.emplace(fd);
  if (!lease->active() && lease->error() == EAGAIN) {
    throw Stop{RepairAction::refused, "in-use",
               "another process has it open (the write lease was refused)"};
  }
  if (!lease->active()) {
    notes.push_back("no write lease (" + errno_text(lease->error()) +
                    "): a process opening the image meanwhile would not be noticed");
  }
}

RepairVerify verify_ranges(int fd, const struct stat& st, const std::string& path,
                           const std::vector<RewriteRange>& ranges, const Digests& expected,
                           uint64_t size, RateLimiter& limiter, std::vector<std::string>& notes)
{
  RepairVerify v;
  v.method = "o_direct";
  sys::Fd dfd = reopen(fd, O_RDONLY | O_DIRECT, st, path);
  v.readable = true;
  v.matches = true;
  // One range at a time, so that --limit-rate is charged as the reads go (no cancel: a stop
  // half-way through the check must not read as a failed verification).
  for (size_t i = 0; i < ranges.size() && v.readable; ++i) {
    const sys::Readback rb = sys::readback_hash(*dfd, {{ranges[i].offset, ranges[i].length}}, size);
    limiter.consumed(
      std::min(ranges[i].length, size > ranges[i].offset ? size - ranges[i].offset : 0), false);
    if (!rb.readable || rb.range_digests.empty()) {
      v.readable = false;
      const uint64_t at = rb.failed_at.value_or(ranges[i].offset);
      notes.push_back("reading back offset " + std::to_string(at) +
                      " failed: " + (rb.error ? errno_text(rb.error) : std::string("end of file")));
      break;
    }
    if (rb.range_digests.front() != expected.digest(i)) {
      v.matches = false;
      notes.push_back("the bytes read back at offset " + std::to_string(ranges[i].offset) +
                      " differ from the bytes written");
    }
  }
  return v;
}

std::string finalize_backup(const std::string& pending_path)
{
  const std::string fin =
    pending_path.substr(0, pending_path.size() - std::strlen(k_pending_suffix));
  // Never over an existing file (another backup of that name): the backup keeps its pending
  // name then, which undo takes as well.
  if (::renameat2(AT_FDCWD, pending_path.c_str(), AT_FDCWD, fin.c_str(), RENAME_NOREPLACE) < 0) {
    return pending_path;
  }
  fsync_dir(sys::parent_dir(fin));
  return fin;
}

void journal_record(const char* what, const RepairEntry& e)
{
  const JournalApi* sd = journal_api();
  if (!sd) {
    return; // no libsystemd: the repair record in the state directory is the record
  }
  const std::string backup = e.backup.value_or("");
  // The message escaped (a name's ESC or newline would reach `journalctl -a`'s terminal);
  // VMCSUM_PATH keeps the raw bytes (a journal field is binary-safe).
  const std::string shown = escape_name(e.acted_on), shown_backup = escape_name(backup);
  sd->send("MESSAGE=vmcsum repair: %s %s (%zu sector(s), %llu bytes rewritten; backup %s)", what,
           shown.c_str(), e.repaired.size(), static_cast<unsigned long long>(e.rewritten_bytes),
           shown_backup.c_str(), "PRIORITY=5", "SYSLOG_IDENTIFIER=vmcsum", "VMCSUM_ACTION=%s", what,
           "VMCSUM_PATH=%s", e.acted_on.c_str(), "VMCSUM_BACKUP=%s", backup.c_str(), nullptr);
}

} // namespace vmcsum::core::repair_detail
