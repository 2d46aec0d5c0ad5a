// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The engine of `vmcsum repair`. Order of work for one image (ImageRepair, one method per
// phase), and why:
//  1. examine: refusals (not btrfs, in use, locked, read-only...) exactly as `set` words them;
//     the image is opened once (below the walk's root for a directory argument, issue 12;
//     read-only, non-blocking) and examined through that descriptor; every later descriptor is
//     reopened from it and checked to be the same inode, and nothing opens its path again;
//  2. find_bad: scrub that descriptor per copy (no kernel pass: reads through btrfs would
//     repair copies before we know what they held), classify. One ScrubSession serves the
//     whole run, and only this scrub reads the whole image: the later ones read only the
//     sectors reread and the ranges rewritten (issue 16);
//  3. read_repair: sectors some copy matches get one read through btrfs, then a second look;
//  4. plan: the damaged extents' file ranges (EXTENT_DATA items), their other references, space
//     (plan_repair(), pure);
//  5. back_up: every copy of each bad sector, and the SHA-256 of every other stretch it will
//     write over (the same bytes go back there: format 2), fsync'ed and renamed into place
//     (".pending"), and bound to this repair in the state directory (backup_binding.hpp) before
//     the first write;
//  6. write: the chosen copy of each bad sector, and each other stretch as btrfs reads it once
//     it matches what the backup phase read (StretchDigest), written back at the same offsets
//     (buffered pwrite: btrfs COWs them into new extents with fresh checksums), fdatasync,
//     mtime kept;
//  7. verify: read back with O_DIRECT (btrfs verifies every checksum) through the same inode,
//     and beside it commit, check the old extents are gone, scrub the ranges per copy again;
//     only then the backup loses ".pending".
// A SIGKILL anywhere leaves every sector old or new (a page is copied whole or not at all) and
// the backup complete; the rerun finds the pending backup and rewrites its ranges again.
#include "repair_internal.hpp"

#include <vmcsum/btrfs/backref.hpp>
#include <vmcsum/btrfs/chunk_map.hpp>
#include <vmcsum/btrfs/file_extents.hpp>
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/btrfs/profile.hpp>
#include <vmcsum/btrfs/tree_search.hpp>
#include <vmcsum/checksum.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/host_context.hpp>
#include <vmcsum/host/kernel_log_reader.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/host/subvol_paths.hpp>
#include <vmcsum/image/file_facts.hpp>
#include <vmcsum/repair/backup_binding.hpp>
#include <vmcsum/repair/repair.hpp>
#include <vmcsum/repair/repair_backup.hpp>
#include <vmcsum/repair/repair_plan.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/scrub/scrub.hpp>
#include <vmcsum/scrub/scrub_state.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>
#include <vmcsum/sys/durable_file.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/lease.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/walk.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <memory>
#include <system_error>

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace vmcsum::core {

using namespace repair_detail;

namespace {

constexpr long k_btrfs_magic = 0x9123683e;
constexpr uint8_t k_extent_item_key = 168;
constexpr uint64_t k_extent_tree = 2;
constexpr uint64_t k_backup_margin = 1u << 20;

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

// Backups of one file (fsid, subvolume, inode) that were left pending by an interrupted run.
struct Pending
{
  std::string path;
  BackupHeader header;
};

// Only backups this host recorded count: a pending file nobody recorded is ignored (noted).
std::vector<Pending> pending_backups(const std::string& dir, const std::string& state_dir,
                                     const std::string& fsid, uint64_t subvol, uint64_t ino,
                                     std::vector<std::string>& notes)
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
      if (h.fsid != fsid || h.subvolume != subvol || h.inode != ino) {
        continue;
      }
      r.verify_complete();
      if (auto why = binding_mismatch(h, find_backup_binding(state_dir, r.sha256()))) {
        notes.push_back("ignored " + escape_name(p) + ": " + *why);
        continue;
      }
      out.push_back({p, h});
    } catch (const Error& e) {
      notes.push_back("ignored " + escape_name(p) + ": " + e.what());
    }
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.path < b.path; });
  return out;
}

// The per-copy scrub repair runs (no kernel pass: a read through btrfs would repair copies
// before we know what they held), on the run's rate limit.
ScrubOptions repair_scrub_options(const RepairOptions& o, RateLimiter& limiter, size_t chunk)
{
  ScrubOptions so;
  so.kernel_pass = false;
  so.kernel_log.clear();
  so.journal = false;
  so.shared_limiter = &limiter;
  so.chunk = chunk;
  so.proc_root = o.proc_dir;
  so.state_dir = o.state_dir;
  so.vm_configs = o.vm_configs;
  return so;
}

HostContext repair_host_context(const RepairOptions& o)
{
  HostContextOptions ho;
  ho.proc_root = o.proc_dir;
  ho.vm_configs = o.vm_configs;
  return gather_host_context(ho);
}

// One image to repair: a file a directory argument's walk found (opened below the walk's root
// descriptor and checked to be the inode the walk saw, never by its path string), or a path
// named on the command line or in --from (resolved once, a symlink there followed once).
struct Target
{
  std::string path;
  std::optional<sys::FileRef> ref;
};

// What one run shares between its images: options, the rate limiter, open devices, the host
// context and one scrub session (filesystem contexts read once, not per scrub: issue 16).
class RepairRun
{
public:
  RepairRun(const RepairOptions& o, const RepairProgressFn& p, const std::atomic<bool>& c)
    : opts(o)
    , progress(p)
    , cancel(c)
    , collector(o.mountinfo)
    , limiter(o.limit_rate)
    , chunk(static_cast<size_t>(limiter.chunk(k_chunk)))
    , host(repair_host_context(o))
    , session(
        repair_scrub_options(o, limiter, chunk), host,
        [this](uint64_t d, uint64_t t, const std::string& path, const char*) {
          m_seen = d;
          report(path, m_phase, d - m_base, t - m_base);
        },
        sys::Cancel{&c, {}})
  {
  }

  void report(const std::string& path, const char* phase, uint64_t done, uint64_t total) const
  {
    if (progress) {
      progress({path, phase, done, total});
    }
  }

  // A per-copy scrub of `fd` (the image as examined), of `ranges` only when given (what was
  // reread or rewritten: issue 16), else of the whole file (`whole` bytes allocated).
  FileScrub scrub_fd(const sys::Fd& fd, const std::string& display,
                     const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t whole,
                     const char* phase)
  {
    uint64_t total = ranges.empty() ? whole : 0;
    for (const auto& r : ranges) {
      total += r.second;
    }
    // The session counts bytes over the run; progress is shown per phase.
    m_phase = phase;
    m_base = m_seen;
    session.set_total(m_base + total);
    FileScrub f = session.scrub_file(fd, display, ranges);
    if (!f.examined && !session.interrupted()) {
      throw Stop{RepairAction::failed, "scrub-failed",
                 "scrub: " + f.error.value_or("cannot examine")};
    }
    return f;
  }

  int device_fd(const std::string& dev)
  {
    auto it = devs.find(dev);
    if (it == devs.end()) {
      // O_DIRECT: the bytes on the medium, not what the block device's page cache holds.
      sys::Fd fd(::open(dev.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
      if (!fd) {
        stop_on_errno(errno, "io-error", "open the device " + dev);
      }
      it = devs.emplace(dev, std::move(fd)).first;
    }
    return *it->second;
  }

  const RepairOptions& opts;
  const RepairProgressFn& progress;
  const std::atomic<bool>& cancel;
  FactCollector collector;
  RateLimiter limiter;
  size_t chunk; // bytes per request: shorter under --limit-rate, so bursts stay short

private:
  // Declared before the session, whose progress callback uses them.
  const char* m_phase = "scrub";
  uint64_t m_seen = 0; // the session's bytes done so far
  uint64_t m_base = 0; // ... when the current phase began

public:
  const HostContext host;
  ScrubSession session;
  std::map<std::string, sys::Fd> devs;
};

// The repair of one image, one method per phase. Members that undo something are declared in
// the order they are taken, so they are released in reverse: the lease before the descriptor.
class ImageRepair
{
public:
  ImageRepair(RepairRun& run, const Target& target, RepairEntry& e)
    : m_run(run)
    , m_opts(run.opts)
    , m_target(target)
    , m_path(target.path)
    , m_e(e)
  {
  }

  void run()
  {
    // The reads through btrfs of this repair (read repair, the backup, the read-back) are one
    // window (begin_reads()), saved on every way out once they began: the kernel log lines
    // those reads cause are then vmcsum's own (caused_by_vmcsum), not alarms that outlive the
    // repair. A dry run reads nothing through btrfs and saves none.
    struct SaveWindow
    {
      ImageRepair& r;
      ~SaveWindow() { r.save_read_window(); }
    } save_window{*this};
    if (!examine() || !find_bad()) {
      return;
    }
    read_repair();
    if (m_rewrite.empty() && m_pending.empty()) {
      m_e.action = m_e.repaired.empty()
                     ? RepairAction::left
                     : (m_opts.dry_run ? RepairAction::would_repair : RepairAction::repaired);
      return;
    }
    plan();
    if (m_opts.dry_run) {
      m_e.ranges = m_plan.ranges;
      m_e.backup_bytes = m_plan.backup_estimate;
      m_e.action = RepairAction::would_repair;
      return;
    }
    back_up();
    write();
    verify();
  }

private:
  bool examine();
  sys::Fd open_examined() const;
  FileScrub scrub(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, const char* phase);
  void check_writable();
  void check_users();
  void check_report_identity(const std::string& key) const;
  void leave_divergent(const FileScrub& s);
  const std::vector<std::pair<uint64_t, uint64_t>>* report_ranges() const;
  bool find_bad();
  void decide(const BadSector& b, const RepairChoice& choice,
              std::vector<const BadSector*>* to_read);
  void read_repair();
  void plan();
  void find_shared();
  void prepare_backup_dir();
  void open_for_writing();
  BackupHeader backup_header() const;
  std::string free_backup_name(uint64_t inode) const;
  void back_up();
  void back_up_range(BackupWriter& bw, const RewriteRange& r, uint64_t& done);
  void read_through_btrfs(uint8_t* buf, uint64_t off, size_t n);
  void back_up_copies(BackupWriter& bw, const SectorToRewrite& s, uint64_t so);
  void write();
  void verify();
  void finish_verified();
  void begin_reads(int fd);
  void save_read_window() noexcept;
  void note_reads_unrecorded(const char* why) noexcept;
  void check_stop() const;
  void skip(const BadSector& b, const SectorDecision& d)
  {
    m_e.skipped.push_back({b.offset, b.length, b.logical, b.cls, d.code, d.reason, b.evidence});
  }

  RepairRun& m_run;
  const RepairOptions& m_opts;
  const Target& m_target;
  const std::string m_path;
  RepairEntry& m_e;
  std::string m_canon;
  FileFacts m_ff;
  std::string m_fsid;
  uint64_t m_subvol = 0;
  uint32_t m_ss = 4096;
  struct stat m_st0 = {};
  sys::Fd m_fd; // the image, as examined (read-only)
  std::vector<Pending> m_pending;
  std::vector<std::pair<uint64_t, uint64_t>> m_only; // --from: the ranges to look at
  FileScrub m_scrub;
  RepairChoice m_choice;
  std::vector<const BadSector*> m_to_read;
  std::optional<ReadWindow> m_window; // the reads through btrfs, once they began
  bool m_read_repaired = false;       // m_to_read was read through btrfs
  std::map<uint64_t, SectorToRewrite> m_rewrite;
  RepairPlan m_plan;
  sys::Fd m_wfd;                     // reopened read-write from m_fd: the same inode
  std::optional<sys::Lease> m_lease; // released before m_wfd closes
  std::string m_backup_path;         // the pending backup
  std::unique_ptr<Digests> m_written;
  StretchDigests m_stretches;         // each hashed stretch as the backup phase read it
  std::unique_ptr<Checksummer> m_sum; // the filesystem's csum, to check device copies again
};

// The image as an O_PATH descriptor (no side effect on a FIFO or device): below the walk's
// root and the very inode the walk listed, or the named path resolved this once (issue 12).
sys::Fd ImageRepair::open_examined() const
{
  sys::Fd fd;
  if (m_target.ref) {
    const sys::FileRef& r = *m_target.ref;
    fd.reset(sys::openat_beneath(r.root->get(), r.relpath, O_PATH | O_NOFOLLOW));
  } else {
    // A named symlink is followed once; another user's on the way is not (sys::open_named).
    sys::NamedPath named = sys::open_named(m_path);
    if (!named.fd && named.error == EPERM) {
      throw Stop{RepairAction::refused, "symlink-refused", named.why};
    }
    fd = std::move(named.fd);
    errno = named.error;
  }
  if (!fd) {
    const int err = errno;
    throw Stop{RepairAction::refused,
               err == ENOENT                  ? "not-found"
               : err == ELOOP || err == EXDEV ? "changed"
                                              : "cannot-examine",
               errno_text(err)};
  }
  struct stat st = {};
  if (m_target.ref &&
      (::fstat(*fd, &st) < 0 || st.st_dev != m_target.ref->dev || st.st_ino != m_target.ref->ino)) {
    throw Stop{RepairAction::refused, "changed",
               "was replaced since its directory was listed: not examined"};
  }
  return fd;
}

bool ImageRepair::examine()
{
  const sys::Fd pfd = open_examined();
  m_ff = m_run.collector.collect_fd(*pfd, m_path);
  m_e.acted_on = m_ff.canonical_path.empty() ? m_path : m_ff.canonical_path;
  m_canon = m_e.acted_on;
  m_e.fsid = m_ff.fsid.value_or("");
  m_e.subvolume_id = m_ff.subvolume_id.value_or(0);
  m_e.inode = m_ff.inode;
  m_e.dev = m_ff.dev;
  if (!m_ff.examined) {
    throw Stop{RepairAction::refused, "cannot-examine", m_ff.error.value_or("cannot examine")};
  }
  if (m_ff.kind != "file") {
    throw Stop{RepairAction::refused, "not-regular",
               "is a " + m_ff.kind + ", not a regular file: only image files are repaired"};
  }
  if (!m_ff.on_btrfs) {
    throw Stop{RepairAction::refused, "not-btrfs",
               "is on " + (m_ff.fs.empty() ? "an unknown filesystem" : m_ff.fs) + ", not btrfs"};
  }
  // Read-only, non-blocking, through the examined descriptor: the inode the facts describe. Every
  // later descriptor is reopened from this one (reopen: same dev/ino) and every scrub reads it.
  struct stat pst = {};
  if (::fstat(*pfd, &pst) < 0) {
    stop_on_errno(errno, "io-error", "fstat " + m_canon);
  }
  m_fd = reopen(*pfd, O_RDONLY | O_NONBLOCK, pst, m_canon);
  struct statfs sf = {};
  if (::fstat(*m_fd, &m_st0) < 0 || static_cast<uint64_t>(m_st0.st_ino) != m_ff.inode ||
      ::fstatfs(*m_fd, &sf) < 0 || sf.f_type != k_btrfs_magic) {
    throw Stop{RepairAction::failed, "changed",
               escape_name(m_canon) + " was replaced while it was examined; run the repair again"};
  }
  m_e.size = static_cast<uint64_t>(m_st0.st_size);
  m_fsid = m_ff.fsid.value_or("");
  m_subvol = m_ff.subvolume_id.value_or(0);
  m_ss = m_ff.sector_size.value_or(4096);
  if (m_ff.inode_flags && (*m_ff.inode_flags & btrfs::inode_flag::nodatasum)) {
    // Nothing is ever written to it (so no check for users): its copies are compared, as
    // scrub does (with --from: the ranges the document lists), so that copies that differ are
    // reported here too, not called clean.
    m_e.notes.push_back("NODATASUM: it has no data checksums, so no checksum can mismatch");
    if (!m_opts.from_report) {
      leave_divergent(scrub({}, "scrub"));
    } else if (const auto* listed = report_ranges(); listed && !listed->empty()) {
      leave_divergent(scrub(*listed, "scrub"));
    }
    m_e.action = m_e.skipped.empty() ? RepairAction::clean : RepairAction::left;
    return false;
  }
  check_writable();
  check_users();
  return true;
}

// The per-copy scrub of the image's open descriptor (the read-only one until the writes, then the
// read-write one): never of a path. A stop asked for meanwhile ends the repair here.
FileScrub ImageRepair::scrub(const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
                             const char* phase)
{
  const sys::Fd& fd = m_fd ? m_fd : m_wfd;
  FileScrub f =
    m_run.scrub_fd(fd, m_canon, ranges, static_cast<uint64_t>(m_st0.st_blocks) * 512, phase);
  check_stop();
  return f;
}

void ImageRepair::check_writable()
{
  const uint32_t attr = m_ff.attr_flags.value_or(0);
  if (attr & (FS_IMMUTABLE_FL | FS_APPEND_FL)) {
    const Refusal r = refuse_immutable(attr, m_canon);
    throw Stop{RepairAction::refused, r.code, r.message};
  }
  // A read-only mount, or a read-only subvolume (a snapshot), which statvfs calls read-write.
  if (auto r = read_only_refusal(*m_fd)) {
    throw Stop{RepairAction::refused, r->code, r->message};
  }
  const std::string self = "/proc/self/fd/" + std::to_string(*m_fd);
  if (::access(self.c_str(), W_OK) < 0 && (errno == EACCES || errno == EPERM)) {
    throw Stop{RepairAction::refused, "needs-root",
               "cannot be written by this user: " + errno_text(errno)};
  }
}

void ImageRepair::check_users()
{
  // Through the examined descriptor (its OFD locks are asked through it too), with a /proc scan
  // of now: the run's host context may be minutes old by the time this image is reached.
  refuse_if_in_use(*m_fd, scan_proc(m_opts.proc_dir), m_e.users, m_e.locks);
}

// --from: the document names a file by path, but the sectors it lists belong to the file it
// scrubbed; a file replaced since (a copy renamed over it, another filesystem mounted there)
// is refused rather than "repaired" with another file's offsets.
void ImageRepair::check_report_identity(const std::string& key) const
{
  const auto id = m_opts.from_identity.find(key);
  if (id == m_opts.from_identity.end()) {
    return; // an older document without identity
  }
  const ReportIdentity& was = id->second;
  const auto ino = static_cast<uint64_t>(m_st0.st_ino);
  if (was.fsid == m_fsid && (was.subvolume_id == 0 || was.subvolume_id == m_subvol) &&
      was.inode == ino) {
    return;
  }
  throw Stop{RepairAction::refused, "identity-changed",
             "not the file the scrub document describes (it was inode " +
               std::to_string(was.inode) + " of subvolume " + std::to_string(was.subvolume_id) +
               " on " + was.fsid + "; this is inode " + std::to_string(ino) + " of subvolume " +
               std::to_string(m_subvol) + " on " + m_fsid + "): scrub it again"};
}

// NODATASUM ranges whose copies differ (scrub: critical): no checksum says which copy is
// right, so they are left, listed with their evidence, never called clean.
void ImageRepair::leave_divergent(const FileScrub& s)
{
  for (const auto& d : s.divergent) {
    // Its evidence (copies-differ) names the mirrors that agree.
    m_e.skipped.push_back(
      {d.offset, d.length, d.logical, d.cls, "divergent",
       "NODATASUM data whose copies differ: without a checksum nothing tells which copy is "
       "right, so none is written over the others, and btrfs returns either one to a read; "
       "restore the range from a backup or from inside the guest",
       d.evidence});
  }
}

// The ranges the scrub report (--from) lists for this image, its identity checked; null when
// it does not list the image.
const std::vector<std::pair<uint64_t, uint64_t>>* ImageRepair::report_ranges() const
{
  auto it = m_opts.from_report->find(m_path);
  if (it == m_opts.from_report->end()) {
    it = m_opts.from_report->find(m_canon);
  }
  if (it == m_opts.from_report->end()) {
    return nullptr;
  }
  check_report_identity(it->first);
  return &it->second;
}

// 2. What is bad, per copy. False when there is nothing to do.
bool ImageRepair::find_bad()
{
  for (const auto& t : remove_stale_backup_temps(m_opts.backup_dir)) {
    m_e.notes.push_back("removed " + escape_name(t) + ", the unfinished backup of a killed run");
  }
  m_pending = pending_backups(m_opts.backup_dir, m_opts.state_dir, m_fsid, m_subvol,
                              static_cast<uint64_t>(m_st0.st_ino), m_e.notes);
  if (m_opts.from_report) {
    const auto* listed = report_ranges();
    if ((!listed || listed->empty()) && m_pending.empty()) {
      m_e.action = RepairAction::clean;
      m_e.notes.push_back("the scrub report lists no bad sector for it");
      return false;
    }
    if (listed) {
      m_only = *listed;
    }
    for (const auto& p : m_pending) {
      m_only.insert(m_only.end(), p.header.ranges.begin(), p.header.ranges.end());
    }
  }
  m_scrub = scrub(m_only, "scrub");
  m_e.checked_bytes = m_scrub.checked_bytes;
  m_e.bad_sectors = m_scrub.bad.size();
  if (m_opts.from_report && !m_only.empty()) {
    // In the imperative like the other steps (a dry run prefixes them with "would").
    m_e.steps.push_back("re-verify the " + std::to_string(m_only.size()) +
                        " range(s) of the scrub report (" + std::to_string(m_scrub.bad.size()) +
                        " bad sector(s) in them now)");
  }
  leave_divergent(m_scrub);
  if (m_scrub.bad.empty() && m_pending.empty()) {
    m_e.action = m_e.skipped.empty() ? RepairAction::clean : RepairAction::left;
    return false;
  }
  m_choice.prefer_mirror = m_opts.prefer_mirror;
  m_choice.include_undetermined = m_opts.include_undetermined;
  m_choice.mount_point = m_ff.mount_point;
  for (const auto& b : m_scrub.bad) {
    decide(b, m_choice, &m_to_read);
  }
  if (m_opts.prefer_mirror) {
    for (const auto& [off, r] : m_rewrite) {
      if (r.mirror && *r.mirror != *m_opts.prefer_mirror) {
        m_e.notes.push_back("copy " + std::to_string(*m_opts.prefer_mirror) + " of offset " +
                            std::to_string(off) + " was not readable: wrote copy " +
                            std::to_string(*r.mirror) + " instead");
      }
    }
  }
  return true;
}

void ImageRepair::decide(const BadSector& b, const RepairChoice& choice,
                         std::vector<const BadSector*>* to_read)
{
  SectorDecision d = decide_sector(b, choice);
  if (d.action == SectorAction::read && to_read) {
    to_read->push_back(&b);
  } else if (d.action == SectorAction::rewrite) {
    m_rewrite[b.offset] = {b, d.mirror};
  } else {
    skip(b, d);
  }
}

// 3. A copy still matches: a read through btrfs lets it repair the others.
void ImageRepair::read_repair()
{
  if (m_to_read.empty()) {
    return;
  }
  m_e.steps.push_back("read " + std::to_string(m_to_read.size()) +
                      " sector(s) that a copy still matches through btrfs (read repair)");
  auto healed = [&](const BadSector* b) {
    m_e.repaired.push_back({b->offset, b->length, b->logical, b->cls, "read-repair", std::nullopt,
                            b->copies_identical, b->evidence});
  };
  if (m_opts.dry_run) {
    std::for_each(m_to_read.begin(), m_to_read.end(), healed);
    return;
  }
  {
    sys::Fd rfd = reopen(*m_fd, O_RDONLY | O_DIRECT, m_st0, m_canon);
    begin_reads(*rfd);
    m_read_repaired = true;
    sys::AlignedBuffer sector = sys::aligned_buffer(64 * 1024);
    for (size_t i = 0; i < m_to_read.size(); ++i) {
      const BadSector* b = m_to_read[i];
      m_run.report(m_canon, "read", i, m_to_read.size());
      // Its result does not matter: the second look below is the judge.
      [[maybe_unused]] ssize_t n =
        ::pread(*rfd, sector.get(), b->length, static_cast<off_t>(b->offset));
      m_run.limiter.consumed(b->length);
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> again;
  for (const auto* b : m_to_read) {
    again.emplace_back(b->offset, b->length);
  }
  FileScrub now = scrub(again, "recheck");
  std::map<uint64_t, const BadSector*> still;
  for (const auto& b : now.bad) {
    still[b.offset] = &b;
  }
  RepairChoice after = m_choice;
  after.after_read = true;
  for (const auto* b : m_to_read) {
    auto it = still.find(b->offset);
    if (it == still.end()) {
      healed(b);
      continue;
    }
    BadSector nb = *it->second;
    nb.cls = b->cls; // the classification of the whole file's pattern, not of a lone sector
    nb.evidence = b->evidence;
    SectorDecision d = decide_sector(nb, after);
    if (d.action == SectorAction::rewrite) {
      m_rewrite[nb.offset] = {nb, std::nullopt};
    } else {
      skip(nb, d);
    }
  }
}

// 4. The damaged extents and every file range that references them; space.
void ImageRepair::plan()
{
  btrfs::sync_fs(*m_fd, m_canon);
  RepairPlanInput in;
  in.rewrite = m_rewrite;
  in.extents = btrfs::file_extents(*m_fd, static_cast<uint64_t>(m_st0.st_ino), m_canon);
  for (const auto& p : m_pending) {
    in.resumed.insert(in.resumed.end(), p.header.ranges.begin(), p.header.ranges.end());
  }
  in.size = static_cast<uint64_t>(m_st0.st_size);
  in.sectorsize = m_ss;
  in.chunk = m_run.chunk;
  in.free_bytes = sys::free_bytes(*m_fd);
  m_plan = plan_repair(in);
  if (m_plan.refusal) {
    throw Stop{m_plan.refusal->action, m_plan.refusal->code,
               m_plan.refusal->code == "changed" ? m_canon + ": " + m_plan.refusal->message
                                                 : m_plan.refusal->message};
  }
  find_shared();
  m_e.rewritten_bytes = m_plan.rewrite_bytes;
  m_e.steps.push_back("back up " + human_bytes(m_plan.backup_estimate) +
                      " (every copy of each bad sector, the SHA-256 of every other stretch "
                      "rewritten) to " +
                      escape_name(m_opts.backup_dir) + ", fsync'ed, before the first write");
  m_e.steps.push_back("rewrite " + std::to_string(m_plan.ranges.size()) + " file range(s), " +
                      human_bytes(m_plan.rewrite_bytes) + ", that reference " +
                      std::to_string(m_plan.damaged.size()) +
                      " damaged extent(s): good sectors as btrfs reads them, " +
                      std::to_string(m_plan.device_sectors) +
                      " bad sector(s) from the chosen device copy");
  m_e.steps.push_back("fdatasync; then read the ranges back with O_DIRECT and compare, beside "
                      "(one after the other under --limit-rate) a commit, a check that the old "
                      "extents are freed and a scrub of the ranges per copy again");
  for (const auto& [off, r] : m_rewrite) {
    m_e.repaired.push_back({off, r.sector.length, r.sector.logical, r.sector.cls, "rewritten",
                            r.mirror, r.sector.copies_identical, r.sector.evidence});
  }
}

// Other references to a damaged extent (snapshots, reflinks) keep it, and its bad sectors.
void ImageRepair::find_shared()
{
  std::optional<std::vector<MountedSubvol>> mounts;
  for (uint64_t bytenr : m_plan.damaged) {
    std::vector<SharedRef> refs;
    for (const auto& r : btrfs::extent_refs(*m_fd, bytenr, m_canon)) {
      if (r.root == m_subvol && r.inode == static_cast<uint64_t>(m_st0.st_ino)) {
        continue;
      }
      SharedRef s{r.root, r.inode, r.offset, std::nullopt};
      if (!mounts) {
        mounts = btrfs_mounts(m_opts.mountinfo);
      }
      s.path = inode_path(*mounts, r.root, r.inode,
                          [&](const MountedSubvol& m) { return m.fsid == m_fsid; });
      refs.push_back(s);
    }
    if (refs.empty()) {
      continue;
    }
    for (auto& rr : m_plan.ranges) {
      if (rr.extent_bytenr == bytenr) {
        rr.shared_with = refs;
      }
    }
    m_e.notes.push_back("the damaged extent at logical " + std::to_string(bytenr) +
                        " is also referenced by " + std::to_string(refs.size()) +
                        " other file range(s) (snapshots or reflinks): they keep the old extent, "
                        "and its bad sectors, until they are rewritten or deleted");
  }
}

// Backups are read back as root by --undo: their directory is root's alone (issue 12 #2).
void ImageRepair::prepare_backup_dir()
{
  if (m_opts.state_dir.empty()) {
    throw Stop{RepairAction::refused, "no-state-dir",
               "no state directory to record the backup in: --undo could not restore it"};
  }
  try {
    sys::ensure_private_dir(m_opts.backup_dir);
  } catch (const Error& err) {
    throw Stop{RepairAction::refused, "backup-dir", err.what()};
  }
  sys::Fd bd(::open(m_opts.backup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!bd) {
    stop_on_errno(errno, "backup-dir", "open the backup directory " + m_opts.backup_dir);
  }
  const uint64_t backup_free = sys::free_bytes(*bd).value_or(~0ULL);
  if (backup_free < m_plan.backup_estimate + k_backup_margin) {
    throw Stop{RepairAction::refused, "no-space",
               "the backup needs " + human_bytes(m_plan.backup_estimate + k_backup_margin) +
                 " in " + escape_name(m_opts.backup_dir) + ", which has " +
                 human_bytes(backup_free) + "; use --backup-dir elsewhere. Nothing was changed"};
  }
  struct statfs bsf = {};
  if (::fstatfs(*bd, &bsf) == 0 && bsf.f_type == k_btrfs_magic) {
    try {
      if (btrfs::fs_info(*bd, m_opts.backup_dir).fsid == m_fsid) {
        m_e.notes.push_back("the backup is on the image's own filesystem; --backup-dir on "
                            "another filesystem keeps it safe from that filesystem's faults");
      }
    } catch (const Error&) {
      // unknown: say nothing
    }
  }
}

// The image reopened read-write from the descriptor examined, unchanged since the scrub, under a
// write lease (which needs every other descriptor of it closed: the read-only one goes).
void ImageRepair::open_for_writing()
{
  m_wfd = reopen(*m_fd, O_RDWR, m_st0, m_canon);
  m_fd.reset();
  // No readahead: read_through_btrfs() reads around the sectors no copy matches, and the
  // kernel's readahead would read them anyway (mm/readahead.c reads past the request), failing
  // their csums on every mirror: kernel log lines and device-stats corruption errors made by
  // the repair itself (seen on raid1: "csum failed ... mirror 1", "... mirror 2").
  (void)::posix_fadvise(*m_wfd, 0, 0, POSIX_FADV_RANDOM);
  struct stat st1 = {};
  if (::fstat(*m_wfd, &st1) < 0) {
    stop_on_errno(errno, "io-error", "fstat " + m_canon);
  }
  if (st1.st_size != m_st0.st_size || st1.st_mtim.tv_sec != m_st0.st_mtim.tv_sec ||
      st1.st_mtim.tv_nsec != m_st0.st_mtim.tv_nsec) {
    throw Stop{RepairAction::failed, "changed",
               m_canon + " changed since it was scrubbed; run the repair again"};
  }
  take_write_lease(m_lease, *m_wfd, m_e.notes);
}

void ImageRepair::check_stop() const
{
  if (m_run.cancel.load()) {
    throw Stop{RepairAction::failed, "interrupted",
               "interrupted: every sector holds its old or its new bytes; the backup " +
                 (m_backup_path.empty() ? std::string("was not written")
                                        : escape_name(m_backup_path) + " is complete") +
                 "; run the repair again to finish"};
  }
  if (m_lease && m_lease->broken()) {
    throw Stop{RepairAction::failed, "in-use",
               "another process opened the image during the repair: stopped (every sector "
               "holds its old or new bytes; run the repair again once it is closed)"};
  }
}

BackupHeader ImageRepair::backup_header() const
{
  BackupHeader h;
  h.path = m_canon;
  h.fsid = m_fsid;
  h.subvolume = m_subvol;
  h.inode = static_cast<uint64_t>(m_st0.st_ino);
  h.size = static_cast<uint64_t>(m_st0.st_size);
  h.mtime_sec = m_st0.st_mtim.tv_sec;
  h.mtime_nsec = m_st0.st_mtim.tv_nsec;
  h.sectorsize = m_ss;
  h.created = utc_iso();
  for (const auto& r : m_plan.ranges) {
    h.ranges.emplace_back(r.offset, r.length);
  }
  return h;
}

// A backup name nothing in the backup directory has, pending or final: two images can share
// the base name, the inode number (one per subvolume) and the second; the later one gets "-2"
// and on after the time (the commit never replaces a file either way).
std::string ImageRepair::free_backup_name(uint64_t inode) const
{
  const std::string base = sys::base_name(m_canon), stamp = utc_stamp();
  auto taken = [&](const std::string& n) {
    struct stat st = {};
    const std::string p = m_opts.backup_dir + "/" + n;
    return ::lstat(p.c_str(), &st) == 0 || ::lstat((p + k_pending_suffix).c_str(), &st) == 0;
  };
  std::string name = backup_file_name(base, inode, stamp);
  for (unsigned k = 2; taken(name) && k < 1000; ++k) {
    name = backup_file_name(base, inode, stamp + "-" + std::to_string(k));
  }
  return name;
}

// 5. The backup, committed as pending and recorded in the state directory before any write.
void ImageRepair::back_up()
{
  prepare_backup_dir();
  open_for_writing();
  begin_reads(*m_wfd); // read_through_btrfs(), then the read-back
  BackupHeader h = backup_header();
  const uint16_t csum_type = btrfs::fs_info(*m_wfd, m_canon).csum_type;
  h.csum_type = btrfs::csum_type_name(csum_type);
  m_sum = std::make_unique<Checksummer>(csum_type);
  const std::string name = free_backup_name(h.inode);
  BackupWriter bw(m_opts.backup_dir, h);
  uint64_t done = 0;
  for (const auto& r : m_plan.ranges) {
    back_up_range(bw, r, done);
  }
  // Recorded before it appears under its name: a kill in between leaves a temp file (removed as
  // stale by the next run) and a record nothing matches, never an unrecorded pending backup.
  m_backup_path = bw.commit(name + k_pending_suffix, [&](const std::string& sha) {
    try {
      record_backup_binding(m_opts.state_dir,
                            binding_of(h, sha, static_cast<uint64_t>(m_st0.st_dev)));
    } catch (const Error& err) {
      throw Stop{RepairAction::refused, "backup-dir",
                 std::string("cannot record the backup in the state directory: ") + err.what() +
                   "; nothing was changed"};
    }
  });
  m_e.backup_bytes = bw.bytes();
  m_e.backup = m_backup_path.substr(0, m_backup_path.size() - std::strlen(k_pending_suffix));
}

// One range: the digest of the bytes as btrfs reads them (format 2: the write phase writes those
// very bytes back, so a digest is all undo needs of them), one stretch per read chunk between
// the bad sectors to rewrite from a device copy, for which every copy is saved (the chosen one
// flagged) and the chosen one is what the write phase puts there.
void ImageRepair::back_up_range(BackupWriter& bw, const RewriteRange& r, uint64_t& done)
{
  static_assert(k_chunk <= k_max_hashed, "a stretch between bad sectors is one hashed record");
  sys::AlignedBuffer buf = sys::aligned_buffer(k_chunk);
  const uint64_t end = r.offset + r.length;
  for (uint64_t off = r.offset; off < end;) {
    check_stop();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(m_run.chunk, end - off));
    const uint64_t n_sectors = (n + m_ss - 1) / m_ss;
    read_through_btrfs(buf.get(), off, n);
    m_run.limiter.consumed(n);
    auto add_hashed = [&](uint64_t at, uint64_t len) {
      const uint8_t* p = buf.get() + (at - off);
      const auto length = static_cast<uint32_t>(len);
      m_stretches[at] = {length, stretch_xxh3(p, length), bw.add_hashed(at, p, length)};
    };
    uint64_t run_start = off;
    for (uint64_t s = 0; s < n_sectors; ++s) {
      const uint64_t so = off + s * m_ss;
      auto it = m_rewrite.find(so);
      if (it == m_rewrite.end() || !it->second.mirror) {
        continue;
      }
      if (so > run_start) {
        add_hashed(run_start, so - run_start);
      }
      back_up_copies(bw, it->second, so);
      run_start = so + m_ss;
    }
    if (off + n > run_start) {
      add_hashed(run_start, off + n - run_start);
    }
    off += n;
    done += n;
    m_run.report(m_canon, "backup", done, m_plan.rewrite_bytes);
  }
}

// [off, off + n) as btrfs reads it, into `buf`, except the sectors rewritten from a device copy
// (they read as EIO; back_up_copies saves their device copies): one read per stretch between them,
// so a bad sector does not cost its chunk a read per sector. Sector by sector only when a stretch
// fails, to name the sector.
void ImageRepair::read_through_btrfs(uint8_t* buf, uint64_t off, size_t n)
{
  const uint64_t end = off + n;
  for (uint64_t a = off; a < end;) {
    auto it = m_rewrite.lower_bound(a);
    while (it != m_rewrite.end() && it->first < end && !it->second.mirror) {
      ++it;
    }
    const uint64_t b = it == m_rewrite.end() ? end : std::min(end, it->first);
    if (b > a && !pread_full(*m_wfd, buf + (a - off), static_cast<size_t>(b - a), a, m_canon)) {
      for (uint64_t so = a; so < b; so += m_ss) {
        const size_t len = static_cast<size_t>(std::min<uint64_t>(m_ss, b - so));
        if (!pread_full(*m_wfd, buf + (so - off), len, so, m_canon)) {
          throw Stop{RepairAction::failed, "io-error",
                     "offset " + std::to_string(so) +
                       " reads as EIO but the scrub did not list it as a bad sector no copy "
                       "matches; nothing was written. Run `vmcsum scrub` on it"};
        }
      }
    }
    a = std::min(end, b + m_ss);
  }
}

void ImageRepair::back_up_copies(BackupWriter& bw, const SectorToRewrite& s, uint64_t so)
{
  sys::AlignedBuffer copy = sys::aligned_buffer(64 * 1024);
  const BadSector& b = s.sector;
  const unsigned chosen = *s.mirror;
  const auto expected = from_hex(b.expected_csum);
  bool wrote_chosen = false;
  for (const auto& c : b.copies) {
    // RAID5/6 rebuilds are computed, not stored: c.physical is their parity unit's.
    if (c.read_error || !c.rebuilt.empty()) {
      continue;
    }
    const int dfd = m_run.device_fd(c.device);
    const bool ok =
      sys::pread_full(dfd, copy.get(), m_ss, c.physical) == static_cast<ssize_t>(m_ss);
    m_run.limiter.consumed(m_ss);
    if (!ok) {
      if (c.mirror == chosen) {
        throw Stop{RepairAction::failed, "io-error",
                   "copy " + std::to_string(c.mirror) + " of offset " + std::to_string(so) +
                     " on " + c.device + " cannot be read any more; nothing was written"};
      }
      continue;
    }
    if (to_hex(m_sum->compute({copy.get(), m_ss})) != c.csum) {
      throw Stop{RepairAction::failed, "changed",
                 "copy " + std::to_string(c.mirror) + " of offset " + std::to_string(so) +
                   " changed since the scrub; nothing was written. Run the repair again"};
    }
    const bool is_chosen = c.mirror == chosen;
    bw.add(so, b.logical, c.mirror, is_chosen ? BackupRecord::k_chosen : 0, expected, copy.get(),
           m_ss);
    wrote_chosen = wrote_chosen || is_chosen;
  }
  if (!wrote_chosen) {
    throw Stop{RepairAction::failed, "io-error",
               "no copy of offset " + std::to_string(so) + " to write"};
  }
}

// 6. The chosen copy of each bad sector, and every other stretch of the ranges as it reads now
// (checked against what the backup phase read of it, StretchDigest), written back at their
// offsets.
void ImageRepair::write()
{
  BackupReader reader(m_backup_path);
  uint64_t written = 0;
  BackupApplier applier(
    *m_wfd, m_canon, m_plan.ranges, std::nullopt, m_run.limiter,
    [&](uint64_t n) {
      written += n;
      m_run.report(m_canon, "write", written, m_plan.rewrite_bytes);
    },
    [&] { check_stop(); });
  applier.check_stretches_against(m_stretches);
  std::string unused;
  applier.run(reader, ApplyMode::rewrite, unused);
  m_written = std::make_unique<Digests>(applier.take_digests());
  if (::fdatasync(*m_wfd) < 0) {
    stop_on_errno(errno, "io-error", "fdatasync " + m_canon);
  }
  // The data is what it was (the bad sectors now readable): keep the timestamps.
  const struct timespec times[2] = {m_st0.st_atim, m_st0.st_mtim};
  ::futimens(*m_wfd, times);
  ::fsync(*m_wfd);
  m_lease->release();
  if (m_run.cancel.load()) {
    throw Stop{RepairAction::failed, "interrupted",
               "interrupted after every range was written, before the verification; the backup " +
                 escape_name(m_backup_path) + " stays pending: run the repair again to verify"};
  }
}

// 7. Read back through the same inode, commit, old extents freed, a per-copy scrub of the ranges.
void ImageRepair::verify()
{
  m_run.report(m_canon, "verify", 0, m_plan.rewrite_bytes);
  // The read-back runs beside the commit and the check scrub (issue 16: of the 0.45 s after the
  // scrub of a repair of four damaged 16 MiB extents on dup, this saves about 40 ms here); they
  // share the device and read-only state. Not under --limit-rate, whose accounting is one
  // thread's, nor when no thread can be started. A read through btrfs repairs a copy it finds
  // bad: a copy written bad (a device that failed the write) is found by the scrub if the scrub
  // reads it first (verify-failed: the backup stays pending, a rerun rewrites the range), else
  // repaired by the read-back and logged by the kernel (verified, as in the order read-back,
  // scrub, which this replaces). Either way no copy is bad when the verdict is verified.
  std::vector<std::string> readback_notes;
  const std::vector<RewriteRange> ranges = m_plan.ranges; // the loop below sets their `freed`
  auto read_back = [&] {
    return verify_ranges(*m_wfd, m_st0, m_canon, ranges, *m_written,
                         static_cast<uint64_t>(m_st0.st_size), m_run.limiter, readback_notes);
  };
  std::future<RepairVerify> beside;
  if (m_run.limiter.rate() == 0) {
    try {
      beside = std::async(std::launch::async, read_back);
    } catch (const std::system_error&) {
      // No thread (pids.max, RLIMIT_NPROC): the same work, one after the other.
    }
  }
  if (!beside.valid()) {
    m_e.verify = read_back();
  }
  btrfs::sync_fs(*m_wfd, m_canon);
  for (auto& rr : m_plan.ranges) {
    if (rr.extent_bytenr && m_plan.damaged.count(rr.extent_bytenr)) {
      rr.freed = !extent_exists(*m_wfd, rr.extent_bytenr, m_canon);
    }
  }
  // Only the rewritten ranges, every copy (issue 16: the rest was verified by the first scrub),
  // through the descriptor written: the same inode, whatever is at its path now.
  std::vector<std::pair<uint64_t, uint64_t>> written_ranges;
  for (const auto& r : m_plan.ranges) {
    written_ranges.emplace_back(r.offset, r.length);
  }
  m_lease.reset();
  FileScrub after = scrub(written_ranges, "check");
  if (beside.valid()) {
    m_e.verify = beside.get();
  }
  m_e.notes.insert(m_e.notes.end(), readback_notes.begin(), readback_notes.end());
  m_wfd.reset();
  m_e.verify->bad_after = after.bad.size();
  m_e.ranges = m_plan.ranges;
  for (const auto& rr : m_plan.ranges) {
    if (rr.freed == false && rr.shared_with.empty()) {
      m_e.notes.push_back("the old extent at logical " + std::to_string(rr.extent_bytenr) +
                          " is still allocated after the commit");
    }
  }
  if (!m_e.verify->readable || !m_e.verify->matches || !after.bad.empty()) {
    m_e.action = RepairAction::failed;
    m_e.code = k_code_verify_failed;
    m_e.reason = !m_e.verify->readable ? "the rewritten ranges do not read back without errors"
                 : !m_e.verify->matches
                   ? "the rewritten ranges read back differently from what was written"
                   : std::to_string(after.bad.size()) +
                       " sector(s) of the rewritten ranges still fail their checksum on some copy";
    m_e.reason += "; the backup " + escape_name(m_backup_path) +
                  " keeps every copy of the bad sectors (the other bytes were written back as they "
                  "read) and stays pending: a rerun rewrites the ranges again";
    m_e.backup = m_backup_path;
    return;
  }
  finish_verified();
}

void ImageRepair::finish_verified()
{
  m_e.backup = finalize_backup(m_backup_path);
  for (const auto& p : m_pending) {
    const std::string fin = finalize_backup(p.path);
    m_e.notes.push_back("finished the interrupted repair of " + escape_name(fin));
  }
  // Verified: audit weighs the kernel log's older checksum events of this image against it.
  if (!m_fsid.empty()) {
    try {
      if (auto note =
            record_repair(m_opts.state_dir, m_fsid, m_subvol, static_cast<uint64_t>(m_st0.st_ino),
                          m_canon, realtime_now_us())) {
        m_e.notes.push_back(std::move(*note));
      }
    } catch (const Error& err) {
      m_e.notes.push_back(std::string("the repair was not recorded in the state directory: ") +
                          err.what());
    }
  }
  m_e.action = RepairAction::repaired;
  journal_record("repaired", m_e);
}

// The read window of this repair: the file ranges it may have read through btrfs (the sectors
// read for read repair, the rewritten ranges read for the backup and read back), from its
// first such read until now. Saving it never fails the repair: a note says why it was not.
void ImageRepair::save_read_window() noexcept
{
  if (!m_window || m_fsid.empty() || m_opts.state_dir.empty()) {
    return;
  }
  try {
    close_read_window(*m_window);
    if (m_read_repaired) {
      for (const auto* b : m_to_read) {
        m_window->ranges.emplace_back(b->offset, b->length);
      }
    }
    // The rewritten ranges (the backup reads them, the read-back too) but for the sectors taken
    // from a device copy, which read_through_btrfs() never reads: a reader hitting those
    // during the repair is not vmcsum.
    std::vector<std::pair<uint64_t, uint64_t>> spans, from_copy;
    for (const auto& r : m_plan.ranges) {
      spans.emplace_back(r.offset, r.length);
    }
    for (const auto& [off, s] : m_rewrite) {
      if (s.mirror) {
        from_copy.emplace_back(off, m_ss);
      }
    }
    for (const auto& r : subtract_ranges(spans, from_copy)) {
      m_window->ranges.push_back(r);
    }
    if (!m_window->ranges.empty()) {
      if (auto note = record_read_windows(m_opts.state_dir, m_fsid, {*m_window})) {
        m_e.notes.push_back(std::move(*note));
      }
    }
  } catch (const std::exception& e) {
    note_reads_unrecorded(e.what());
  }
  m_window.reset();
}

// Why the repair's reads through btrfs are in no read window: their kernel log lines will look
// like the disk's to scrub --history and audit.
void ImageRepair::note_reads_unrecorded(const char* why) noexcept
{
  try {
    m_e.notes.push_back(std::string("the repair's reads through btrfs are not recorded in the "
                                    "state directory (kernel log lines they cause will look like "
                                    "the disk's): ") +
                        why);
  } catch (...) { // out of memory: nothing more to say
  }
}

// The first read through btrfs of this repair (through `fd`): its window begins, naming the
// filesystem's devices as the kernel log names them, so that only this filesystem's lines
// match it. Without the device list no window is kept: one matching any device would explain
// other filesystems' lines of the same subvolume and inode numbers.
void ImageRepair::begin_reads(int fd)
{
  if (m_window || m_opts.dry_run || m_fsid.empty() || m_opts.state_dir.empty()) {
    return;
  }
  std::vector<std::string> devices;
  try {
    for (const auto& [id, path] : btrfs::device_paths(fd, m_canon)) {
      (void)id;
      devices.push_back(path);
    }
  } catch (const Error& e) {
    note_reads_unrecorded(e.what());
    return;
  }
  if (!devices.empty()) {
    m_window = open_read_window(m_fsid, devices, m_subvol, static_cast<uint64_t>(m_st0.st_ino));
  }
}

// A directory stands for the regular files below it, each kept as a FileRef (opened later below
// the walk's root, never by its path; a symlink named as `path` is followed once, none below it).
// Anything else is a target by its path (open_regular_at follows a symlink there once too).
void expand(const std::string& path, std::vector<Target>& out, RepairResult& result)
{
  struct stat st = {};
  if (::stat(path.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
    out.push_back({path, std::nullopt});
    return;
  }
  std::vector<Target> found;
  sys::walk_named(
    path,
    [&](sys::WalkEntry& w) {
      unsigned char t = w.d_type();
      if (t == DT_UNKNOWN) {
        const struct stat* ls = w.lstat();
        t = ls && S_ISREG(ls->st_mode) ? DT_REG : DT_UNKNOWN;
      }
      if (t != DT_REG) {
        return;
      }
      try {
        found.push_back({w.path(), w.ref()});
      } catch (const Error& err) {
        result.notes.push_back(escape_name(w.path()) + ": " + err.detail());
      }
    },
    [&](const std::string& p, const std::string& why) {
      result.notes.push_back(escape_name(p) + ": " + why);
    });
  std::sort(found.begin(), found.end(),
            [](const Target& a, const Target& b) { return a.path < b.path; });
  if (found.empty()) {
    result.notes.push_back(escape_name(path) + ": no regular file below it");
  }
  out.insert(out.end(), std::make_move_iterator(found.begin()),
             std::make_move_iterator(found.end()));
}

// One image: its entry, whatever happens (refusals and failures end up in it).
RepairEntry repair_one(RepairRun& run, const Target& t, RepairResult& result)
{
  RepairEntry e;
  e.path = t.path;
  e.acted_on = t.path;
  if (run.cancel.load()) {
    e.code = "interrupted";
    e.reason = "interrupted before it was reached";
    result.interrupted = true;
    return e;
  }
  try {
    ImageRepair(run, t, e).run();
  } catch (const Stop& s) {
    e.action = s.outcome;
    e.code = s.code;
    e.reason = s.message;
    result.interrupted = result.interrupted || s.code == "interrupted";
  } catch (const Error& err) {
    e.action = RepairAction::failed;
    e.code = err.code() == Errc::permission ? "needs-root" : "io-error";
    e.reason = err.path() == e.path || err.path() == e.acted_on ? err.detail() : err.what();
  }
  return e;
}

// --then-nocow for one repaired image.
NocowOutcome then_nocow(const RepairOptions& opts, const RepairEntry& e,
                        const RepairProgressFn& progress, const std::atomic<bool>& cancel)
{
  if (e.action != RepairAction::repaired && e.action != RepairAction::clean) {
    return {"skipped", "not-repaired", "the repair did not finish"};
  }
  if (!e.skipped.empty()) {
    return {"skipped", "not-repaired",
            "bad sectors remain (see skipped): converting now would fail to read them"};
  }
  FactCollector fc(opts.mountinfo);
  FileFacts ff = fc.collect_named(e.acted_on, false);
  std::string why_not;
  if (!nocow_worthwhile(ff.data_profiles, why_not)) {
    return {"skipped", "not-worthwhile", why_not};
  }
  SetOptions so;
  so.paths = {e.acted_on};
  // The image the repair held, not whatever its path names now: a directory on it swapped for
  // a symlink since would send the conversion to another file (a security review's finding).
  so.expected = {{e.dev, e.inode}};
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
  if (sr.files.empty()) {
    return {"failed", "io-error", "set reported nothing"};
  }
  const auto& se = sr.files.front();
  const bool converted = se.action == Outcome::rewritten || se.action == Outcome::unchanged ||
                         se.action == Outcome::flag_set;
  return {std::string(outcome_name(se.action)), se.code, se.reason, converted};
}

} // namespace

RepairSeverity repair_severity(const RepairEntry& e)
{
  if (e.action == RepairAction::refused || e.action == RepairAction::failed) {
    return e.code == k_code_verify_failed ? RepairSeverity::critical : RepairSeverity::incomplete;
  }
  if (e.action == RepairAction::would_repair) {
    return RepairSeverity::critical;
  }
  RepairSeverity s = RepairSeverity::clean;
  const bool shared = std::any_of(e.ranges.begin(), e.ranges.end(),
                                  [](const RewriteRange& r) { return !r.shared_with.empty(); });
  if (!e.skipped.empty() || e.action == RepairAction::left || shared) {
    s = RepairSeverity::warnings;
  }
  if (e.nocow && !e.nocow->converted) {
    s = std::max(s, e.nocow->action == "skipped" ? RepairSeverity::warnings
                                                 : RepairSeverity::incomplete);
  }
  return s;
}

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
  sys::IgnoreSigio sigio;
  RepairRun run(opts, progress, cancel);
  RepairResult result;
  std::vector<Target> targets;
  for (const auto& p : opts.paths) {
    expand(p, targets, result);
  }
  if (targets.empty() && opts.from_report) {
    for (const auto& [p, _] : *opts.from_report) {
      targets.push_back({p, std::nullopt});
    }
  }
  for (const auto& t : targets) {
    result.files.push_back(repair_one(run, t, result));
  }
  if (opts.then_nocow && !opts.dry_run) {
    for (auto& e : result.files) {
      e.nocow = then_nocow(opts, e, progress, cancel);
    }
  }
  return result;
}

} // namespace vmcsum::core
