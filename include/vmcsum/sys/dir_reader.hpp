// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The entries of an open directory, read with getdents64(2) into a buffer of our own, for the
// directories vmcsum lists by the thousand (a walked tree, /proc and its fd directories).
// readdir(3) needs fdopendir, which costs an fstat and two fcntl per directory and takes the
// descriptor over: on audit's walk of 100k files those were five calls a directory on the
// walking thread, and every process /proc lists has an fd directory.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include <dirent.h>

namespace vmcsum::sys {

class DirReader
{
public:
  // 32 KiB, as glibc's readdir reads (sysdeps/unix/sysv/linux/opendir.c: 4 * BUFSIZ).
  static constexpr size_t buffer_size = 32 * 1024;

  // Called with each entry as the buffer holding it is read, before next() returns any of
  // them, and whether reading that buffer read a disk (DiskReadWatch: the
  // directory was not cached). A walk uses it to start reading the subdirectories it will enter
  // while it visits the rest.
  using OnRead = std::function<void(const struct dirent64& entry, bool from_disk)>;

  // `fd`: an open directory, borrowed (it must outlive the reader).
  explicit DirReader(int fd, OnRead on_read = {});
  // The next entry ("." and ".." too), or nullptr: at the end with errno 0, on an error with
  // errno set.
  const struct dirent64* next();

private:
  int m_fd;
  OnRead m_on_read;
  std::unique_ptr<char[]> m_buf;
  size_t m_pos = 0;
  size_t m_len = 0;
};

} // namespace vmcsum::sys
