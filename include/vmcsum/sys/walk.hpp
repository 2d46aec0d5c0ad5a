// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The one way vmcsum walks a directory tree and opens what it finds there: by directory file
// descriptors, never by re-resolving a path string. A tree that someone else can write to may
// have a directory swapped for a symlink to /etc, or an image for a FIFO, between our listing
// and our open (issue 12); everything here opens relative to the parent's fd, refuses symlinks
// and checks that what it opened is the regular file the walk examined.
#pragma once

#include <vmcsum/sys/fd.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <dirent.h>
#include <sys/stat.h>

namespace vmcsum::sys {

// openat(2) of one name (or a relative path) below `dirfd` that never leaves it and never
// follows a symlink: openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS) (Linux
// 5.6+); where openat2 is missing (ENOSYS), openat(O_NOFOLLOW) component by component. O_CLOEXEC
// is added. Returns -1 with errno set (ELOOP: a symlink on the way; EXDEV: it would leave dirfd).
int openat_beneath(int dirfd, const std::string& relpath, int flags);

// A file found by a walk, to be opened later (after the walk has closed its directories): the
// walk's root directory fd, the path below it, and the inode the walk examined. open() resolves
// `relpath` below the root only (openat_beneath: no symlink, no "..") and keeps the result only
// if it is that same regular file, so a tree changed since the walk can refuse, never redirect.
struct FileRef
{
  std::shared_ptr<const Fd> root; // the walk's root directory (or the named file's parent)
  std::string relpath;            // below root
  std::string path;               // for display only
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  blkcnt_t blocks = 0;

  // O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC are added to `flags`. Throws Error naming `path`
  // (Errc::unsupported: not a regular file, or not the file the walk examined). `st` receives
  // the fstat of the opened file.
  Fd open(int flags, struct stat* st = nullptr) const;
};

// An entry met by walk_tree. Its lstat is fetched only when asked for, and its path strings are
// built only when asked for: a walk that can decide from the name and the directory entry's type
// costs no more than find(1) (two strings per entry were a tenth of an audit's walk).
class WalkEntry
{
public:
  // For the walker: `dir_path` and `dir_rel` (the directory's path, and its path below the
  // root), `root` and `dir` (the directory's shared descriptor, which keep() shares) are the
  // walk's and borrowed during the visit; so is `name`, the directory entry's (NUL-terminated).
  WalkEntry(int dirfd, std::string_view name, const std::string& dir_path,
            const std::string& dir_rel, unsigned char d_type, unsigned depth,
            const std::shared_ptr<const Fd>& root, const std::shared_ptr<const Fd>* dir)
    : m_dirfd(dirfd)
    , m_borrowed_name(name)
    , m_d_type(d_type)
    , m_depth(depth)
    , m_dir_path(&dir_path)
    , m_dir_rel(&dir_rel)
    , m_root_ref(&root)
    , m_dir_ref(dir)
  {
  }
  // An entry whose path and path below `root` are known (a walk's root that is a file).
  WalkEntry(int dirfd, std::string name, std::string path, unsigned char d_type, unsigned depth,
            std::shared_ptr<const Fd> root, std::string relpath)
    : m_dirfd(dirfd)
    , m_name(std::move(name))
    , m_d_type(d_type)
    , m_depth(depth)
    , m_path(std::move(path))
    , m_relpath(std::move(relpath))
    , m_root(std::move(root))
    , m_dir(m_root)
  {
  }
  // The open directory holding the entry; valid during the visit only (or as long as a kept
  // entry lives).
  int dirfd() const { return m_dirfd; }
  // The shared descriptor dirfd() is: one object for all the entries of one directory, so a
  // caller can tell them apart from another directory's (holding it keeps the number from
  // being reused).
  const std::shared_ptr<const Fd>& dir() const { return m_dir_ref ? *m_dir_ref : m_dir; }
  // Its name in its directory. Borrowed from the walk's buffer during a visit (no copy for each
  // of the entries a walk passes over by name), owned once kept.
  std::string_view name() const { return m_borrowed_name.data() ? m_borrowed_name : m_name; }
  // For display only: nothing in vmcsum opens this string again.
  const std::string& path() const;
  // DT_REG, DT_LNK, ... from readdir; DT_UNKNOWN when the filesystem does not say.
  unsigned char d_type() const { return m_d_type; }
  // 0 for the root, 1 for its entries, ...
  unsigned depth() const { return m_depth; }
  // The path of its directory below the walk's root ("" for the root itself).
  std::string dir_relpath() const;
  // fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW), cached; nullptr when it failed, with errno set.
  const struct stat* lstat();
  // Opens the entry relative to dirfd with O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC added to `flags`,
  // and keeps it only if fstat says it is a regular file with the st_dev/st_ino of lstat():
  // an entry swapped for a FIFO, a symlink, a directory or another file since the walk looked
  // at it is refused, never read (O_NONBLOCK: opening a FIFO cannot hang). Throws Error
  // (Errc::unsupported for a refused entry, else from errno) naming path(). `st`, when given,
  // receives the fstat of the opened file.
  Fd open_regular(int flags, struct stat* st = nullptr);
  // The entry as a FileRef to open after the walk (its lstat is taken now). Throws Error when
  // the entry cannot be stat'ed.
  FileRef ref();
  // The entry, still usable after the visit (by another thread too): it holds its directory's
  // descriptor (the walk's own, shared: it stays open while a kept entry holds it) and owns its
  // strings, so lstat() and open_regular() still go through (directory fd, name) and nothing is
  // resolved by path. Call during the visit.
  WalkEntry keep();

private:
  WalkEntry() = default;
  const std::string& relpath() const;
  const char* c_name() const
  {
    return m_borrowed_name.data() ? m_borrowed_name.data() : m_name.c_str();
  }

  int m_dirfd = -1;
  // NUL-terminated in either case (c_name()).
  std::string_view m_borrowed_name; // from the walk's directory buffer; empty: m_name is set
  std::string m_name;
  unsigned char m_d_type = DT_UNKNOWN;
  unsigned m_depth = 0;
  const std::string* m_dir_path = nullptr; // borrowed from the walk; nullptr: m_path is set
  const std::string* m_dir_rel = nullptr;
  mutable std::string m_path;
  mutable std::string m_relpath;
  const std::shared_ptr<const Fd>* m_root_ref = nullptr; // borrowed; nullptr: m_root is set
  const std::shared_ptr<const Fd>* m_dir_ref = nullptr;  // borrowed; nullptr: m_dir is set
  std::shared_ptr<const Fd> m_root;
  std::shared_ptr<const Fd> m_dir; // what keeps m_dirfd open in a kept entry
  bool m_done = false;
  bool m_ok = false;
  int m_errno = 0;
  struct stat m_st
  {
  };
};

struct WalkOptions
{
  // Directories deeper than this are reported to `problem` ("deeper than N levels") and not
  // entered: a tree made deep on purpose cannot exhaust file descriptors.
  unsigned max_depth = 128;
  // Polled before each directory entry: once it reads true the walk ends there (a stop signal:
  // sys/signals.hpp). No entry is visited after it was seen, and nothing more is reported (a
  // directory read whole whose reading had failed part-way included).
  const std::atomic<bool>* stop = nullptr;
  // Directories are visited too, each before what it holds; one the walk does not enter (too
  // deep, or it cannot be opened) is reported to `problem` right after its visit, before any
  // other visit. Off: only what is not a directory.
  bool visit_directories = false;
  // Each directory's entries in byte order of their names (read whole first, so a visit that
  // adds names to the directory does not see them). Off: in readdir's order, streamed. In
  // either mode a reading that fails part-way is reported to `problem`, with the directory's
  // path, after what was read before the error has been visited.
  bool sorted = false;
  // Threads that read ahead the subdirectories of each directory the walk enters (open them,
  // list their first entries, keep nothing), so that the walk finds them in memory: a cold tree
  // is read that many directories at a time where the walk alone reads one after the other.
  // Only while the tree is cold (the walk's own opens or listings of two recent directories
  // read a disk: src/sys/cold_evidence.hpp); a cached tree costs no thread. What is visited, and in
  // which order, is the same. 0: none.
  unsigned prefetch_threads = 0;
  // Read ahead from the first directory on, cold or not: for a caller that knows its tree is
  // cold, and for tests (a tree just written is in memory).
  bool prefetch_from_start = false;
};

using WalkVisit = std::function<void(WalkEntry& entry)>;
using WalkProblem = std::function<void(const std::string& path, const std::string& why)>;

// Walks the tree under `root` (root itself included) without following symlinks anywhere below
// it and without entering a directory twice (bind mounts). `visit` gets every entry that is not
// a directory (and the directories below the root, with `visit_directories`); `problem` gets "path,
// reason" for entries that could not be read. The root path is resolved once; a root that is not a
// directory is visited itself (relative to its parent directory's fd). Every directory below is
// opened relative to its parent's fd with openat_beneath, so a symlink swapped in mid-walk is
// refused rather than followed.
void walk_tree(const std::string& root, const WalkVisit& visit, const WalkProblem& problem,
               const WalkOptions& opts = {});
// The same below a directory the caller has open already (so that its path is not resolved a
// second time); `root_path` is for display. The walk shares `root_dir` with the entries kept.
// A null or closed `root_dir` is reported to `problem`, and nothing is visited.
void walk_tree(std::shared_ptr<const Fd> root_dir, const std::string& root_path,
               const WalkVisit& visit, const WalkProblem& problem, const WalkOptions& opts = {});

// walk_tree() of a path the user named on the command line: a symlink there is followed, once
// (like find -H), and never below it. The path is resolved once (open_named: O_PATH, no side
// effect on a FIFO or device): a directory is walked from that descriptor (reopened through
// openat(fd, "."): the same inode); anything else is visited itself, as the entry the kernel's
// name of it names in its directory (reopened with no symlink followed), and only if that entry
// is the inode the lookup found (else `problem`: replaced; nothing is visited then).
// `problem` gets the path as named for what is wrong with it (missing, a dangling symlink, no
// permission, another user's symlink).
void walk_named(const std::string& path, const WalkVisit& visit, const WalkProblem& problem,
                const WalkOptions& opts = {});

// What resolving a named path gave (open_named).
struct NamedPath
{
  Fd fd;                                // O_PATH, what the path names; empty on failure
  int error = 0;                        // errno of the failure; EPERM: a symlink not followed
  std::string why;                      // the failure in words (a refused symlink is named)
  std::optional<std::string> last_link; // the target of the path's last component, a symlink
  bool dangling = false;                // ... that leads to nothing
};

// Resolves a path named on the command line (or in a VM configuration) one component at a
// time, each looked at through O_PATH|O_NOFOLLOW (nothing is opened: a FIFO cannot block, a
// device cannot act). A symlink on the way is followed (the last component's only with
// `follow_last`) when root or this user owns it and the directory holding it is out of other
// users' hands (others_may_rename): a symlink another user controls could lead anywhere, and
// swapped in for a directory of theirs as root looks the path up, it turned `set` of a file in
// their tree into a rewrite of root's own image elsewhere (a security review's finding). The
// kernel's fs.protected_symlinks guards only sticky world-writable directories. A ".." must
// lead back to the directory it came from (ESTALE otherwise: one moved meanwhile); /proc's
// magic links (/proc/PID/root) are followed by the kernel, not by their text; a trailing slash
// asks for a directory. At most 40 symlinks (ELOOP), as the kernel.
NamedPath open_named(const std::string& path, bool follow_last = true);

// Opens a path the user named on the command line: a symlink there is followed, once (like
// find -H), and the result is refused unless it is a regular file. The file is first opened
// O_PATH (no side effect on a FIFO or device) and checked, then reopened through that
// descriptor, so the path is resolved exactly once. O_NONBLOCK|O_CLOEXEC are added. Throws
// Error naming `path` (Errc::unsupported: not a regular file). `st` receives its fstat.
// `expect`: the (st_dev, st_ino) it must be, checked before it is opened (an audit candidate
// found earlier): another file is refused unopened.
Fd open_regular_at(const std::string& path, int flags, struct stat* st = nullptr,
                   const std::pair<dev_t, ino_t>* expect = nullptr);

// The directory at `abs_dir`, an absolute path with no symlink in it (a canonical path: the
// kernel's name of a descriptor), resolved from "/" following no symlink anywhere
// (openat_beneath): a directory on it swapped for a symlink since is refused (ELOOP), never
// followed. O_DIRECTORY|O_CLOEXEC are added. -1 with errno on failure (EINVAL: not absolute).
int open_canonical_dir(const std::string& abs_dir, int flags);

// A directory below `rootfd`, by a relative path that may not leave it or cross a symlink
// (openat_beneath). Throws Error naming `relpath`.
Fd open_dir_beneath(int rootfd, const std::string& relpath);

} // namespace vmcsum::sys
