// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The engine of `vmcsum set`: gathers the facts plan_set() needs, then sets the attribute in
// place (directories, empty files) or rewrites the file (everything else). The rewrite keeps
// the original untouched until a verified copy replaces it in one atomic renameat2(): a crash
// at any point leaves the original, or the finished copy, plus at most one temp file that the
// next run recognises by its name and removes.
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/image/file_facts.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/set/rewrite.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/lease.hpp>

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace vmcsum::core {

namespace {

using sys::IgnoreSigio;
using sys::Lease;

using Clock = std::chrono::steady_clock;

constexpr size_t k_chunk = 4u << 20;         // read/write unit: bounded memory
constexpr size_t k_max_listed_ranges = 1000; // unreadable ranges listed (all are counted)
constexpr size_t k_max_locks = 64;           // locks listed per file
constexpr const char* k_compression_xattr = "btrfs.compression";

double seconds_since(Clock::time_point t)
{
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string dir_of(const std::string& path)
{
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path)
{
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string join(const std::string& dir, const std::string& name)
{
  return dir == "/" ? "/" + name : dir + "/" + name;
}

class Hasher
{
public:
  Hasher()
    : m_state(XXH3_createState())
  {
    if (!m_state) {
      throw std::bad_alloc();
    }
    XXH3_128bits_reset(m_state);
  }
  ~Hasher() { XXH3_freeState(m_state); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void update(const void* data, size_t len) { XXH3_128bits_update(m_state, data, len); }
  // Each data range starts with its offset and length, so that equal digests mean equal
  // range maps (holes where the source has holes) as well as equal bytes.
  void range(uint64_t offset, uint64_t length)
  {
    uint8_t b[16];
    for (int i = 0; i < 8; ++i) {
      b[i] = static_cast<uint8_t>(offset >> (8 * i));
      b[8 + i] = static_cast<uint8_t>(length >> (8 * i));
    }
    update(b, sizeof b);
  }
  std::string hex() const
  {
    XXH128_hash_t h = XXH3_128bits_digest(m_state);
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                  static_cast<unsigned long long>(h.low64));
    return buf;
  }

private:
  XXH3_state_t* m_state;
};

// Calls fn(start, end) for each data range of fd below `size`, as SEEK_DATA/SEEK_HOLE see them.
template <class Fn>
void for_each_data_range(int fd, uint64_t size, const std::string& path, Fn&& fn)
{
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < size) {
    off_t d = ::lseek(fd, pos, SEEK_DATA);
    if (d < 0) {
      if (errno == ENXIO) {
        break;
      }
      stop_on_errno(errno, "io-error", "lseek(SEEK_DATA) on " + path);
    }
    off_t h = ::lseek(fd, d, SEEK_HOLE);
    if (h < 0) {
      stop_on_errno(errno, "io-error", "lseek(SEEK_HOLE) on " + path);
    }
    h = std::min<off_t>(h, static_cast<off_t>(size));
    if (h <= d) {
      break;
    }
    fn(static_cast<uint64_t>(d), static_cast<uint64_t>(h));
    pos = h;
  }
}

void pwrite_all(int fd, const uint8_t* buf, size_t len, uint64_t off, const std::string& path)
{
  if (int err = sys::pwrite_full(fd, buf, len, off)) {
    stop_on_errno(err, "io-error", "write to " + path);
  }
}

// Pages of the file that are in the page cache (mincore over a read-only mapping), counted over
// its data ranges only (SEEK_DATA/SEEK_HOLE): the copy was written range by range and never read,
// so its holes hold no pages, and a 16 TiB sparse image must not cost a walk over 16 TiB of page
// tables. `check` runs between steps (cancellation, the lease).
std::optional<uint64_t> resident_pages(int fd, uint64_t size, const std::function<void()>& check)
{
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  constexpr uint64_t step = 1ULL << 30;
  uint64_t count = 0;
  std::vector<unsigned char> vec;
  for (uint64_t pos = 0; pos < size;) {
    const off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {
        break; // no data after pos
      }
      return std::nullopt;
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) {
      return std::nullopt;
    }
    const uint64_t start = static_cast<uint64_t>(data) / page * page;
    const uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    for (uint64_t off = start; off < end; off += step) {
      check();
      const uint64_t len = std::min(step, end - off);
      void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(off));
      if (m == MAP_FAILED) {
        return std::nullopt;
      }
      vec.assign((len + page - 1) / page, 0);
      int rc = ::mincore(m, len, vec.data());
      ::munmap(m, len);
      if (rc < 0) {
        return std::nullopt;
      }
      for (unsigned char v : vec) {
        count += v & 1;
      }
    }
    pos = std::max<uint64_t>(end, static_cast<uint64_t>(data) + 1);
  }
  return count;
}

using Xattrs = std::vector<std::pair<std::string, std::string>>;

// Every extended attribute of fd (names and values), retried when they change meanwhile.
Xattrs read_xattrs(int fd, const std::string& path)
{
  for (int attempt = 0; attempt < 5; ++attempt) {
    ssize_t n = ::flistxattr(fd, nullptr, 0);
    if (n < 0) {
      if (errno == ENOTSUP) {
        return {};
      }
      stop_on_errno(errno, "xattr", "listxattr " + path);
    }
    std::string names(static_cast<size_t>(n), '\0');
    n = ::flistxattr(fd, names.data(), names.size());
    if (n < 0) {
      if (errno == ERANGE) {
        continue;
      }
      stop_on_errno(errno, "xattr", "listxattr " + path);
    }
    names.resize(static_cast<size_t>(n));
    Xattrs out;
    bool retry = false;
    for (size_t pos = 0; pos < names.size() && !retry;) {
      std::string name(names.c_str() + pos);
      pos += name.size() + 1;
      if (name.empty() || sys::is_temp_marker_xattr(name)) {
        continue; // a marker is about one temp file; never carried to another
      }
      ssize_t v = ::fgetxattr(fd, name.c_str(), nullptr, 0);
      if (v < 0) {
        if (errno == ENODATA) {
          continue;
        }
        stop_on_errno(errno, "xattr", "getxattr " + name + " of " + path);
      }
      std::string value(static_cast<size_t>(v), '\0');
      v = ::fgetxattr(fd, name.c_str(), value.data(), value.size());
      if (v < 0) {
        if (errno == ERANGE) {
          retry = true;
          break;
        }
        if (errno == ENODATA) {
          continue;
        }
        stop_on_errno(errno, "xattr", "getxattr " + name + " of " + path);
      }
      value.resize(static_cast<size_t>(v));
      out.emplace_back(std::move(name), std::move(value));
    }
    if (!retry) {
      return out;
    }
  }
  stop_failed("xattr", "the extended attributes of " + path + " keep changing");
}

Outcome outcome_of(SetAction a)
{
  switch (a) {
  case SetAction::flag_set:
    return Outcome::flag_set;
  case SetAction::rewrite:
    return Outcome::rewritten;
  case SetAction::unchanged:
    return Outcome::unchanged;
  case SetAction::refused:
    return Outcome::refused;
  case SetAction::skipped:
    return Outcome::skipped;
  }
  return Outcome::refused;
}

SetState state_of(const FileFacts& f)
{
  SetState s;
  s.nocow = f.nocow;
  s.nodatasum = f.nodatasum;
  s.inode_flags = f.inode_flags;
  if (f.kind == "directory") {
    s.state = f.nocow ? (*f.nocow ? "nocow" : "cow") : "unknown";
  } else {
    s.state = f.inode_flags ? cow_state_name(*f.inode_flags) : "unknown";
  }
  s.size = f.size;
  s.allocated = f.allocated;
  s.extents = f.extents;
  s.compression = f.compression.value_or("");
  s.inode = f.inode;
  return s;
}

SetFacts set_facts_of(const FileFacts& f, bool in_walk)
{
  SetFacts s;
  s.kind = f.kind.empty() ? "missing" : f.kind;
  s.in_walk = in_walk;
  if (!f.examined) {
    s.error = f.error.value_or("cannot examine");
  }
  s.on_btrfs = f.on_btrfs;
  s.fs = f.fs;
  s.nocow = f.nocow;
  s.inode_flags = f.inode_flags;
  for (const char* key : {"nodatasum", "nocow", "fs"}) {
    if (auto it = f.unknown.find(key); it != f.unknown.end()) {
      s.inode_flags_unknown = it->second;
      break;
    }
  }
  s.attr_flags = f.attr_flags.value_or(0);
  s.size = f.size;
  s.allocated = f.allocated;
  s.nlink = f.nlink;
  s.compression = f.compression.value_or("none");
  s.compression_source = f.compression_source.value_or("");
  s.compressed_bytes = f.compressed_bytes.value_or(0);
  return s;
}

// True when fd shows the target both through FS_IOC_GETFLAGS and in its inode item, read after
// a commit (TREE_SEARCH sees delayed inode updates only then, kernel-facts.md §3.3); `detail`
// says what was found. A directory's inode item has NODATACOW only.
bool flags_match(int fd, uint64_t subvol, uint64_t ino, bool is_dir, CowTarget target,
                 const std::string& path, std::string& detail)
{
  const bool want_nocow = target == CowTarget::nocow;
  uint32_t attr = btrfs::get_attr_flags(fd, path);
  bool ok = ((attr & FS_NOCOW_FL) != 0) == want_nocow;
  detail = std::string("FS_IOC_GETFLAGS ") + ((attr & FS_NOCOW_FL) ? "has" : "lacks") + " NOCOW";
  btrfs::sync_fs(fd, path);
  std::optional<btrfs::InodeItem> item;
  try {
    item = btrfs::read_inode_item(fd, subvol, ino, path);
  } catch (const Error& e) {
    // GETFLAGS shows NOCOW exactly when NODATACOW is set, and a directory has nothing else to
    // check; a file's NODATASUM can only be read from the inode item.
    if (is_dir && e.code() == Errc::permission) {
      detail += " (inode item not read: needs CAP_SYS_ADMIN)";
      return ok;
    }
    throw;
  }
  if (!item) {
    detail += ", inode item not found after a commit";
    return false;
  }
  detail += ", inode flags " + cow_state_name(item->flags);
  if (is_dir) {
    return ok && ((item->flags & btrfs::inode_flag::nodatacow) != 0) == want_nocow;
  }
  return ok && in_target_state(item->flags, target);
}

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
  void process(const std::string& path, bool in_walk);
  void walk(const std::string& root);
  void list_tree(const std::string& dir, int dirfd, int depth, std::vector<std::string>& out);
  void clean_leftovers_of(const std::string& dir, const std::string& name);
  void handle_leftover(int dirfd, const std::string& dir, const std::string& entry);
  void gather_users(SetFacts& sf, const FileFacts& ff, SetEntry& e);
  void flag_set(const FileFacts& ff);
  void rewrite(const FileFacts& ff, SetEntry& e);
  const SetOptions& m_opts;
  const std::function<void(const SetProgress&)>& m_progress;
  const std::atomic<bool>& m_cancel;
  FactCollector m_collector;
  std::optional<ProcScan> m_procs;
  SetResult m_result;
};

SetResult Engine::run()
{
  IgnoreSigio sigio;
  for (const auto& p : m_opts.paths) {
    process(p, false);
  }
  return std::move(m_result);
}

void Engine::gather_users(SetFacts& sf, const FileFacts& ff, SetEntry& e)
{
  if (!m_procs) {
    m_procs = scan_proc(m_opts.proc_dir);
  }
  FileUsers u = find_users(ff.canonical_path, *m_procs);
  sf.users = u.users;
  sf.locks = u.locks;
  e.users = std::move(u.users);
  e.locks = std::move(u.locks);
}

void Engine::process(const std::string& path, bool in_walk)
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
  FileFacts ff = m_collector.collect(path, !in_walk);
  e.kind = ff.kind.empty() ? "missing" : ff.kind;
  e.symlink_target = ff.symlink_target;
  e.acted_on = ff.canonical_path.empty() ? path : ff.canonical_path;
  if (ff.examined && (ff.kind == "file" || ff.kind == "directory")) {
    e.before = state_of(ff);
  }
  if (ff.symlink_target && !in_walk && ff.examined) {
    e.notes.push_back("symlink: acting on its target " + ff.canonical_path);
  }

  SetFacts sf = set_facts_of(ff, in_walk);
  if (ff.examined && (ff.kind == "file" || ff.kind == "directory")) {
    std::string dir = ff.kind == "directory" ? ff.canonical_path : dir_of(ff.canonical_path);
    // Leftovers first: the space a killed run's temp file holds is free for this one. btrfs
    // returns freed extents to the free space at the next commit, hence the syncfs.
    if (ff.kind == "file" && !in_walk && ff.on_btrfs) {
      const size_t before = m_result.leftovers.size();
      clean_leftovers_of(dir, base_of(ff.canonical_path));
      if (m_result.leftovers.size() != before) {
        sys::Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (dfd) {
          ::syncfs(dfd.get());
        }
      }
    }
    struct statvfs sv
    {
    };
    if (::statvfs(dir.c_str(), &sv) == 0) {
      sf.read_only = (sv.f_flag & ST_RDONLY) != 0;
      sf.free_bytes = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
    }
    const bool maybe_rewrite = ff.kind == "file" && ff.size > 0 && ff.on_btrfs && ff.inode_flags &&
                               !in_target_state(*ff.inode_flags, m_opts.target);
    if (maybe_rewrite) {
      gather_users(sf, ff, e);
    }
  }

  SetPlan plan = plan_set(sf, m_opts.target, escape_name(e.acted_on));
  e.steps = plan.steps;
  e.notes.insert(e.notes.end(), plan.notes.begin(), plan.notes.end());
  e.refusals = plan.refusals;
  e.action = outcome_of(plan.action);
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

  if (!m_opts.dry_run &&
      (plan.action == SetAction::flag_set || plan.action == SetAction::rewrite)) {
    auto t0 = Clock::now();
    try {
      if (plan.action == SetAction::flag_set) {
        flag_set(ff);
      } else {
        rewrite(ff, e);
      }
      // What the file looks like now, through the same code as `show` (after a commit, so
      // that the inode item is the new one).
      sys::Fd dfd(::open(dir_of(e.acted_on).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (dfd) {
        try {
          btrfs::sync_fs(dfd.get(), e.acted_on);
        } catch (const Error&) {
          // The after-state then shows what it can; nothing more to do.
        }
      }
      FileFacts now = m_collector.collect(e.acted_on, false);
      if (now.examined) {
        e.after = state_of(now);
      }
    } catch (const WriteStop& s) {
      e.action = s.outcome;
      e.code = s.code;
      e.reason = s.message;
      if (s.outcome == Outcome::refused) {
        e.refusals.push_back({s.code, s.message});
      }
      if (s.code == "interrupted") {
        m_result.interrupted = true;
      }
    } catch (const Error& err) {
      e.action = Outcome::failed;
      e.code = "io-error";
      e.reason = err.what();
    }
    e.seconds.total = seconds_since(t0);
  }
  const bool walk_on = m_opts.recursive && ff.kind == "directory" && ff.on_btrfs && !in_walk;
  m_result.files.push_back(std::move(e));
  if (walk_on) {
    walk(ff.canonical_path);
  }
}

void Engine::walk(const std::string& root)
{
  std::vector<std::string> entries;
  sys::Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return; // the directory's own entry already says what is wrong with it
  }
  // The whole list first: the rewrites below add and remove names in these directories.
  list_tree(root, fd.get(), 0, entries);
  for (const auto& p : entries) {
    if (is_temp_name(base_of(p))) {
      if (sys::Fd d{::open(dir_of(p).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)}) {
        handle_leftover(d.get(), dir_of(p), base_of(p));
      }
      continue;
    }
    process(p, true);
  }
}

// Pre-order (a directory before what it holds), names sorted, symlinks never followed, each
// directory opened relative to its parent with O_NOFOLLOW.
void Engine::list_tree(const std::string& dir, int dirfd, int depth, std::vector<std::string>& out)
{
  int dup = ::dup(dirfd);
  if (dup < 0) {
    return;
  }
  DIR* d = ::fdopendir(dup);
  if (!d) {
    ::close(dup);
    return;
  }
  std::vector<std::pair<std::string, bool>> names;
  while (dirent* ent = ::readdir(d)) {
    if (std::strcmp(ent->d_name, ".") == 0 || std::strcmp(ent->d_name, "..") == 0) {
      continue;
    }
    struct stat st
    {
    };
    if (::fstatat(dirfd, ent->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      continue;
    }
    names.emplace_back(ent->d_name, S_ISDIR(st.st_mode));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& [name, is_dir] : names) {
    std::string path = join(dir, name);
    out.push_back(path);
    if (is_dir && depth < 256) {
      sys::Fd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub) {
        list_tree(path, sub.get(), depth + 1, out);
      }
    }
  }
}

void Engine::clean_leftovers_of(const std::string& dir, const std::string& name)
{
  sys::Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) {
    return;
  }
  auto match = [&](const std::string& entry) { return is_temp_name_for(entry, name); };
  for (auto& t : sys::remove_stale_temps(dfd.get(), match, m_opts.dry_run)) {
    m_result.leftovers.push_back({join(dir, t.name), t.removed, std::move(t.why)});
  }
}

void Engine::handle_leftover(int dirfd, const std::string& dir, const std::string& entry)
{
  if (auto t = sys::remove_stale_temp(dirfd, entry, m_opts.dry_run)) {
    m_result.leftovers.push_back({join(dir, entry), t->removed, std::move(t->why)});
  }
}

void Engine::flag_set(const FileFacts& ff)
{
  const std::string& path = ff.canonical_path;
  const bool is_dir = ff.kind == "directory";
  sys::Fd fd(::open(path.c_str(),
                    O_RDONLY | O_NONBLOCK | O_NOFOLLOW | (is_dir ? O_DIRECTORY : 0) | O_CLOEXEC));
  if (!fd) {
    stop_on_errno(errno, "cannot-read", "open " + path);
  }
  struct stat st
  {
  };
  if (::fstat(fd.get(), &st) < 0 || st.st_ino != ff.inode) {
    stop_failed("changed", path + " was replaced while vmcsum looked at it");
  }
  if (!ff.subvolume_id) {
    stop_refused("needs-root", "subvolume of " + path + " unknown");
  }
  try {
    uint32_t old = btrfs::get_attr_flags(fd.get(), path);
    uint32_t want =
      m_opts.target == CowTarget::nocow ? (old | FS_NOCOW_FL) : (old & ~uint32_t(FS_NOCOW_FL));
    // Called even when GETFLAGS already matches: on an empty file it also drops a NODATASUM
    // inherited from `-o nodatasum` (btrfs_fileattr_set(), kernels up to 7.2).
    btrfs::set_attr_flags(fd.get(), want, path);
  } catch (const Error& err) {
    if (err.sys_errno() == EROFS) {
      stop_refused("read-only", err.what());
    }
    stop_failed("flags-not-set", err.what());
  }
  std::string detail;
  if (!flags_match(fd.get(), *ff.subvolume_id, st.st_ino, is_dir, m_opts.target, path, detail)) {
    stop_failed("flags-not-set",
                "the kernel did not apply it (" + detail +
                  (is_dir ? std::string(")")
                          : std::string("): btrfs ignores the change once a file has data; was "
                                        "it written to meanwhile?")));
  }
}

// One rewrite, step by step. The members own what a failed step must undo, declared so that
// they go in the right order: the temp file's name is removed, then the lease released, then
// the descriptors closed.
class Rewrite
{
public:
  Rewrite(const FileFacts& ff, SetEntry& e, const SetOptions& opts,
          const std::function<void(const SetProgress&)>& progress, const std::atomic<bool>& cancel)
    : m_ff(ff)
    , m_e(e)
    , m_progress(progress)
    , m_check(cancel,
              "interrupted: the temp file was removed, " + ff.canonical_path + " is untouched",
              "another process opened " + ff.canonical_path +
                " during the rewrite: abandoned (temp file removed, original untouched)")
    , m_target(opts.target)
    , m_proc_dir(opts.proc_dir)
    , m_path(ff.canonical_path)
    , m_dir(dir_of(ff.canonical_path))
    , m_name(base_of(ff.canonical_path))
  {
  }

  void run()
  {
    if (!m_ff.subvolume_id) {
      stop_refused("needs-root", "subvolume of " + m_path + " unknown");
    }
    open_source();
    create_temp();
    set_flags_while_empty();
    copy_data();
    verify_copy();
    copy_metadata();
    swap_in();
  }

private:
  void open_source();
  void create_temp();
  void set_flags_while_empty();
  void copy_data();
  void verify_copy();
  void copy_metadata();
  void swap_in();

  void check() const { m_check(); }
  void report(const char* phase, uint64_t done, uint64_t total) const
  {
    if (m_progress) {
      m_progress({m_path, phase, done, total});
    }
  }
  bool nocow() const { return m_target == CowTarget::nocow; }

  const FileFacts& m_ff;
  SetEntry& m_e;
  const std::function<void(const SetProgress&)>& m_progress;
  CancelCheck m_check;
  const CowTarget m_target;
  const std::string m_proc_dir;
  const std::string m_path, m_dir, m_name;
  std::string m_tpath;
  struct stat m_st
  {
  };
  struct stat m_tst
  {
  };
  uint64_t m_size = 0;  // of the source
  uint64_t m_total = 0; // bytes in its data ranges
  Xattrs m_xattrs;
  uint32_t m_src_attr = 0;
  sys::AlignedBuffer m_buf;
  std::string m_source_digest;
  sys::Fd m_dirfd;
  sys::Fd m_src;
  std::unique_ptr<Lease> m_lease;
  std::unique_ptr<sys::TempFile> m_temp;
};

void Rewrite::open_source()
{
  m_dirfd.reset(::open(m_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!m_dirfd) {
    stop_on_errno(errno, "cannot-read", "open " + m_dir);
  }
  // O_NONBLOCK: an existing lease makes open() fail with EWOULDBLOCK instead of waiting.
  // O_NOATIME keeps reading from changing atime (it needs ownership or CAP_FOWNER).
  const int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  m_src.reset(::openat(m_dirfd.get(), m_name.c_str(), flags | O_NOATIME));
  if (!m_src && errno == EPERM) {
    m_src.reset(::openat(m_dirfd.get(), m_name.c_str(), flags));
  }
  if (!m_src) {
    if (errno == EWOULDBLOCK) {
      stop_refused("in-use", m_path + " is leased by another process");
    }
    stop_on_errno(errno, "cannot-read", "open " + m_path);
  }
  if (::fstat(m_src.get(), &m_st) < 0) {
    stop_on_errno(errno, "cannot-read", "fstat " + m_path);
  }
  if (!S_ISREG(m_st.st_mode) || m_st.st_ino != m_ff.inode) {
    stop_failed("changed", m_path + " was replaced while vmcsum looked at it");
  }
  if (m_st.st_nlink > 1) {
    stop_refused("hard-links", m_path + " has " + std::to_string(m_st.st_nlink) +
                                 " hard links (it got one meanwhile)");
  }
  m_size = static_cast<uint64_t>(m_st.st_size);

  // No other open of the file may exist from here on; the lease needs this to be the only
  // descriptor vmcsum has on it, too (check_conflicting_open() counts every reader).
  m_lease = std::make_unique<Lease>(m_src.get());
  m_check.watch(m_lease.get());
  if (!m_lease->active()) {
    if (m_lease->error() == EAGAIN || m_lease->error() == EBUSY) {
      stop_refused("in-use",
                   m_path + " is open by another process (the kernel refused a write lease; /proc "
                            "did not show which process, so it may be in another PID namespace)");
    }
    m_e.notes.push_back("no write lease (" + errno_text(m_lease->error()) +
                        "): opens during the copy are not noticed; /proc is checked again "
                        "before the swap");
  }
  m_xattrs = read_xattrs(m_src.get(), m_path);
  m_src_attr = btrfs::get_attr_flags(m_src.get(), m_path);
}

// The temp file is created anonymous, locked and marked before its name exists (TempFile), so
// a later run can prove a leftover is ours before it removes it.
void Rewrite::create_temp()
{
  try {
    m_temp = std::make_unique<sys::TempFile>(m_dirfd.get(), m_name, m_dir);
  } catch (const Error& err) {
    throw stop_from_error(err, "io-error");
  }
  m_tpath = m_temp->display_path();
  if (::fstat(m_temp->fd(), &m_tst) < 0) {
    stop_on_errno(errno, "io-error", "fstat " + m_tpath);
  }
}

// btrfs_fileattr_set() changes NODATACOW/NODATASUM only while i_size == 0.
void Rewrite::set_flags_while_empty()
{
  const int tmp = m_temp->fd();
  const uint32_t compr_bits = FS_COMPR_FL | FS_NOCOMP_FL;
  const auto src_prop = std::find_if(m_xattrs.begin(), m_xattrs.end(),
                                     [](const auto& x) { return x.first == k_compression_xattr; });
  try {
    // A compression property inherited from the directory goes first: btrfs refuses NOCOW
    // together with compression (check_fsflags(): -EINVAL). Removing it is allowed on any
    // inode (an empty value skips the validation).
    if (::fremovexattr(tmp, k_compression_xattr) < 0 && errno != ENODATA && errno != ENOTSUP) {
      stop_on_errno(errno, "flags-not-set", "remove btrfs.compression from " + m_tpath);
    }
    uint32_t cur = btrfs::get_attr_flags(tmp, m_tpath);
    if (nocow()) {
      if (cur & compr_bits) {
        cur &= ~compr_bits;
        btrfs::set_attr_flags(tmp, cur, m_tpath);
      }
      btrfs::set_attr_flags(tmp, cur | FS_NOCOW_FL, m_tpath);
    } else {
      // Always called: this also drops a NODATASUM inherited from a NOCOW directory or from
      // `-o nodatasum` (kernels up to 7.2; later ones are caught by the check below).
      cur &= ~uint32_t(FS_NOCOW_FL);
      btrfs::set_attr_flags(tmp, cur, m_tpath);
      // The source's compression setting, before any data, so the copy is compressed alike.
      if (src_prop != m_xattrs.end()) {
        if (::fsetxattr(tmp, k_compression_xattr, src_prop->second.data(), src_prop->second.size(),
                        0) < 0) {
          stop_on_errno(errno, "xattr", "set btrfs.compression on " + m_tpath);
        }
        m_e.xattrs_copied.push_back(k_compression_xattr);
      }
      cur = btrfs::get_attr_flags(tmp, m_tpath);
      uint32_t want = (cur & ~compr_bits) | (m_src_attr & compr_bits);
      if (want != cur) {
        btrfs::set_attr_flags(tmp, want, m_tpath);
      }
    }
  } catch (const Error& err) {
    stop_failed("flags-not-set", err.what());
  }
  if (nocow() && src_prop != m_xattrs.end()) {
    m_e.xattrs_dropped.push_back(k_compression_xattr);
    m_e.notes.push_back("btrfs.compression=" + src_prop->second +
                        " not carried over: NOCOW files cannot be compressed");
  }
  std::string detail;
  if (!flags_match(tmp, *m_ff.subvolume_id, m_tst.st_ino, false, m_target, m_tpath, detail)) {
    stop_failed("flags-not-set",
                "the kernel did not give the empty temp file the requested state (" + detail + ")");
  }
}

// Only the data ranges (SEEK_DATA/SEEK_HOLE), with read/write: never a reflink
// (copy_file_range may clone on btrfs), and holes stay holes.
void Rewrite::copy_data()
{
  // Plain buffered writes, flushed once at the end, as cp + sync do: starting writeback early
  // (sync_file_range every 64 MiB) made the copy phase 1.3-1.6x slower on the disks measured,
  // because reads of the source then compete with writes of the copy (bench/set_convert.sh).
  auto t_copy = Clock::now();
  m_buf = sys::aligned_buffer(k_chunk);
  const int src = m_src.get();
  const uint64_t sector = m_ff.sector_size.value_or(4096);
  for_each_data_range(src, m_size, m_path, [&](uint64_t a, uint64_t b) {
    m_total += b - a;
    ++m_e.data_ranges;
  });
  ::posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL);
  Hasher hash;
  bool unreadable = false;
  for_each_data_range(src, m_size, m_path, [&](uint64_t start, uint64_t end) {
    hash.range(start, end - start);
    for (uint64_t off = start; off < end;) {
      check();
      size_t want = static_cast<size_t>(std::min<uint64_t>(k_chunk, end - off));
      ssize_t n = ::pread(src, m_buf.get(), want, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n < 0 && errno == EIO) {
        // Find the unreadable sectors of this chunk, then go on reading only to find the rest:
        // the copy is abandoned, never finished with holes or zeros where data was.
        unreadable = true;
        for (uint64_t s = off; s < off + want; s += sector) {
          size_t len = static_cast<size_t>(std::min<uint64_t>(sector, off + want - s));
          ssize_t r = ::pread(src, m_buf.get(), len, static_cast<off_t>(s));
          if (r < 0 && errno == EIO) {
            m_e.unreadable_bytes += len;
            if (m_e.unreadable.size() < k_max_listed_ranges ||
                m_e.unreadable.back().offset + m_e.unreadable.back().length == s) {
              add_range(m_e.unreadable, s, len);
            }
          }
        }
        off += want;
        report("scan", off, m_size);
        continue;
      }
      if (n < 0) {
        stop_on_errno(errno, "io-error", "read " + m_path + " at offset " + std::to_string(off));
      }
      if (n == 0) {
        stop_failed("changed", m_path + " got shorter during the copy");
      }
      if (!unreadable) {
        hash.update(m_buf.get(), static_cast<size_t>(n));
        pwrite_all(m_temp->fd(), m_buf.get(), static_cast<size_t>(n), off, m_tpath);
        m_e.bytes_copied += static_cast<uint64_t>(n);
        report("copy", m_e.bytes_copied, m_total);
      }
      off += static_cast<uint64_t>(n);
    }
  });
  if (unreadable) {
    std::string list;
    size_t shown = 0;
    for (const auto& r : m_e.unreadable) {
      if (shown++ == 8) {
        list += ", ...";
        break;
      }
      list +=
        (list.empty() ? "" : ", ") + std::to_string(r.offset) + "+" + std::to_string(r.length);
    }
    m_e.bytes_copied = 0;
    stop_refused("unreadable",
                 human_bytes(m_e.unreadable_bytes) + " of " + m_path +
                   " cannot be read (EIO: checksum failures or media errors) at offset+length " +
                   list +
                   "; nothing was changed. Run `vmcsum scrub` on it to tell false checksum "
                   "mismatches from media errors, and `vmcsum repair` to make them readable, or "
                   "restore those ranges from a backup");
  }
  if (::ftruncate(m_temp->fd(), static_cast<off_t>(m_size)) < 0) {
    stop_on_errno(errno, "io-error", "truncate " + m_tpath);
  }
  m_source_digest = hash.hex();
  m_e.seconds.copy = seconds_since(t_copy);

  auto t_flush = Clock::now();
  report("flush", m_e.bytes_copied, m_total);
  if (::fdatasync(m_temp->fd()) < 0) {
    stop_on_errno(errno, "io-error", "fdatasync " + m_tpath);
  }
  m_e.seconds.flush = seconds_since(t_flush);
  check();
}

// The copy as read back from the disk, never from the page cache, hashed like the source.
void Rewrite::verify_copy()
{
  auto t_verify = Clock::now();
  const int tmp = m_temp->fd();
  SetVerify v;
  v.source_digest = m_source_digest;
  ::posix_fadvise(tmp, 0, 0, POSIX_FADV_DONTNEED);
  const auto step_check = [this] { check(); };
  auto resident = resident_pages(tmp, m_size, step_check);
  if (resident && *resident > 0) {
    ::fdatasync(tmp);
    ::posix_fadvise(tmp, 0, 0, POSIX_FADV_DONTNEED);
    resident = resident_pages(tmp, m_size, step_check);
  }
  sys::Fd direct;
  int vfd = tmp;
  if (resident && *resident == 0) {
    v.method = "page-cache-dropped";
  } else {
    // Pages that will not go (or no mincore): O_DIRECT reads bypass the page cache.
    v.resident_pages = resident.value_or(0);
    direct.reset(::openat(m_dirfd.get(), m_temp->name().c_str(),
                          O_RDONLY | O_DIRECT | O_NOFOLLOW | O_CLOEXEC));
    struct stat dst
    {
    };
    if (!direct || ::fstat(direct.get(), &dst) < 0 || dst.st_ino != m_tst.st_ino) {
      stop_failed("verify-failed",
                  "cannot read the copy back from disk: its pages stay cached and O_DIRECT "
                  "failed");
    }
    vfd = direct.get();
    v.method = "o_direct";
  }
  ::posix_fadvise(vfd, 0, 0, POSIX_FADV_SEQUENTIAL);
  Hasher hash;
  uint64_t verified = 0;
  for_each_data_range(vfd, m_size, m_tpath, [&](uint64_t start, uint64_t end) {
    hash.range(start, end - start);
    for (uint64_t off = start; off < end;) {
      check();
      // O_DIRECT needs sector-aligned lengths: ask for whole sectors, accept the short read
      // at the end of the file.
      uint64_t left = end - off;
      size_t want = static_cast<size_t>(std::min<uint64_t>(k_chunk, (left + 4095) & ~4095ULL));
      ssize_t n = ::pread(vfd, m_buf.get(), want, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        stop_failed("verify-failed", "reading the copy back failed at offset " +
                                       std::to_string(off) + ": " +
                                       (n < 0 ? errno_text(errno) : std::string("end of file")));
      }
      size_t got = std::min<size_t>(static_cast<size_t>(n), static_cast<size_t>(left));
      hash.update(m_buf.get(), got);
      if (vfd == tmp) {
        ::posix_fadvise(vfd, static_cast<off_t>(off), static_cast<off_t>(got), POSIX_FADV_DONTNEED);
      }
      off += got;
      verified += got;
      report("verify", verified, m_total);
    }
  });
  v.copy_digest = hash.hex();
  m_e.seconds.verify = seconds_since(t_verify);
  m_e.verify = v;
  if (v.copy_digest != v.source_digest) {
    stop_failed("verify-failed", "the copy read back from disk differs from " + m_path +
                                   " (xxh3-128 " + v.copy_digest + " != " + v.source_digest +
                                   "); the original is untouched");
  }
}

// Owner, mode, xattrs, attributes, timestamps: after the data, because writes clear setuid
// bits and security.capability, and chown clears setuid.
void Rewrite::copy_metadata()
{
  const int tmp = m_temp->fd();
  if (::fchown(tmp, m_st.st_uid, m_st.st_gid) < 0) {
    stop_on_errno(errno, "metadata", "chown " + m_tpath);
  }
  if (::fchmod(tmp, m_st.st_mode & 07777) < 0) {
    stop_on_errno(errno, "metadata", "chmod " + m_tpath);
  }
  for (const auto& [name, value] : m_xattrs) {
    if (name.rfind("btrfs.", 0) == 0) {
      continue; // set_flags_while_empty() took care of it, before the data
    }
    if (::fsetxattr(tmp, name.c_str(), value.data(), value.size(), 0) < 0) {
      stop_on_errno(errno, "xattr", "set " + name + " on " + m_tpath);
    }
    m_e.xattrs_copied.push_back(name);
  }
  try {
    uint32_t cur = btrfs::get_attr_flags(tmp, m_tpath);
    uint32_t want = cur | (m_src_attr & (FS_NOATIME_FL | FS_NODUMP_FL | FS_SYNC_FL));
    if (want != cur) {
      btrfs::set_attr_flags(tmp, want, m_tpath);
    }
  } catch (const Error& err) {
    stop_failed("metadata", err.what());
  }
  const struct timespec times[2] = {m_st.st_atim, m_st.st_mtim};
  if (::futimens(tmp, times) < 0) {
    stop_on_errno(errno, "metadata", "set the timestamps of " + m_tpath);
  }
  if (::fsync(tmp) < 0) {
    stop_on_errno(errno, "io-error", "fsync " + m_tpath);
  }
  std::string detail;
  if (!flags_match(tmp, *m_ff.subvolume_id, m_tst.st_ino, false, m_target, m_tpath, detail)) {
    stop_failed("flags-not-set",
                "the copy lost the requested state while it was written (" + detail + ")");
  }
  m_e.verify->flags_ok = true;
}

// RENAME_EXCHANGE rather than a plain rename: if the lease broke in between, the original can
// be put back, and whoever opened it gets the inode that stays.
void Rewrite::swap_in()
{
  check();
  struct stat now
  {
  };
  if (::fstat(m_src.get(), &now) < 0 || now.st_size != m_st.st_size ||
      now.st_mtim.tv_sec != m_st.st_mtim.tv_sec || now.st_mtim.tv_nsec != m_st.st_mtim.tv_nsec ||
      now.st_ctim.tv_sec != m_st.st_ctim.tv_sec || now.st_ctim.tv_nsec != m_st.st_ctim.tv_nsec) {
    stop_failed("changed",
                m_path + " changed during the rewrite (size, mtime or ctime); abandoned");
  }
  if (!m_lease->active()) {
    ProcScan again = scan_proc(m_proc_dir);
    for (const auto& of : again.open_files) {
      if (of.dev == m_st.st_dev && of.ino == m_st.st_ino && of.pid != ::getpid()) {
        stop_failed("in-use", m_path + " was opened by " + of.comm + "[" + std::to_string(of.pid) +
                                "] during the rewrite; abandoned");
      }
    }
  }
  const int dirfd = m_dirfd.get();
  const char* tname = m_temp->name().c_str();
  // The original goes under the temp name: marked first, so that a kill before it is unlinked
  // leaves a leftover the next run can prove is ours (sys::remove_stale_temp()).
  sys::mark_temp(m_src.get(), m_temp->name());
  m_temp->arm(false);
  if (::renameat2(dirfd, tname, dirfd, m_name.c_str(), RENAME_EXCHANGE) < 0) {
    int err = errno;
    m_temp->arm(true);
    sys::unmark_temp(m_src.get());
    if (err != EINVAL) {
      stop_on_errno(err, "io-error", "renameat2(RENAME_EXCHANGE) " + m_tpath + " <-> " + m_path);
    }
    // No RENAME_EXCHANGE here: an atomic rename over the original does it, minus the undo.
    check();
    if (::renameat(dirfd, tname, dirfd, m_name.c_str()) < 0) {
      stop_on_errno(errno, "io-error", "rename " + m_tpath + " over " + m_path);
    }
    m_temp->arm(false);
  } else if (m_lease->broken()) {
    if (::renameat2(dirfd, tname, dirfd, m_name.c_str(), RENAME_EXCHANGE) == 0) {
      m_temp->arm(true);
      sys::unmark_temp(m_src.get());
      stop_failed("in-use",
                  "another process opened " + m_path + " while it was swapped; put back as it was");
    }
    // Marked: a later run removes the name once nobody holds a flock on it.
    m_e.notes.push_back("another process opened the old inode while it was swapped out: it is "
                        "kept as " +
                        m_tpath);
  } else {
    // The temp name now holds the original inode: make sure, then remove it.
    struct stat old
    {
    };
    if (::fstatat(dirfd, tname, &old, AT_SYMLINK_NOFOLLOW) == 0 && old.st_ino == m_st.st_ino &&
        old.st_dev == m_st.st_dev && ::unlinkat(dirfd, tname, 0) < 0) {
      m_e.notes.push_back("the old inode could not be removed: " + errno_text(errno) + " (" +
                          m_tpath + ")");
    }
  }
  // The new inode is the file now: its marker names the temp name, drop it.
  m_temp->drop_marker();
  if (::fsync(dirfd) < 0) {
    stop_on_errno(errno, "io-error", "fsync " + m_dir);
  }
}

void Engine::rewrite(const FileFacts& ff, SetEntry& e)
{
  Rewrite(ff, e, m_opts, m_progress, m_cancel).run();
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
