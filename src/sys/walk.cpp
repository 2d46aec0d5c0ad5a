// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>
#include <vmcsum/sys/dir_reader.hpp>
#include <vmcsum/sys/durable_file.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/walk.hpp>

#include "cold_evidence.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace vmcsum::sys {

namespace {

// "dir/" + "f" is "dir/f", as std::filesystem (scrub's old lister) spelled it.
std::string join(const std::string& dir, const char* name)
{
  return !dir.empty() && dir.back() == '/' ? dir + name : dir + "/" + name;
}

unsigned char dtype_of(mode_t mode)
{
  return static_cast<unsigned char>(IFTODT(mode));
}

const char* kind_of(mode_t mode)
{
  switch (mode & S_IFMT) {
  case S_IFREG:
    return "a regular file";
  case S_IFDIR:
    return "a directory";
  case S_IFLNK:
    return "a symlink";
  case S_IFIFO:
    return "a FIFO";
  case S_IFSOCK:
    return "a socket";
  case S_IFCHR:
    return "a character device";
  case S_IFBLK:
    return "a block device";
  default:
    return "of unknown type";
  }
}

// openat2 is not wrapped by glibc 2.36; the syscall number is in every kernel header since 5.6.
int sys_openat2(int dirfd, const char* path, int flags)
{
#ifdef SYS_openat2
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path, &how, sizeof how));
#else
  (void)dirfd;
  (void)path;
  (void)flags;
  errno = ENOSYS;
  return -1;
#endif
}

// Without openat2: one component at a time, each O_NOFOLLOW relative to the last, refusing
// "..", absolute paths and symlinks (ELOOP), which is what RESOLVE_BENEATH|NO_SYMLINKS gives.
int openat_by_components(int dirfd, const std::string& relpath, int flags)
{
  if (relpath.empty() || relpath.front() == '/') {
    errno = EXDEV;
    return -1;
  }
  std::vector<std::string> parts;
  for (size_t pos = 0; pos <= relpath.size();) {
    size_t slash = relpath.find('/', pos);
    if (slash == std::string::npos) {
      slash = relpath.size();
    }
    std::string part = relpath.substr(pos, slash - pos);
    if (part == "..") {
      errno = EXDEV;
      return -1;
    }
    if (!part.empty() && part != ".") {
      parts.push_back(std::move(part));
    }
    pos = slash + 1;
  }
  if (parts.empty()) {
    return ::openat(dirfd, ".", flags | O_CLOEXEC);
  }
  Fd cur;
  int at = dirfd;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    cur.reset(::openat(at, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!cur) {
      return -1;
    }
    at = cur.get();
  }
  return ::openat(at, parts.back().c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
}

} // namespace

int openat_beneath(int dirfd, const std::string& relpath, int flags)
{
  // Remembered per process: a kernel without openat2 does not grow one.
  static std::atomic<bool> have_openat2{true};
  if (have_openat2) {
    int fd = sys_openat2(dirfd, relpath.c_str(), flags | O_NOFOLLOW);
    if (fd >= 0 || errno != ENOSYS) {
      return fd;
    }
    have_openat2 = false;
  }
  return openat_by_components(dirfd, relpath, flags);
}

int open_canonical_dir(const std::string& abs_dir, int flags)
{
  if (abs_dir.empty() || abs_dir.front() != '/') {
    errno = EINVAL;
    return -1;
  }
  const size_t first = abs_dir.find_first_not_of('/');
  if (first == std::string::npos) {
    return ::open("/", flags | O_DIRECTORY | O_CLOEXEC);
  }
  Fd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    return -1;
  }
  return openat_beneath(root.get(), abs_dir.substr(first), flags | O_DIRECTORY);
}

namespace {

// `rel` below `dirfd` (no symlink followed) as an O_PATH descriptor: what it is can be looked at
// without opening it, as opening a device or a FIFO can have effects (a tape rewinds, a serial
// line raises DTR, a FIFO's writer wakes). -1 and errno on failure.
int opath_beneath(int dirfd, const std::string& rel)
{
  return openat_beneath(dirfd, rel, O_PATH | O_NOFOLLOW);
}

// The regular file `opath` names (fstat'ed as `st`) opened with `flags`, through
// /proc/self/fd: that inode, not its path again. Without /proc, `by_path()` opens it by its path
// once more (O_NONBLOCK: nothing swapped in blocks); either way it must still be that file.
template <class ByPath>
Fd reopen_regular(const Fd& opath, int flags, const struct stat& st, const std::string& path,
                  ByPath by_path)
{
  Fd fd = reopen_fd(opath.get(), flags);
  if (!fd && errno == ENOENT) {
    fd.reset(by_path(flags | O_NONBLOCK));
  }
  if (!fd) {
    throw_errno("open", path);
  }
  struct stat fst = {};
  if (::fstat(fd.get(), &fst) < 0) {
    throw_errno("fstat", path);
  }
  if (!S_ISREG(fst.st_mode) || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino) {
    throw Error(Errc::unsupported, "replaced by another file while it was opened: refused", path);
  }
  return fd;
}

} // namespace

const struct stat* WalkEntry::lstat()
{
  if (!m_done) {
    m_done = true;
    m_ok = ::fstatat(m_dirfd, c_name(), &m_st, AT_SYMLINK_NOFOLLOW) == 0;
    m_errno = m_ok ? 0 : errno;
  }
  if (!m_ok) {
    errno = m_errno;
  }
  return m_ok ? &m_st : nullptr;
}

Fd WalkEntry::open_regular(int flags, struct stat* st_out)
{
  const struct stat* seen = lstat();
  if (!seen) {
    throw_errno("stat", path());
  }
  // Not even opened: opening a device can have side effects (a tape rewinds).
  if (!S_ISREG(seen->st_mode)) {
    throw Error(
      Errc::unsupported,
      std::string("not a regular file (it is ") + kind_of(seen->st_mode) + "): not opened", path());
  }
  const std::string own(name());
  Fd opath(opath_beneath(m_dirfd, own));
  if (!opath) {
    if (errno == ELOOP) {
      throw Error(Errc::unsupported, "replaced by a symlink since it was listed: not followed",
                  path(), ELOOP);
    }
    throw_errno("open", path());
  }
  struct stat st = {};
  if (::fstat(opath.get(), &st) < 0) {
    throw_errno("fstat", path());
  }
  if (S_ISLNK(st.st_mode)) { // O_PATH|O_NOFOLLOW gives the symlink itself, not ELOOP
    throw Error(Errc::unsupported, "replaced by a symlink since it was listed: not followed",
                path(), ELOOP);
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(Errc::unsupported,
                std::string("replaced by ") + kind_of(st.st_mode) + " since it was listed: refused",
                path());
  }
  if (st.st_dev != seen->st_dev || st.st_ino != seen->st_ino) {
    throw Error(Errc::unsupported, "replaced by another file since it was listed: refused", path());
  }
  Fd fd = reopen_regular(opath, flags, st, path(),
                         [&](int f) { return openat_beneath(m_dirfd, own, f | O_NOFOLLOW); });
  if (st_out) {
    ::fstat(fd.get(), st_out);
  }
  return fd;
}

FileRef WalkEntry::ref()
{
  const struct stat* st = lstat();
  if (!st) {
    throw_errno("stat", path());
  }
  return {m_root_ref ? *m_root_ref : m_root,
          relpath(),
          path(),
          st->st_dev,
          st->st_ino,
          st->st_size,
          st->st_blocks};
}

const std::string& WalkEntry::path() const
{
  if (m_dir_path && m_path.empty()) {
    m_path = join(*m_dir_path, c_name());
  }
  return m_path;
}

const std::string& WalkEntry::relpath() const
{
  if (m_dir_rel && m_relpath.empty()) {
    m_relpath = m_dir_rel->empty() ? std::string(name()) : *m_dir_rel + "/" + std::string(name());
  }
  return m_relpath;
}

std::string WalkEntry::dir_relpath() const
{
  if (m_dir_rel) {
    return *m_dir_rel;
  }
  const std::string& rel = relpath();
  const auto slash = rel.rfind('/');
  return slash == std::string::npos ? std::string() : rel.substr(0, slash);
}

WalkEntry WalkEntry::keep()
{
  WalkEntry k;
  // The walk's own descriptor of the directory, shared: closed when the walk has left the
  // directory and the last kept entry of it is gone.
  k.m_dir = m_dir ? m_dir : *m_dir_ref;
  k.m_dirfd = k.m_dir->get();
  k.m_name = name();
  k.m_d_type = m_d_type;
  k.m_depth = m_depth;
  k.m_path = path();
  k.m_relpath = relpath();
  k.m_root = m_root_ref ? *m_root_ref : m_root;
  k.m_done = m_done;
  k.m_ok = m_ok;
  k.m_errno = m_errno;
  k.m_st = m_st;
  return k;
}

Fd FileRef::open(int flags, struct stat* st_out) const
{
  const int dirfd = root ? root->get() : AT_FDCWD;
  Fd opath(opath_beneath(dirfd, relpath));
  if (!opath) {
    if (errno == ELOOP) {
      throw Error(Errc::unsupported,
                  "a symlink (or replaced by one since it was listed): not followed", path, ELOOP);
    }
    if (errno == EXDEV) {
      throw Error(Errc::unsupported, "no longer below the walked directory: refused", path, EXDEV);
    }
    throw_errno("open", path);
  }
  struct stat st = {};
  if (::fstat(opath.get(), &st) < 0) {
    throw_errno("fstat", path);
  }
  if (S_ISLNK(st.st_mode)) { // O_PATH|O_NOFOLLOW gives the symlink itself, not ELOOP
    throw Error(Errc::unsupported,
                "a symlink (or replaced by one since it was listed): not followed", path, ELOOP);
  }
  // Looked at, not opened: a device or a FIFO named on the command line (or through a symlink
  // there) is refused before any open of it could have an effect.
  if (!S_ISREG(st.st_mode)) {
    throw Error(Errc::unsupported,
                std::string("not a regular file (it is ") + kind_of(st.st_mode) + "): not opened",
                path);
  }
  if (st.st_dev != dev || st.st_ino != ino) {
    throw Error(Errc::unsupported, "replaced by another file since it was listed: refused", path);
  }
  Fd fd = reopen_regular(opath, flags, st, path,
                         [&](int f) { return openat_beneath(dirfd, relpath, f | O_NOFOLLOW); });
  if (st_out) {
    ::fstat(fd.get(), st_out);
  }
  return fd;
}

namespace {

// Reads ahead the directories a walk is about to enter, while the tree is cold. A cold walk
// waits for one directory's metadata after the other (find(1) too); here each subdirectory of
// a directory the walk entered is opened below its parent's descriptor (openat_beneath: no
// symlink followed, nothing outside the tree) by one of a few threads, and its first entries
// listed into a buffer thrown away. That brings its inode and first tree blocks into memory
// (btrfs reads the following leaves ahead itself: readdir searches with READA_FORWARD), so the
// walk's own open and listing find them there. bench/audit_tree.sh's cold tree of 213
// directories: the walk alone took 0.12 s instead of find's 0.20 s.
// A cached tree gains nothing and pays the threads' wake-ups (a warm audit 15% slower), so
// reading ahead starts only when the walk's own opens and listings say the tree is cold
// (ColdEvidence: two recent directories read a disk; WalkOptions::prefetch_from_start aside),
// and stops once `cached_limit` read-aheads in a row found everything in memory.
class DirPrefetch
{
public:
  DirPrefetch(unsigned threads, bool from_start, const std::atomic<bool>* stop)
    : m_threads_wanted(threads)
    , m_stop(stop)
    , m_cached_in_a_row(from_start ? 0 : cached_limit)
  {
    m_threads.reserve(threads);
  }
  DirPrefetch(const DirPrefetch&) = delete;
  DirPrefetch& operator=(const DirPrefetch&) = delete;
  ~DirPrefetch()
  {
    {
      std::lock_guard<std::mutex> lock(m_mu);
      m_quit = true;
      m_queue.clear();
    }
    m_work.notify_all();
    for (auto& t : m_threads) {
      t.join();
    }
  }

  // The walk's open or listing of the directory it opened `dir`-th (its root: 0) read a disk;
  // `latest`: the number of the last directory it opened. The walk's thread only.
  void walk_read_disk(uint64_t dir, uint64_t latest)
  {
    const bool cold = m_evidence.disk_read(dir, latest);
    if (cold || active()) {
      m_cached_in_a_row.store(0, std::memory_order_relaxed); // on, or kept on
    }
  }
  bool active() const { return m_cached_in_a_row.load(std::memory_order_relaxed) < cached_limit; }

  // Queues the subdirectories `names` of `dir` (a directory the walk just listed) ahead of those
  // queued before: the walk goes depth first, so it enters these next and the older ones (the
  // siblings of a directory it entered) later. Past the queue's bound the oldest are dropped
  // (the walk reads them itself): the descriptors held stay few whatever a directory holds.
  void add(const std::shared_ptr<const Fd>& dir, std::vector<std::string>& names)
  {
    {
      std::lock_guard<std::mutex> lock(m_mu);
      if (m_threads.empty() && !m_no_threads) {
        // None at all: the walk reads every directory itself.
        m_no_threads = start_threads(m_threads, m_threads_wanted, [this] { work(); }) == 0;
      }
      if (m_no_threads) {
        names.clear();
        return;
      }
      const size_t n = std::min(names.size(), max_queued);
      for (size_t k = n; k-- > 0;) {
        m_queue.emplace_front(dir, std::move(names[k]));
      }
      while (m_queue.size() > max_queued) {
        m_queue.pop_back();
      }
    }
    names.clear();
    m_work.notify_all();
  }

private:
  static constexpr size_t max_queued = 64;
  static constexpr unsigned cached_limit = 8;
  // What one read-ahead lists: the first entries are enough to read the directory's inode and
  // first leaf (and start btrfs's own read-ahead of the next); listing it whole cost as much
  // again as the walk's listing when cached.
  static constexpr size_t listing_bytes = 1024;

  void work()
  {
    alignas(struct dirent64) char buf[listing_bytes];
    for (;;) {
      std::pair<std::shared_ptr<const Fd>, std::string> next;
      {
        std::unique_lock<std::mutex> lock(m_mu);
        m_work.wait(lock, [this] { return m_quit || !m_queue.empty(); });
        if (m_quit) {
          return;
        }
        next = std::move(m_queue.front());
        m_queue.pop_front();
      }
      if (m_stop && m_stop->load(std::memory_order_relaxed)) {
        continue;
      }
      const DiskReadWatch watch;
      // Errors are the walk's to report, when it opens and lists the directory itself.
      Fd fd(openat_beneath(next.first->get(), next.second, O_RDONLY | O_DIRECTORY));
      if (fd) {
        (void)::getdents64(fd.get(), buf, listing_bytes);
      }
      // A thread's first steps page in its code when vmcsum's pages were dropped with the
      // rest (unknown): counted as cached, eight of them turned a cold walk's read-ahead off
      // at its start (bench/audit_tree.sh cold, programs cold too: 1.6x find's time, 1.2x).
      switch (watch.seen()) {
      case DiskReadWatch::Seen::disk:
        m_cached_in_a_row.store(0, std::memory_order_relaxed);
        break;
      case DiskReadWatch::Seen::memory:
        m_cached_in_a_row.fetch_add(1, std::memory_order_relaxed);
        break;
      case DiskReadWatch::Seen::unknown:
        break;
      }
    }
  }

  const unsigned m_threads_wanted;
  const std::atomic<bool>* m_stop;
  // At the limit: nothing is read ahead (until the walk sees the disk).
  std::atomic<unsigned> m_cached_in_a_row;
  ColdEvidence m_evidence; // the walk's thread only
  std::mutex m_mu;
  std::condition_variable m_work;
  std::deque<std::pair<std::shared_ptr<const Fd>, std::string>> m_queue;
  bool m_quit = false;
  bool m_no_threads = false; // none could be started
  std::vector<std::thread> m_threads;
};

// The walk's state: a stack of open directories (depth-first without recursion, so a deep
// tree cannot overflow the call stack) and the directories already entered.
class Walker
{
public:
  Walker(const WalkVisit& visit, const WalkProblem& problem, const WalkOptions& opts)
    : m_visit(visit)
    , m_problem(problem)
    , m_opts(opts)
  {
    if (opts.prefetch_threads > 0) {
      m_prefetch.emplace(opts.prefetch_threads, opts.prefetch_from_start, opts.stop);
    }
  }
  void run(const std::string& root);
  void run_dir(std::shared_ptr<const Fd> root, const std::string& path);

private:
  struct Frame
  {
    std::string path;
    std::string relpath; // below the root; "" for the root
    unsigned depth;
    std::shared_ptr<const Fd> dir; // shared with the entries kept (WalkEntry::keep)
    // Streamed mode only: a sorted frame read its directory whole and holds no 32 KiB buffer
    // (a deep tree keeps one frame per level).
    std::optional<DirReader> entries;
    // WalkOptions::sorted: the whole directory, in name order, and the next one to visit.
    std::vector<std::pair<std::string, unsigned char>> listed;
    size_t next = 0;
    // WalkOptions::sorted: the error that cut the reading short (0: none), reported once what
    // was read has been visited, where the streamed mode reports it too.
    int listing_errno = 0;
  };
  // `opened`: the directory's number in the order the walk opened them (the root: 0).
  void enter(std::shared_ptr<const Fd> fd, const std::string& path, const std::string& relpath,
             unsigned depth, uint64_t opened);
  void step();
  // The next entry of the top directory: false at its end. `name` is NUL-terminated.
  bool next_entry(Frame& top, std::string_view& name, unsigned char& type);
  bool stopped() const { return m_opts.stop && m_opts.stop->load(std::memory_order_relaxed); }
  // Notes a subdirectory of the directory being listed for reading ahead, if the walk will
  // enter it (not "." or "..", not past max_depth) and the tree is cold; `depth` is the
  // directory's. flush_prefetch() hands them over once the buffer they came in is read.
  void note_subdir(const char* name, unsigned char type, unsigned depth)
  {
    if (type == DT_DIR && depth + 1 <= m_opts.max_depth && m_prefetch->active() &&
        std::strcmp(name, ".") != 0 && std::strcmp(name, "..") != 0) {
      m_subdirs.emplace_back(name);
    }
  }
  void flush_prefetch(const std::shared_ptr<const Fd>& dir)
  {
    if (m_prefetch && !m_subdirs.empty()) {
      m_prefetch->add(dir, m_subdirs);
    }
  }

  const WalkVisit& m_visit;
  const WalkProblem& m_problem;
  const WalkOptions& m_opts;
  std::shared_ptr<const Fd> m_root; // kept open for FileRef::open after the walk
  std::set<std::pair<dev_t, ino_t>> m_seen;
  std::vector<Frame> m_stack;
  std::vector<std::string> m_subdirs; // noted for reading ahead, not yet handed over
  uint64_t m_opened = 0;              // directories the walk opened below its root
  // Declared last: destroyed (its threads joined) first, before anything they might read.
  std::optional<DirPrefetch> m_prefetch;
};

void Walker::run(const std::string& root)
{
  // The root path is resolved once, here. Not following a symlink at the root itself keeps
  // today's rule: callers that follow a named symlink (find -H) resolve it before calling.
  Fd rfd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (rfd) {
    run_dir(std::make_shared<const Fd>(std::move(rfd)), root);
    return;
  }
  if (errno != ENOTDIR && errno != ELOOP) {
    m_problem(root, errno_text(errno));
    return;
  }
  // Not a directory: visited itself, relative to its parent's fd so that open_regular still
  // works by (dirfd, name).
  const std::string parent = parent_dir(root);
  std::string name = base_name(root);
  auto pfd = std::make_shared<const Fd>(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!*pfd) {
    m_problem(root, errno_text(errno));
    return;
  }
  struct stat st = {};
  if (::fstatat(pfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    m_problem(root, errno_text(errno));
    return;
  }
  WalkEntry e(pfd->get(), name, root, dtype_of(st.st_mode), 0, pfd, name);
  if (!stopped()) {
    m_visit(e);
  }
}

void Walker::run_dir(std::shared_ptr<const Fd> root, const std::string& path)
{
  m_root = std::move(root); // kept open after the walk, for FileRefs
  enter(m_root, path, "", 0, 0);
  while (!m_stack.empty() && !stopped()) {
    step();
  }
}

void Walker::enter(std::shared_ptr<const Fd> fd, const std::string& path,
                   const std::string& relpath, unsigned depth, uint64_t opened)
{
  struct stat st = {};
  if (!fd || !*fd || ::fstat(fd->get(), &st) < 0) {
    m_problem(path, fd && *fd ? errno_text(errno) : "not an open directory: not walked");
    return;
  }
  if (!m_seen.insert({st.st_dev, st.st_ino}).second) {
    return; // entered already (a bind mount of a directory above): once is enough
  }
  Frame frame{path, relpath, depth, std::move(fd), std::nullopt, {}, 0, 0};
  if (m_opts.sorted) {
    const DiskReadWatch watch(m_prefetch.has_value());
    DirReader reader(frame.dir->get());
    while (const struct dirent64* ent = reader.next()) {
      frame.listed.emplace_back(ent->d_name, ent->d_type);
    }
    frame.listing_errno = errno;
    std::sort(frame.listed.begin(), frame.listed.end());
    if (m_prefetch) {
      if (watch.read_disk()) {
        m_prefetch->walk_read_disk(opened, m_opened);
      }
      for (const auto& [name, type] : frame.listed) {
        note_subdir(name.c_str(), type, depth);
      }
      flush_prefetch(frame.dir);
    }
  } else if (m_prefetch) {
    frame.entries.emplace(frame.dir->get(),
                          [this, depth, opened](const struct dirent64& e, bool from_disk) {
                            if (from_disk) {
                              m_prefetch->walk_read_disk(opened, m_opened);
                            }
                            note_subdir(e.d_name, e.d_type, depth);
                          });
  } else {
    frame.entries.emplace(frame.dir->get());
  }
  m_stack.push_back(std::move(frame));
}

bool Walker::next_entry(Frame& top, std::string_view& name, unsigned char& type)
{
  if (m_opts.sorted) {
    if (top.next == top.listed.size()) {
      if (top.listing_errno != 0) {
        m_problem(top.path, errno_text(top.listing_errno));
      }
      return false;
    }
    const auto& [n, t] = top.listed[top.next++];
    name = n; // std::string's buffer: NUL-terminated
    type = t;
    return true;
  }
  const struct dirent64* ent = top.entries->next();
  if (!ent) {
    if (errno != 0) {
      m_problem(top.path, errno_text(errno));
    }
    return false;
  }
  name = ent->d_name;
  type = ent->d_type;
  return true;
}

void Walker::step()
{
  Frame& top = m_stack.back();
  std::string_view name;
  unsigned char type = DT_UNKNOWN;
  if (!next_entry(top, name, type)) {
    m_stack.pop_back();
    return;
  }
  flush_prefetch(top.dir); // what the buffer this entry came in noted
  if (name == "." || name == "..") {
    return;
  }
  const int dfd = top.dir->get();
  const unsigned depth = top.depth + 1;
  if (type == DT_UNKNOWN) {
    struct stat est = {};
    if (::fstatat(dfd, name.data(), &est, AT_SYMLINK_NOFOLLOW) < 0) {
      m_problem(join(top.path, name.data()), errno_text(errno));
      return;
    }
    type = dtype_of(est.st_mode);
  }
  if (type != DT_DIR || m_opts.visit_directories) {
    // The entry's paths are built only if the visit asks for them.
    WalkEntry e(dfd, name, top.path, top.relpath, type, depth, m_root, &top.dir);
    m_visit(e);
    if (type != DT_DIR) {
      return;
    }
  }
  const std::string path = join(top.path, name.data());
  if (depth > m_opts.max_depth) {
    m_problem(path, "deeper than " + std::to_string(m_opts.max_depth) + " levels: not walked");
    return;
  }
  // A directory swapped for a symlink since readdir fails here with ELOOP: reported, and
  // nothing outside the tree is listed.
  const uint64_t opened = ++m_opened;
  const DiskReadWatch watch(m_prefetch.has_value());
  auto sub = std::make_shared<const Fd>(openat_beneath(dfd, name.data(), O_RDONLY | O_DIRECTORY));
  const int open_errno = errno;
  if (watch.read_disk()) {
    m_prefetch->walk_read_disk(opened, opened); // its inode was not in memory
  }
  errno = open_errno;
  if (!*sub) {
    // A symlink in its place fails with ELOOP, or ENOTDIR (O_DIRECTORY is checked first on
    // a trailing symlink that is not followed).
    m_problem(path, errno == ELOOP || errno == ENOTDIR
                      ? "replaced by a symlink or a file since it was listed: not followed"
                      : errno_text(errno));
    return;
  }
  const std::string rel =
    top.relpath.empty() ? std::string(name) : top.relpath + "/" + std::string(name);
  // `top` may be invalidated by push_back inside enter(): nothing of it is used after.
  enter(std::move(sub), path, rel, depth, opened);
}

} // namespace

void walk_tree(const std::string& root, const WalkVisit& visit, const WalkProblem& problem,
               const WalkOptions& opts)
{
  Walker(visit, problem, opts).run(root);
}

void walk_tree(std::shared_ptr<const Fd> root_dir, const std::string& root_path,
               const WalkVisit& visit, const WalkProblem& problem, const WalkOptions& opts)
{
  Walker(visit, problem, opts).run_dir(std::move(root_dir), root_path);
}

void walk_named(const std::string& path, const WalkVisit& visit, const WalkProblem& problem,
                const WalkOptions& opts)
{
  NamedPath named = open_named(path);
  const Fd& opath = named.fd;
  struct stat st = {};
  if (!opath || ::fstat(opath.get(), &st) < 0) {
    problem(path, named.dangling ? "a symlink to nothing (dangling)"
                  : opath        ? errno_text(errno)
                                 : named.why);
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    // The directory the path resolved to, reopened through its O_PATH descriptor: that inode,
    // not the path again (and no /proc needed).
    auto dir =
      std::make_shared<const Fd>(::openat(opath.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!*dir) {
      problem(path, errno_text(errno));
      return;
    }
    walk_tree(std::move(dir), path, visit, problem, opts);
    return;
  }
  // A file, a FIFO, a device...: visited itself, as an entry of the directory the kernel's name
  // of what the path led to names (reopened with no symlink followed), and only if that entry
  // is that inode. Nothing is walked here: whatever the path leads to now, one entry with that
  // inode or nothing. Named through a symlink, it is shown by its target's name.
  const std::string canonical = path_of_fd(opath.get(), "");
  if (canonical.empty() || canonical.front() != '/') {
    problem(path, "what it names has no path (deleted, or in another mount namespace)");
    return;
  }
  const std::string name = base_name(canonical);
  auto pfd = std::make_shared<const Fd>(open_canonical_dir(parent_dir(canonical), O_RDONLY));
  struct stat now = {};
  if (!*pfd) {
    problem(path, errno_text(errno));
    return;
  }
  if (::fstatat(pfd->get(), name.c_str(), &now, AT_SYMLINK_NOFOLLOW) < 0 ||
      now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
    problem(path, (named.last_link ? "its target " : "") + canonical +
                    " was replaced since it was looked up: refused");
    return;
  }
  WalkEntry e(pfd->get(), name, named.last_link ? canonical : path, dtype_of(now.st_mode), 0, pfd,
              name);
  if (!(opts.stop && opts.stop->load(std::memory_order_relaxed))) {
    visit(e);
  }
}

namespace {
// A path's names; a trailing slash is a "." (what comes before it must be a directory).
std::deque<std::string> components_of(const std::string& path)
{
  std::deque<std::string> out;
  size_t pos = 0;
  while (pos <= path.size()) {
    const size_t end = std::min(path.find('/', pos), path.size());
    if (end > pos) {
      out.push_back(path.substr(pos, end - pos));
    }
    pos = end + 1;
  }
  if (!out.empty() && path.back() == '/') {
    out.push_back(".");
  }
  return out;
}

// Why the symlink `link` (fstat'ed as `st`) in directory `dir` is not followed; "" if it is.
std::string refused_link(int dir, const struct stat& st, const std::string& name)
{
  struct stat dst = {};
  if (::fstat(dir, &dst) < 0) {
    return "its directory cannot be examined: " + errno_text(errno);
  }
  const std::string in = path_of_fd(dir, ".");
  const std::string where = (in == "/" ? "" : in) + "/" + name;
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
    return "the symlink " + where + " belongs to uid " + std::to_string(st.st_uid) +
           ": not followed (another user's symlink could lead anywhere); name its target";
  }
  if (others_may_rename(dst)) {
    return "the symlink " + where + " is in a directory another user can change (owner uid " +
           std::to_string(dst.st_uid) +
           ((dst.st_mode & (S_IWGRP | S_IWOTH)) ? ", group or world writable" : "") +
           "): not followed; name its target";
  }
  return "";
}
} // namespace

NamedPath open_named(const std::string& path, bool follow_last)
{
  constexpr int k_max_links = 40; // the kernel's MAXSYMLINKS
  NamedPath out;
  auto fail = [&](int err, std::string why) {
    out.fd.reset();
    out.error = err;
    out.why = why.empty() ? errno_text(err) : std::move(why);
    return std::move(out);
  };
  if (path.empty()) {
    return fail(ENOENT, "");
  }
  std::deque<std::string> todo = components_of(path);
  Fd cur(::open(path.front() == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cur) {
    return fail(errno, "");
  }
  bool cur_is_dir = true;
  // The directories passed through to reach `cur`, by identity: a ".." must lead back to the one
  // it came from. The kernel's ".." is the directory's parent now, and a directory another user
  // owns can be moved elsewhere between two lookups (a review's race: m/a/../../x became
  // another directory's x, rewritten by set).
  std::vector<std::pair<dev_t, ino_t>> came_through;
  int links = 0;
  bool in_last_link = false; // resolving what the last component's symlink names
  bool crossed_magic = false;
  while (!todo.empty()) {
    const std::string name = std::move(todo.front());
    todo.pop_front();
    const bool last = todo.empty();
    if (!cur_is_dir) {
      return fail(ENOTDIR, ""); // "file/." or "file/x"
    }
    if (name == ".") {
      continue;
    }
    Fd next(::openat(cur.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat st = {};
    if (!next || ::fstat(next.get(), &st) < 0) {
      out.dangling = in_last_link && errno == ENOENT;
      return fail(errno, "");
    }
    if (name == "..") {
      if (!came_through.empty()) {
        if (came_through.back() != std::make_pair(st.st_dev, st.st_ino)) {
          return fail(ESTALE, "a directory on it was moved while it was looked up (\"..\" led "
                              "elsewhere): not followed");
        }
        came_through.pop_back();
      }
      cur = std::move(next); // at "/" (or above the start of a relative path): the kernel's
      continue;
    }
    // A symlink is followed when anything follows it, even "." (path_resolution(7)).
    if (S_ISLNK(st.st_mode) && (!last || follow_last)) {
      if (++links > k_max_links) {
        return fail(ELOOP, "");
      }
      std::string target(PATH_MAX, '\0');
      const ssize_t n = ::readlinkat(next.get(), "", target.data(), target.size());
      if (n < 0) {
        return fail(errno, "");
      }
      target.resize(static_cast<size_t>(n));
      if (last && !in_last_link) { // the named path's own, not a later link's
        out.last_link = target;
        in_last_link = true;
      }
      if (std::string why = refused_link(cur.get(), st, name); !why.empty()) {
        return fail(EPERM, std::move(why));
      }
      struct statfs sfs = {};
      if (::fstatfs(next.get(), &sfs) == 0 && sfs.f_type == PROC_SUPER_MAGIC) {
        // /proc/PID/root, cwd, fd/N: "magic" links whose text is no path in this namespace;
        // the kernel follows them to what they stand for (proc(5)).
        next.reset(::openat(cur.get(), name.c_str(), O_PATH | O_CLOEXEC));
        if (!next || ::fstat(next.get(), &st) < 0) {
          return fail(errno, "");
        }
        came_through.clear(); // somewhere else entirely: a ".." from there is the kernel's
        crossed_magic = true;
        cur_is_dir = S_ISDIR(st.st_mode);
        cur = std::move(next);
        continue;
      }
      auto more = components_of(target);
      todo.insert(todo.begin(), more.begin(), more.end());
      if (!target.empty() && target.front() == '/') {
        cur.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
        came_through.clear();
        if (!cur) {
          return fail(errno, "");
        }
      }
      continue;
    }
    struct stat cst = {};
    if (::fstat(cur.get(), &cst) < 0) {
      return fail(errno, "");
    }
    came_through.emplace_back(cst.st_dev, cst.st_ino);
    cur_is_dir = S_ISDIR(st.st_mode);
    if (cur_is_dir) {
      struct statfs fs = {};
      if (::fstatfs(next.get(), &fs) == 0 && fs.f_type == AUTOFS_SUPER_MAGIC) {
        // An automount point not mounted yet: an O_PATH lookup does not trigger it (no open
        // intent, path_resolution(7)); an open does, and gives the mounted directory.
        Fd mounted(::openat(cur.get(), name.c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        if (!mounted) {
          return fail(errno, "");
        }
        next = std::move(mounted);
      }
    }
    cur = std::move(next);
  }
  if (crossed_magic) {
    // Reached through /proc/PID/root or cwd: what the kernel names it must be it here too, or it
    // lies in another mount namespace (or chroot), where every later use by name would miss.
    struct stat got = {}, here = {};
    const std::string name = path_of_fd(cur.get(), "");
    if (::fstat(cur.get(), &got) < 0 || name.empty() || ::stat(name.c_str(), &here) < 0 ||
        got.st_dev != here.st_dev || got.st_ino != here.st_ino) {
      return fail(EXDEV, "reached through a /proc magic link into another mount namespace or "
                         "root: name it as this one sees it");
    }
  }
  out.fd = std::move(cur);
  return out;
}

Fd open_regular_at(const std::string& path, int flags, struct stat* st_out,
                   const std::pair<dev_t, ino_t>* expect)
{
  NamedPath named = open_named(path);
  if (!named.fd && named.error == EPERM) { // a symlink not followed: no "run as root" here
    throw Error(Errc::unsupported, named.why, path);
  }
  if (!named.fd) {
    throw Error(errc_from_errno(named.error), named.why, path, named.error);
  }
  const Fd& opath = named.fd;
  struct stat st = {};
  if (::fstat(opath.get(), &st) < 0) {
    throw_errno("fstat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(Errc::unsupported,
                std::string("not a regular file (it is ") + kind_of(st.st_mode) + "): not opened",
                path);
  }
  if (expect && (st.st_dev != expect->first || st.st_ino != expect->second)) {
    throw Error(Errc::unsupported, "replaced by another file since it was found: refused", path);
  }
  Fd fd = reopen_regular(opath, flags, st, path,
                         [&](int f) { return ::open(path.c_str(), f | O_CLOEXEC); });
  if (st_out) {
    ::fstat(fd.get(), st_out);
  }
  return fd;
}

Fd open_dir_beneath(int rootfd, const std::string& relpath)
{
  Fd fd(openat_beneath(rootfd, relpath, O_RDONLY | O_DIRECTORY));
  if (!fd) {
    throw_errno("open", relpath);
  }
  return fd;
}

} // namespace vmcsum::sys
