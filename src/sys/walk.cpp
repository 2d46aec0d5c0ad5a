// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>
#include <vmcsum/sys/walk.hpp>

#include <cerrno>
#include <cstring>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

namespace vmcsum::core {

namespace {
struct DirCloser
{
  void operator()(DIR* d) const { ::closedir(d); }
};

std::string join(const std::string& dir, const char* name)
{
  return dir == "/" ? "/" + std::string(name) : dir + "/" + name;
}

unsigned char dtype_of(mode_t mode)
{
  return static_cast<unsigned char>(IFTODT(mode));
}
} // namespace

const struct stat* WalkEntry::lstat()
{
  if (!m_done) {
    m_done = true;
    m_ok = ::fstatat(m_dirfd, m_name, &m_st, AT_SYMLINK_NOFOLLOW) == 0;
  }
  return m_ok ? &m_st : nullptr;
}

void walk_tree(const std::string& root, const std::function<void(WalkEntry&)>& visit,
               const std::function<void(const std::string&, const std::string&)>& problem)
{
  struct stat st = {};
  if (::lstat(root.c_str(), &st) < 0) {
    problem(root, errno_text(errno));
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    WalkEntry e(AT_FDCWD, root.c_str(), root, dtype_of(st.st_mode));
    visit(e);
    return;
  }
  std::set<std::pair<dev_t, ino_t>> seen;
  // Depth-first with an explicit stack of open directories, so deep trees cannot overflow
  // the call stack; each entry owns its fd until the directory is read through.
  struct Frame
  {
    std::string path;
    std::unique_ptr<DIR, DirCloser> dir;
  };
  std::vector<Frame> stack;
  auto enter = [&](int parent_fd, const char* name, const std::string& path) {
    int fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      problem(path, errno_text(errno));
      return;
    }
    struct stat dst = {};
    if (::fstat(fd, &dst) < 0 || !seen.insert({dst.st_dev, dst.st_ino}).second) {
      ::close(fd);
      return;
    }
    DIR* d = ::fdopendir(fd);
    if (!d) {
      problem(path, errno_text(errno));
      ::close(fd);
      return;
    }
    stack.push_back({path, std::unique_ptr<DIR, DirCloser>(d)});
  };
  enter(AT_FDCWD, root.c_str(), root);
  while (!stack.empty()) {
    Frame& top = stack.back();
    errno = 0;
    dirent* ent = ::readdir(top.dir.get());
    if (!ent) {
      if (errno != 0) {
        problem(top.path, errno_text(errno));
      }
      stack.pop_back();
      continue;
    }
    if (std::strcmp(ent->d_name, ".") == 0 || std::strcmp(ent->d_name, "..") == 0) {
      continue;
    }
    std::string path = join(top.path, ent->d_name);
    int dfd = ::dirfd(top.dir.get());
    unsigned char type = ent->d_type;
    if (type == DT_UNKNOWN) {
      struct stat est = {};
      if (::fstatat(dfd, ent->d_name, &est, AT_SYMLINK_NOFOLLOW) < 0) {
        problem(path, errno_text(errno));
        continue;
      }
      type = dtype_of(est.st_mode);
    }
    if (type == DT_DIR) {
      // `top` may be invalidated by push_back; copy what enter() needs first.
      std::string name = ent->d_name;
      enter(dfd, name.c_str(), path);
    } else {
      WalkEntry e(dfd, ent->d_name, std::move(path), type);
      visit(e);
    }
  }
}

} // namespace vmcsum::core
