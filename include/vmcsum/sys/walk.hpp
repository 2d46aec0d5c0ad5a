// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <functional>
#include <string>
#include <utility>

#include <sys/stat.h>

namespace vmcsum::core {

// An entry met by walk_tree. Its lstat is fetched only when asked for: a walk that can decide
// from the name and the directory entry's type costs no more than find(1).
class WalkEntry
{
public:
  WalkEntry(int dirfd, const char* name, std::string path, unsigned char d_type)
    : m_dirfd(dirfd)
    , m_name(name)
    , m_path(std::move(path))
    , m_d_type(d_type)
  {
  }
  const std::string& path() const { return m_path; }
  const char* name() const { return m_name; }
  // DT_REG, DT_LNK, ... from readdir; DT_UNKNOWN when the filesystem does not say.
  unsigned char d_type() const { return m_d_type; }
  // lstat of the entry (cached); nullptr when it failed, with errno set.
  const struct stat* lstat();

private:
  int m_dirfd;
  const char* m_name;
  std::string m_path;
  unsigned char m_d_type;
  bool m_done = false;
  bool m_ok = false;
  struct stat m_st
  {
  };
};

// Walks the tree under `root` (root itself included) without following symlinks anywhere below
// it and without visiting a directory twice (bind mounts). `visit` gets every entry that is not
// a directory; `problem` gets "path, reason" for entries that could not be read. Directories
// are opened O_NOFOLLOW|O_DIRECTORY relative to their parent, so a symlink swapped in mid-walk
// is refused rather than followed.
void walk_tree(const std::string& root, const std::function<void(WalkEntry& entry)>& visit,
               const std::function<void(const std::string& path, const std::string& why)>& problem);

} // namespace vmcsum::core
