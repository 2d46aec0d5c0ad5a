// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>
#include <vmcsum/sys/durable_file.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/temp_file.hpp>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vmcsum::sys {

namespace {
// Every directory above `dir`, on the path as given and on the path it resolves to, must be
// out of other users' hands: one who may rename an entry of an ancestor can move the private
// directory away and put their own in its place (the backups --undo needs gone, a record of
// theirs read). A symlink on the way is judged by the directory holding it.
void check_ancestors(const std::string& dir)
{
  std::vector<std::string> paths = {dir};
  // The resolved chain too (a path with a symlink or ".."): of the deepest part that exists
  // yet, for a directory about to be made (a root-owned symlink into another user's tree).
  std::string probe = dir;
  std::string rest;
  while (!probe.empty()) {
    if (char* real = ::realpath(probe.c_str(), nullptr)) {
      const std::string resolved = std::string(real) + rest;
      std::free(real);
      if (resolved != dir) {
        paths.push_back(resolved);
      }
      break;
    }
    const auto slash = probe.find_last_of('/');
    if (slash == std::string::npos || slash == 0) {
      break;
    }
    rest = probe.substr(slash) + rest;
    probe.resize(slash);
  }
  for (const auto& p : paths) {
    if (p.empty() || p.front() != '/') {
      continue; // a relative path: the state directory must be absolute (cli), backups too
    }
    for (size_t slash = p.find_last_of('/'); slash != std::string::npos && slash > 0;
         slash = p.find_last_of('/', slash - 1)) {
      const std::string up = p.substr(0, slash);
      struct stat st = {};
      // Another user's symlink on the way leads where they choose, and can be swapped between
      // two lookups (mallory's /tmp/x: root's state directory made in her directory).
      if (::lstat(up.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && st.st_uid != 0 &&
          st.st_uid != ::geteuid()) {
        throw Error(Errc::permission,
                    "refusing a directory below the symlink " + up + " of uid " +
                      std::to_string(st.st_uid) +
                      ": another user could change where it leads; name its target",
                    dir);
      }
      if (::stat(up.c_str(), &st) < 0) {
        throw_errno(Errc::io, errno, "stat", up);
      }
      if (others_may_rename(st)) {
        throw Error(Errc::permission,
                    "refusing a directory below " + up + " (owner uid " +
                      std::to_string(st.st_uid) +
                      (st.st_mode & (S_IWGRP | S_IWOTH) ? ", group or world writable" : "") +
                      "): another user could replace it; choose one whose parents only root "
                      "can change",
                    dir);
      }
    }
  }
}

void check_private(const std::string& dir)
{
  struct stat st = {};
  if (::lstat(dir.c_str(), &st) < 0) {
    throw_errno(Errc::io, errno, "stat", dir);
  }
  if (!S_ISDIR(st.st_mode)) {
    throw Error(Errc::permission, "not a directory", dir);
  }
  if (st.st_uid != ::geteuid()) {
    throw Error(Errc::permission,
                "refusing a state directory owned by uid " + std::to_string(st.st_uid) +
                  ", not by this user: run vmcsum as its owner" +
                  (st.st_uid == 0 ? " (root)" : "") + ", or name another with --state-dir",
                dir);
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    throw Error(Errc::permission,
                "refusing a state directory that others may write (group or world writable): "
                "chmod go-w it",
                dir);
  }
  check_ancestors(dir);
}
} // namespace

bool others_may_rename(const struct stat& st)
{
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
    return true;
  }
  return (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0;
}

void ensure_private_dir(const std::string& dir)
{
  if (dir.empty()) {
    throw Error(Errc::usage, "empty state directory");
  }
  struct stat st = {};
  if (::lstat(dir.c_str(), &st) == 0) {
    check_private(dir);
    return;
  }
  if (errno != ENOENT) {
    throw_errno(Errc::io, errno, "stat", dir);
  }
  const auto slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string parent = dir.substr(0, slash);
    struct stat pst = {};
    if (::lstat(parent.c_str(), &pst) < 0) {
      ensure_private_dir(parent);
    }
  }
  // Its parents judged before it is made: a state directory refused is not left behind in a
  // directory another user controls.
  check_ancestors(dir);
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) {
    throw_errno(errno == EACCES || errno == EPERM || errno == EROFS ? Errc::permission : Errc::io,
                errno, "mkdir", dir);
  }
  check_private(dir);
  // What it holds is vmcsum's alone: no ACL inherited from the parent's default one, for it
  // and, through its own default ACL, for every file made in it.
  Fd made(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (made) {
    drop_inherited_acl(*made, dir);
  }
}

void replace_file_atomically(const std::string& dir, const std::string& name,
                             std::string_view content, unsigned mode)
{
  const std::string final_path = dir + "/" + name;
  std::string tmpl = dir + "/." + name + ".tmp-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  Fd fd(::mkostemp(buf.data(), O_CLOEXEC));
  if (!fd) {
    throw_errno(Errc::io, errno, "create a temp file", tmpl);
  }
  const std::string tmp(buf.data());
  auto fail = [&](const char* what) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw_errno(Errc::io, e, what, tmp);
  };
  // Before it holds anything: the ACL a default one gave it (backup directories are the
  // user's) goes, the file has only `mode`.
  try {
    drop_inherited_acl(*fd, tmp);
  } catch (const Error&) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (::fchmod(*fd, mode) < 0) {
    fail("fchmod");
  }
  if (pwrite_full(*fd, content.data(), content.size(), 0) < 0) {
    fail("write");
  }
  if (::fsync(*fd) < 0) {
    fail("fsync");
  }
  if (::rename(tmp.c_str(), final_path.c_str()) < 0) {
    fail("rename");
  }
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd) {
    ::fsync(*dfd);
  }
}

Fd lock_exclusive(const std::string& path)
{
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) {
    throw_errno(Errc::io, errno, "open", path);
  }
  drop_inherited_acl(*fd, path); // vmcsum's alone, as every file it keeps
  while (::flock(*fd, LOCK_EX) < 0) {
    if (errno != EINTR) {
      throw_errno(Errc::io, errno, "flock", path);
    }
  }
  return fd;
}

void replace_file_durably(const std::string& dir, const std::string& name, std::string_view content)
{
  ensure_private_dir(dir);
  replace_file_atomically(dir, name, content, 0600);
}

std::optional<std::string> read_small_file(const std::string& path, size_t max_bytes,
                                           bool follow_symlinks)
{
  Fd fd(
    ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | (follow_symlinks ? 0 : O_NOFOLLOW)));
  if (!fd) {
    if (errno == ENOENT) {
      return std::nullopt;
    }
    throw_errno(errno == EACCES ? Errc::permission : Errc::io, errno, "open", path);
  }
  struct stat st = {};
  if (::fstat(*fd, &st) < 0) {
    throw_errno(Errc::io, errno, "fstat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(Errc::unsupported, "not a regular file", path);
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    throw Error(Errc::unsupported,
                "larger than " + std::to_string(max_bytes) + " bytes, the most vmcsum reads here",
                path);
  }
  return read_fd_limited(*fd, max_bytes, path);
}

std::string read_fd_limited(int fd, size_t max_bytes, const std::string& what)
{
  std::string out;
  size_t got = 0;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      throw_errno(Errc::io, errno, "read", what);
    }
    if (n == 0) {
      break;
    }
    got += static_cast<size_t>(n);
    if (got > max_bytes) {
      throw Error(Errc::unsupported,
                  "larger than " + std::to_string(max_bytes) + " bytes, the most vmcsum reads here",
                  what);
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

} // namespace vmcsum::sys
