// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// `vmcsum repair --undo BACKUP`: writes the bytes a repair saved back. It only restores what this
// host backed up (issue 12 #2):
//  1. the backup: a complete file, owned by us and writable by nobody else (so the bytes hashed
//     are the bytes read), every record inside the header's ranges (BackupReader), and its
//     SHA-256 recorded by the repair that wrote it (backup_binding.hpp) — "backup-not-ours"
//     otherwise, --force or not;
//  2. the target: opened read-only without blocking or following a symlink anywhere on its
//     canonical path, a regular file (a header naming a FIFO or device is never opened for
//     writing), on the filesystem and subvolume recorded; another inode there (the image
//     replaced since) only with --force, and never one with several hard links;
//     reopened read-write from that descriptor (same inode);
//  3. compare, then write: one selection of bytes per bad sector (pick_record) for both, so the
//     bytes written are the bytes compared; every stretch the backup keeps only the digest of
//     (format 2: the repair wrote those bytes back unchanged) must still match it, --force or
//     not, and is left as it is (the write phase checks it again against the XXH3 of what
//     compare read, as repair's does: StretchDigest); then an O_DIRECT read-back through the
//     same inode.
#include "repair_internal.hpp"

#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/repair/backup_binding.hpp>
#include <vmcsum/repair/repair.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/set/rewrite.hpp>
#include <vmcsum/sys/durable_file.hpp>
#include <vmcsum/sys/lease.hpp>

#include <fcntl.h>
#include <unistd.h>

namespace vmcsum::core {

using namespace repair_detail;

namespace {

class Undo
{
public:
  Undo(const UndoOptions& opts, const RepairProgressFn& progress, const std::atomic<bool>& cancel,
       RepairEntry& e)
    : m_opts(opts)
    , m_progress(progress)
    , m_cancel(cancel)
    , m_e(e)
    , m_limiter(opts.limit_rate)
  {
  }

  void run()
  {
    check_backup();
    open_target();
    check_users();
    take_lease();
    compare();
    m_e.steps.push_back("write the bad sectors' copies saved in the backup back, within " +
                        human_bytes(m_e.rewritten_bytes) +
                        " of ranges whose other bytes the backup shows unchanged");
    if (m_opts.dry_run) {
      m_e.action = RepairAction::would_restore;
      return;
    }
    write();
    m_e.action = RepairAction::restored;
    journal_record("restored", m_e);
  }

private:
  void check_backup();
  void open_target();
  void check_users();
  void take_lease();
  void compare();
  [[noreturn]] void refuse_not_in_backup(const std::string& difference) const;
  void write();
  void check_stop() const;
  void tick(const char* phase, uint64_t n)
  {
    m_done += n;
    if (m_progress) {
      m_progress({m_header.path, phase, m_done, m_e.rewritten_bytes});
    }
  }

  const UndoOptions& m_opts;
  const RepairProgressFn& m_progress;
  const std::atomic<bool>& m_cancel;
  RepairEntry& m_e;
  RateLimiter m_limiter;
  std::unique_ptr<BackupReader> m_reader;
  BackupHeader m_header;
  std::vector<RewriteRange> m_ranges;
  struct stat m_st = {};
  sys::Fd m_fd;                      // the target, read-write, the inode examined
  std::optional<sys::Lease> m_lease; // released before m_fd closes
  uint64_t m_done = 0;
  // Every hashed stretch, as compare() matched it (its first pass, or the hashed-only pass
  // after a record differed): what write() checks them against (StretchDigest).
  StretchDigests m_matched;
};

void Undo::check_backup()
{
  m_reader = std::make_unique<BackupReader>(m_opts.backup);
  m_reader->verify_complete(); // also refuses records outside the header's ranges
  m_header = m_reader->header();
  m_e.path = m_header.path;
  m_e.acted_on = m_header.path;
  m_e.size = m_header.size;
  for (const auto& [off, len] : m_header.ranges) {
    RewriteRange r;
    r.offset = off;
    r.length = len;
    m_ranges.push_back(r);
    m_e.rewritten_bytes += len;
  }
  m_e.ranges = m_ranges;
  if (!m_reader->owned_by_us()) {
    throw Stop{RepairAction::refused, "backup-not-ours",
               escape_name(m_opts.backup) +
                 " is not owned by this user alone (another user could change it while it is "
                 "read): not restored"};
  }
  std::optional<BackupBinding> recorded;
  try {
    recorded = find_backup_binding(m_opts.state_dir, m_reader->sha256());
  } catch (const Error& err) {
    throw Stop{RepairAction::refused, "backup-not-ours",
               std::string("the state directory cannot vouch for the backup: ") + err.what()};
  }
  if (auto why = binding_mismatch(m_header, recorded)) {
    throw Stop{RepairAction::refused, "backup-not-ours",
               escape_name(m_opts.backup) + ": " + *why + "; not restored (--force or not)"};
  }
}

void Undo::open_target()
{
  struct stat dir_st = {};
  sys::Fd ro = open_regular(m_header.path, m_st, &dir_st);
  const btrfs::FsInfo info = btrfs::fs_info(*ro, m_header.path);
  const uint64_t subvol = btrfs::subvolume_id(*ro, m_header.path);
  if (info.fsid != m_header.fsid || subvol != m_header.subvolume) {
    throw Stop{RepairAction::refused, "different-file",
               escape_name(m_header.path) +
                 " is on another filesystem or subvolume than the one the backup was taken of: "
                 "not restored (--force or not)"};
  }
  if (static_cast<uint64_t>(m_st.st_ino) != m_header.inode && !m_opts.force) {
    throw Stop{RepairAction::refused, "different-file",
               escape_name(m_header.path) +
                 " is not the file the backup was taken of (another inode: replaced since, e.g. "
                 "by `set`); --force restores the bytes anyway"};
  }
  // --force takes another inode only as `set` leaves it: one link (more is a hard link someone
  // put at the image's name, to a file they could not write themselves), in a directory no
  // other user may rename in (group or world writable without the sticky bit, or theirs: there
  // it can be any file they moved in, root's own included).
  if (static_cast<uint64_t>(m_st.st_ino) != m_header.inode) {
    const std::string other =
      escape_name(m_header.path) + " is another file than the one the backup was taken of, ";
    if (m_st.st_nlink != 1) {
      throw Stop{RepairAction::refused, "different-file",
                 other + "with " + std::to_string(m_st.st_nlink) +
                   " hard links: not restored (--force or not)"};
    }
    if (sys::others_may_rename(dir_st)) {
      throw Stop{RepairAction::refused, "different-file",
                 other + "in a directory others may rename in (owner uid " +
                   std::to_string(dir_st.st_uid) +
                   ", or group or world writable): not restored (--force or not)"};
    }
  }
  m_fd = reopen(*ro, O_RDWR, m_st, m_header.path);
}

void Undo::check_users()
{
  refuse_if_in_use(*m_fd, scan_proc(m_opts.proc_dir), m_e.users, m_e.locks);
}

void Undo::take_lease()
{
  take_write_lease(m_lease, *m_fd, m_e.notes);
}

void Undo::check_stop() const
{
  if (m_cancel.load()) {
    throw Stop{RepairAction::failed, "interrupted", "interrupted: run the undo again to finish"};
  }
  if (m_lease && m_lease->broken()) {
    throw Stop{RepairAction::failed, "in-use", "another process opened the image during the undo"};
  }
}

// What the undo would write must be what the file holds now, or it would destroy newer data.
// A stretch the backup keeps only the digest of (format 2) must hold the same bytes whatever
// the options: the backup has nothing to put back there.
void Undo::compare()
{
  m_done = 0;
  BackupApplier cmp(
    *m_fd, m_header.path, m_ranges, m_opts.prefer_mirror, m_limiter,
    [&](uint64_t n) { tick("compare", n); }, [&] { check_stop(); });
  std::string difference;
  if (cmp.run(*m_reader, ApplyMode::compare, difference)) {
    m_matched = cmp.matched_stretches();
    return;
  }
  if (cmp.difference_hashed()) {
    refuse_not_in_backup(difference);
  }
  // A record differs (a bad sector). Whether the hashed stretches after it are the same decides
  // first, --force or not: --force overwrites the records' bytes whatever the file holds, and
  // leaves the hashed stretches as they are, so they must still be what they were.
  m_reader->verify_complete(); // rewinds
  BackupApplier hashed(
    *m_fd, m_header.path, m_ranges, m_opts.prefer_mirror, m_limiter, [](uint64_t) {},
    [&] { check_stop(); });
  std::string hashed_difference;
  if (!hashed.run(*m_reader, ApplyMode::compare_hashed, hashed_difference)) {
    refuse_not_in_backup(hashed_difference);
  }
  m_matched = hashed.matched_stretches();
  if (!m_opts.force) {
    // With --prefer-mirror, a bad sector the repair wrote from another copy differs from the
    // copy asked for although nothing changed: said as such, not as other data.
    std::string as_left;
    if (m_opts.prefer_mirror) {
      m_reader->verify_complete(); // rewinds
      BackupApplier written(
        *m_fd, m_header.path, m_ranges, std::nullopt, m_limiter, [](uint64_t) {},
        [&] { check_stop(); });
      if (written.run(*m_reader, ApplyMode::compare, as_left)) {
        throw Stop{RepairAction::refused, "changed",
                   escape_name(m_header.path) + " is as the repair left it, but its bad sectors " +
                     "hold the copy the repair wrote, not copy " +
                     std::to_string(*m_opts.prefer_mirror) + " (" + difference +
                     "); the undo writes only bytes it found in the file: --force writes copy " +
                     std::to_string(*m_opts.prefer_mirror)};
      }
    }
    throw Stop{RepairAction::refused, "changed",
               escape_name(m_header.path) + " changed since the repair (" + difference +
                 "): restoring would overwrite other data; --force restores anyway"};
  }
  m_e.notes.push_back("changed since the repair (" + difference + "); " +
                      (m_opts.dry_run ? "would be restored" : "restored") + " anyway (--force)");
}

void Undo::refuse_not_in_backup(const std::string& difference) const
{
  throw Stop{RepairAction::refused, "not-in-backup",
             escape_name(m_header.path) + " changed since the repair (" + difference +
               "), where the backup keeps only a digest of the bytes the repair left as they "
               "were: it cannot put them back; nothing was written (--force or not)"};
}

void Undo::write()
{
  m_reader->verify_complete(); // rewinds
  m_done = 0;
  BackupApplier applier(
    *m_fd, m_header.path, m_ranges, m_opts.prefer_mirror, m_limiter,
    [&](uint64_t n) { tick("write", n); }, [&] { check_stop(); });
  applier.check_stretches_against(m_matched);
  std::string unused;
  applier.run(*m_reader, ApplyMode::restore, unused);
  if (::fdatasync(*m_fd) < 0) {
    stop_on_errno(errno, "io-error", "fdatasync " + m_header.path);
  }
  m_lease->release();
  m_e.verify = verify_ranges(*m_fd, m_st, m_header.path, m_ranges, applier.digests(), m_header.size,
                             m_limiter, m_e.notes);
  if (!m_e.verify->readable || !m_e.verify->matches) {
    throw Stop{RepairAction::failed, k_code_verify_failed,
               "the restored bytes do not read back as written"};
  }
}

} // namespace

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
    Undo(opts, progress, cancel, e).run();
  } catch (const Stop& s) {
    e.action = s.outcome;
    e.code = s.code;
    e.reason = s.message;
    result.interrupted = s.code == "interrupted";
  } catch (const Error& err) {
    e.action = err.code() == Errc::usage ? RepairAction::refused : RepairAction::failed;
    e.code = err.code() == Errc::usage ? "bad-backup" : "io-error";
    e.reason = err.path() == e.path || err.path() == e.acted_on ? err.detail() : err.what();
  }
  result.files.push_back(std::move(e));
  return result;
}

} // namespace vmcsum::core
