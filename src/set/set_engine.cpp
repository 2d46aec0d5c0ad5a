// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The engine of `vmcsum set`: for each path it gathers the facts plan_set() needs, plans, and
// carries the plan out: the attribute set in place (directories, empty files) or the verified
// rewrite (rewrite.cpp). The file is opened once, relative to its directory, checked against
// what was examined; the plan and the action both use that descriptor.
#include "set_impl.hpp"

#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/lease.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/temp_file.hpp>
#include <vmcsum/sys/walk.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace vmcsum::core {

namespace {

using namespace set_impl;

constexpr int k_max_depth = 256; // -r: deeper directories are reported, not walked

// The file or directory one path names, opened once (see SetTarget).
struct OpenTarget
{
  sys::Fd dirfd;
  sys::Fd fd;
  int open_errno = 0; // why fd could not be opened (acting on it then stops with this)
  SetTarget t;
};

// One entry of a -r walk: where it is below the walk's root directory, and its display path.
struct WalkItem
{
  std::string path;       // for display and for the facts (which are checked against the fd)
  std::string parent_rel; // its directory, relative to the root ("" = the root itself)
  std::string name;
  bool is_dir = false;
  bool too_deep = false;                  // a directory listed, what it holds not walked
  std::optional<std::string> not_entered; // a directory the walk could not enter: why
};

// Everything the engine carries from one file to the next.
class Engine
{
public:
  Engine(const SetOptions& opts, const std::function<void(const SetProgress&)>& progress,
         const std::atomic<bool>& cancel)
    : m_opts(opts)
    , m_progress(progress)
    , m_cancel(cancel)
    , m_collector(opts.mountinfo)
  {
  }

  SetResult run();

private:
  void process(const std::string& path, bool in_walk, const sys::Fd* walk_dir = nullptr,
               const std::pair<uint64_t, uint64_t>* expected = nullptr);
  FileFacts facts_of(const std::string& path, bool in_walk, const sys::Fd* walk_dir);
  void describe(const FileFacts& ff, bool in_walk, SetEntry& e);
  void open_target(const FileFacts& ff, const sys::Fd* walk_dir, OpenTarget& o);
  void gather(const FileFacts& ff, bool in_walk, const sys::Fd* walk_dir, OpenTarget& o,
              SetFacts& sf, SetEntry& e);
  void record_plan(const SetPlan& plan, const FileFacts& ff, SetEntry& e);
  void carry_out(SetAction action, const FileFacts& ff, OpenTarget& o, SetEntry& e);
  void walk(const std::string& root, sys::Fd root_dir);
  void clean_leftovers_of(int dirfd, const std::string& dir, const std::string& name);
  void handle_leftover(int dirfd, const std::string& dir, const std::string& entry);
  void flag_set(const FileFacts& ff, OpenTarget& o);
  const SetOptions& m_opts;
  const std::function<void(const SetProgress&)>& m_progress;
  const std::atomic<bool>& m_cancel;
  FactCollector m_collector;
  std::optional<ProcScan> m_procs;
  SetResult m_result;
};

SetResult Engine::run()
{
  sys::IgnoreSigio sigio;
  for (size_t i = 0; i < m_opts.paths.size(); ++i) {
    process(m_opts.paths[i], false, nullptr,
            i < m_opts.expected.size() ? &m_opts.expected[i] : nullptr);
  }
  return std::move(m_result);
}

// Inside a walk the entry is examined through its directory's descriptor, never by name: a
// directory swapped for a symlink since the listing cannot send the examination out of the tree
// (issue 12). A named path is looked up once (O_PATH, its symlink followed once) and examined
// through that descriptor: resolved again (lstat, realpath, open), a path whose directory was
// swapped meanwhile had root open a FIFO someone else's writer waited on, or /dev/null (a
// security review's finding).
FileFacts Engine::facts_of(const std::string& path, bool in_walk, const sys::Fd* walk_dir)
{
  if (!in_walk || !walk_dir) {
    return m_collector.collect_named(path, !in_walk);
  }
  FileFacts ff;
  ff.path = path;
  if (!*walk_dir) {
    ff.error = "its directory was replaced during the walk (not followed)";
    return ff;
  }
  sys::Fd entry(
    ::openat(walk_dir->get(), sys::base_name(path).c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!entry) {
    ff.error = "cannot examine: " + errno_text(errno);
    return ff;
  }
  return m_collector.collect_fd(entry.get(), path);
}

// walk_dir: the entry's directory, opened below the -r walk's root (null for a named path).
void Engine::process(const std::string& path, bool in_walk, const sys::Fd* walk_dir,
                     const std::pair<uint64_t, uint64_t>* expected)
{
  SetEntry e;
  e.path = path;
  if (m_cancel.load()) {
    e.action = Outcome::skipped;
    e.code = "interrupted";
    e.reason = "interrupted before it was reached";
    m_result.files.push_back(std::move(e));
    m_result.interrupted = true;
    return;
  }
  FileFacts ff = facts_of(path, in_walk, walk_dir);
  describe(ff, in_walk, e);
  if (expected && ff.examined && (ff.dev != expected->first || ff.inode != expected->second)) {
    e.action = Outcome::refused;
    e.code = "changed";
    e.reason = "no longer the file it was (replaced since, or a directory on its path was): "
               "not converted";
    m_result.files.push_back(std::move(e));
    return;
  }
  SetFacts sf = set_facts_of(ff, in_walk);
  OpenTarget target;
  if (ff.examined && (ff.kind == "file" || ff.kind == "directory")) {
    gather(ff, in_walk, walk_dir, target, sf, e);
  }
  SetPlan plan = plan_set(sf, m_opts.target, escape_name(e.acted_on));
  record_plan(plan, ff, e);
  if (!m_opts.dry_run &&
      (plan.action == SetAction::flag_set || plan.action == SetAction::rewrite)) {
    carry_out(plan.action, ff, target, e);
  }
  const bool walk_on = m_opts.recursive && ff.kind == "directory" && ff.on_btrfs && !in_walk;
  m_result.files.push_back(std::move(e));
  // The walk starts from the directory examined and opened above, not from its path again.
  sys::Fd walk_root;
  if (walk_on && target.fd) {
    walk_root.reset(::fcntl(target.fd.get(), F_DUPFD_CLOEXEC, 3));
  }
  const int walk_errno = walk_root ? 0 : target.fd ? errno : target.open_errno;
  target = OpenTarget{}; // closed before the walk: the walk acts on what is inside
  if (walk_root) {
    walk(ff.canonical_path, std::move(walk_root));
  } else if (walk_on) {
    // Said, not silent (the directory's own entry may be `unchanged`), like a directory the
    // walk could not enter.
    SetEntry nw;
    nw.path = ff.canonical_path;
    nw.acted_on = ff.canonical_path;
    nw.kind = "directory";
    nw.action = Outcome::skipped;
    nw.code = "not-walked";
    nw.reason = std::string("not walked (") +
                (walk_errno == ESTALE ? "replaced while vmcsum looked at it"
                                      : "cannot open: " + errno_text(walk_errno)) +
                "): what it holds was not converted";
    m_result.files.push_back(std::move(nw));
  }
}

void Engine::describe(const FileFacts& ff, bool in_walk, SetEntry& e)
{
  e.kind = ff.kind.empty() ? "missing" : ff.kind;
  e.symlink_target = ff.symlink_target;
  e.acted_on = ff.canonical_path.empty() ? e.path : ff.canonical_path;
  if (ff.examined && (ff.kind == "file" || ff.kind == "directory")) {
    e.before = state_of(ff);
    e.fsid = ff.fsid.value_or("");
    e.subvolume_id = ff.subvolume_id.value_or(0);
    e.inode = ff.inode;
  }
  if (ff.symlink_target && !in_walk && ff.examined) {
    e.notes.push_back("symlink: acting on its target " + escape_name(ff.canonical_path));
  }
}

// Opens the directory, then the entry relative to it (never blocking: O_NONBLOCK), and checks
// it is the inode the facts describe. A failure is kept in open_errno: the plan still says what
// it would do, the action then stops with it.
void Engine::open_target(const FileFacts& ff, const sys::Fd* walk_dir, OpenTarget& o)
{
  const bool is_dir = ff.kind == "directory";
  std::string dir = dir_of(ff.canonical_path);
  std::string name = base_of(ff.canonical_path);
  if (name.empty()) { // "/": its own directory
    dir = name = "/";
  }
  o.t = SetTarget{-1, name, dir, ff.canonical_path, &ff};
  if (walk_dir) {
    // Inside a -r walk: the directory opened below the root, never the path string again.
    if (!*walk_dir) {
      o.open_errno = ELOOP; // its directory was swapped for a symlink (or left the tree)
      return;
    }
    name = base_of(ff.path);
    o.t.name = name;
    o.dirfd.reset(::fcntl(walk_dir->get(), F_DUPFD_CLOEXEC, 3));
  } else {
    // By the kernel's name of what was examined (no symlink in it), resolved from "/" with no
    // symlink followed: a directory on it swapped for one since is refused, never followed to
    // a directory elsewhere (a security review's finding: root then opened its entries).
    o.dirfd.reset(sys::open_canonical_dir(dir, O_RDONLY));
    if (!o.dirfd && errno == EACCES) {
      // A directory this user may search but not read (0711): enough to look the entry up
      // and to set its flags (not to list leftovers; a rewrite needs root anyway).
      o.dirfd.reset(sys::open_canonical_dir(dir, O_PATH));
    }
  }
  if (!o.dirfd) {
    o.open_errno = errno;
    return;
  }
  o.t.dirfd = o.dirfd.get();
  // Looked at first (O_PATH), opened only when it is the inode examined: whatever was put in
  // its place since (a FIFO, a device) is never opened, and opening that could have effects (a
  // FIFO's writer wakes, a tape rewinds).
  sys::Fd look(::openat(o.dirfd.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st
  {
  };
  if (!look || ::fstat(look.get(), &st) < 0) {
    o.open_errno = errno;
    return;
  }
  if (st.st_ino != ff.inode || (ff.dev != 0 && st.st_dev != ff.dev)) {
    o.open_errno = ESTALE; // replaced between the examination and the open
    return;
  }
  // That inode, through /proc/self/fd (never the name again). O_NOATIME keeps reading from
  // changing atime (it needs ownership or CAP_FOWNER). Without /proc: by name in the directory,
  // never followed nor blocking, then checked again.
  const int flags = O_RDONLY | (is_dir ? O_DIRECTORY : 0);
  o.fd = sys::reopen_fd(look.get(), flags | O_NOATIME);
  if (!o.fd && errno == EPERM) {
    o.fd = sys::reopen_fd(look.get(), flags);
  }
  if (!o.fd && errno == ENOENT) {
    o.fd.reset(::openat(o.dirfd.get(), name.c_str(), flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  }
  if (!o.fd || ::fstat(o.fd.get(), &st) < 0) {
    o.open_errno = errno;
    o.fd.reset();
  } else if (st.st_ino != ff.inode || (ff.dev != 0 && st.st_dev != ff.dev)) {
    o.open_errno = ESTALE;
    o.fd.reset();
  }
}

void Engine::gather(const FileFacts& ff, bool in_walk, const sys::Fd* walk_dir, OpenTarget& o,
                    SetFacts& sf, SetEntry& e)
{
  open_target(ff, walk_dir, o);
  // Leftovers first: the space a killed run's temp file holds is free for this one. btrfs
  // returns freed extents to the free space at the next commit, hence the syncfs. Only in the
  // directory that holds the file examined (o.fd: it was found there).
  if (o.fd && o.dirfd && ff.kind == "file" && !in_walk && ff.on_btrfs) {
    const size_t before = m_result.leftovers.size();
    clean_leftovers_of(o.dirfd.get(), o.t.dir, o.t.name);
    if (m_result.leftovers.size() != before) {
      ::syncfs(o.dirfd.get());
    }
  }
  const int probe = o.fd ? o.fd.get() : o.dirfd.get();
  if (probe >= 0) {
    sf.free_bytes = sys::free_bytes(probe);
  }
  // A read-only snapshot shows only through the file itself (statvfs says read-write): the
  // plan must refuse what the real run would (issue 12).
  sf.read_only = probe >= 0 && read_only_refusal(probe).has_value();
  const bool maybe_rewrite = ff.kind == "file" && ff.size > 0 && ff.on_btrfs && ff.inode_flags &&
                             !in_target_state(*ff.inode_flags, m_opts.target);
  if (maybe_rewrite && o.fd) {
    if (!m_procs) {
      m_procs = scan_proc(m_opts.proc_dir);
    }
    ImageUsers u = find_users(o.fd.get(), *m_procs);
    sf.users = u.users;
    sf.locks = u.locks;
    e.users = std::move(u.users);
    e.locks = std::move(u.locks);
  }
}

void Engine::record_plan(const SetPlan& plan, const FileFacts& ff, SetEntry& e)
{
  e.steps = plan.steps;
  e.notes.insert(e.notes.end(), plan.notes.begin(), plan.notes.end());
  e.refusals = plan.refusals;
  e.action = outcome_of(plan.action);
  if (plan.action == SetAction::unchanged) {
    e.after = e.before; // what it is after the run: as it was (`.after.state` is never null)
  }
  if (plan.action == SetAction::refused) {
    e.code = plan.refusals.front().code;
    for (const auto& r : plan.refusals) {
      e.reason += (e.reason.empty() ? "" : "; ") + r.message;
    }
  } else if (plan.action == SetAction::skipped) {
    e.code = "skipped";
    e.reason = plan.notes.empty() ? std::string() : plan.notes.front();
    e.notes.clear();
  }
  if (ff.kind == "directory" && !m_opts.recursive &&
      (plan.action == SetAction::flag_set || plan.action == SetAction::unchanged)) {
    e.notes.push_back("files already in the directory are unchanged; only new files inherit "
                      "the attribute (use -r to convert them too)");
  }
}

void Engine::carry_out(SetAction action, const FileFacts& ff, OpenTarget& o, SetEntry& e)
{
  auto t0 = Clock::now();
  try {
    if (!o.fd) {
      if (o.open_errno == ESTALE) {
        stop_failed("changed", e.acted_on + " was replaced while vmcsum looked at it");
      }
      if (o.open_errno == ELOOP || o.open_errno == EXDEV || o.open_errno == ENOTDIR) {
        stop_failed("changed", e.acted_on +
                                 ": a directory on its path was replaced by a symlink or a file "
                                 "while vmcsum looked at it: not followed");
      }
      if (o.open_errno == EWOULDBLOCK) {
        stop_refused("in-use", e.acted_on + " is leased by another process");
      }
      stop_on_errno(o.open_errno, "cannot-read", "open " + e.acted_on);
    }
    if (action == SetAction::flag_set) {
      flag_set(ff, o);
    } else {
      rewrite_file(o.t, std::move(o.fd), e, m_opts, m_progress, m_cancel);
    }
    // What the file looks like now, through the same code as `show` (after a commit, so
    // that the inode item is the new one).
    try {
      btrfs::sync_fs(o.dirfd.get(), e.acted_on);
    } catch (const Error&) {
      // The after-state then shows what it can; nothing more to do.
    }
    // Through the directory it was changed in, by its name there, never followed: the path
    // resolved again (three times: lstat, realpath, open) let a -r walk's directory swapped for
    // a symlink to /dev make root open device nodes (a security review's finding).
    sys::Fd after(::openat(o.dirfd.get(), o.t.name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (after) {
      FileFacts now = m_collector.collect_fd(after.get(), e.acted_on, o.dirfd.get());
      if (now.examined) {
        e.after = state_of(now);
        e.inode = now.inode; // a rewrite's file is a new inode
      }
    }
  } catch (const WriteStop& s) {
    e.action = s.outcome;
    e.code = s.code;
    e.reason = s.message;
    if (s.outcome == Outcome::refused) {
      e.refusals.push_back({s.code, s.message});
    }
    m_result.interrupted = m_result.interrupted || s.code == refusal_code::interrupted;
  } catch (const Error& err) {
    e.action = Outcome::failed;
    e.code = "io-error";
    e.reason = err.what();
  }
  e.seconds.total = seconds_since(t0);
}

void Engine::walk(const std::string& root, sys::Fd root_dir)
{
  auto rootfd = std::make_shared<const sys::Fd>(std::move(root_dir));
  // The whole list first: the rewrites below add and remove names in these directories. The
  // one walker (sys::walk_tree): pre-order (a directory before what it holds), names sorted,
  // symlinks never followed, each directory opened below its parent's descriptor.
  std::vector<WalkItem> items;
  struct Unlisted
  {
    std::string path;
    std::string why;
    const char* kind; // "directory": one whose reading failed part-way (it is listed itself)
  };
  std::vector<Unlisted> unlisted; // listing errors, not directories the walk did not enter
  sys::WalkOptions wo;
  wo.max_depth = k_max_depth;
  wo.visit_directories = true;
  wo.sorted = true;
  wo.stop = &m_cancel;
  sys::walk_tree(
    rootfd, root,
    [&](sys::WalkEntry& e) {
      const bool is_dir = e.d_type() == DT_DIR;
      // The walker's rule (walk.hpp: deeper than max_depth is not entered), for the entry.
      items.push_back({e.path(), e.dir_relpath(), std::string(e.name()), is_dir,
                       is_dir && e.depth() > k_max_depth, std::nullopt});
    },
    [&](const std::string& path, const std::string& why) {
      // The walker reports a directory it does not enter right after visiting it.
      if (!items.empty() && items.back().is_dir && items.back().path == path) {
        if (!items.back().too_deep) {
          items.back().not_entered = why;
        }
      } else {
        // An entry gone since readdir, or a directory whose reading failed after some entries
        // (reported once those were listed: the directory is an item further back).
        const bool dir = std::any_of(items.rbegin(), items.rend(),
                                     [&](const WalkItem& i) { return i.is_dir && i.path == path; });
        unlisted.push_back({path, why, dir ? "directory" : "unknown"});
      }
    },
    wo);
  if (m_cancel.load()) {
    // A stop ends the listing at once (what it did not reach is not listed, so not reported):
    // the run says it was interrupted even when it listed nothing.
    m_result.interrupted = true;
  }
  // Said, not silent: what the walk did not reach is an entry of its own, after its directory.
  auto not_walked = [&](const std::string& path, const char* kind, const char* code,
                        const std::string& reason) {
    SetEntry e;
    e.path = path;
    e.kind = kind;
    e.action = Outcome::skipped;
    e.code = code;
    e.reason = reason;
    m_result.files.push_back(std::move(e));
  };
  for (const auto& item : items) {
    // Each entry's directory is opened again below the root only (openat2 RESOLVE_BENEATH,
    // no symlinks): a directory swapped for a symlink since the listing is refused.
    sys::Fd dir(item.parent_rel.empty()
                  ? ::fcntl(rootfd->get(), F_DUPFD_CLOEXEC, 3)
                  : sys::openat_beneath(rootfd->get(), item.parent_rel, O_RDONLY | O_DIRECTORY));
    if (is_temp_name(item.name)) {
      if (dir) {
        handle_leftover(dir.get(), dir_of(item.path), item.name);
      }
      continue;
    }
    process(item.path, true, &dir);
    if (item.too_deep) {
      not_walked(item.path, "directory", "too-deep",
                 "more than " + std::to_string(k_max_depth) +
                   " directory levels below the starting point: what it holds was not walked");
    } else if (item.not_entered) {
      not_walked(item.path, "directory", "not-walked",
                 "not walked (" + *item.not_entered + "): what it holds was not converted");
    }
  }
  // Errors of the listing itself (an entry that vanished before it could be stat'ed, a
  // directory whose reading failed part-way): what was not listed was not converted.
  for (const auto& u : unlisted) {
    not_walked(u.path, u.kind, "not-walked", u.why + ": not listed completely, not converted");
  }
}

void Engine::clean_leftovers_of(int dirfd, const std::string& dir, const std::string& name)
{
  auto match = [&](const std::string& entry) { return is_temp_name_for(entry, name); };
  for (auto& t : sys::remove_stale_temps(dirfd, match, m_opts.dry_run)) {
    m_result.leftovers.push_back({join(dir, t.name), t.removed, std::move(t.why)});
  }
}

void Engine::handle_leftover(int dirfd, const std::string& dir, const std::string& entry)
{
  if (auto t = sys::remove_stale_temp(dirfd, entry, m_opts.dry_run)) {
    m_result.leftovers.push_back({join(dir, entry), t->removed, std::move(t->why)});
  }
}

// Directories and empty files: the flag in place, through the descriptor that was examined.
void Engine::flag_set(const FileFacts& ff, OpenTarget& o)
{
  const std::string& path = ff.canonical_path;
  const bool is_dir = ff.kind == "directory";
  if (!ff.subvolume_id) {
    stop_refused("needs-root", "subvolume of " + path + " unknown");
  }
  try {
    uint32_t old = btrfs::get_attr_flags(o.fd.get(), path);
    uint32_t want =
      m_opts.target == CowTarget::nocow ? (old | FS_NOCOW_FL) : (old & ~uint32_t(FS_NOCOW_FL));
    // Called even when GETFLAGS already matches: on an empty file it also drops a NODATASUM
    // inherited from `-o nodatasum` (btrfs_fileattr_set(), kernels up to 7.2).
    btrfs::set_attr_flags(o.fd.get(), want, path);
  } catch (const Error& err) {
    throw stop_from_error(err, "flags-not-set");
  }
  std::string detail;
  if (!flags_match(o.fd.get(), *ff.subvolume_id, ff.inode, is_dir, m_opts.target, path, detail)) {
    stop_failed("flags-not-set",
                "the kernel did not apply it (" + detail +
                  (is_dir ? std::string(")")
                          : std::string("): btrfs ignores the change once a file has data; was "
                                        "it written to meanwhile?")));
  }
}

} // namespace

SetResult set_cow_attribute(const SetOptions& opts,
                            const std::function<void(const SetProgress&)>& progress,
                            const std::atomic<bool>& cancel)
{
  Engine engine(opts, progress, cancel);
  return engine.run();
}

} // namespace vmcsum::core
