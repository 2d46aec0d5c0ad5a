// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/sys/path.hpp>

#include <climits>
#include <cstdlib>
#include <memory>

#include <sys/stat.h>
#include <unistd.h>

namespace vmcsum::sys {

std::optional<std::string> resolved_path(const std::string& path)
{
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
  if (!real) {
    return std::nullopt;
  }
  return std::string(real.get());
}

std::string canonical_path(const std::string& path)
{
  return resolved_path(path).value_or(path);
}

std::string path_of_fd(int fd, const std::string& fallback)
{
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  char target[PATH_MAX];
  const ssize_t n = ::readlink(self.c_str(), target, sizeof target - 1);
  // Anon inodes ("pipe:[..]") are not paths; neither is an unlinked file's name, which the
  // kernel gives with " (deleted)" appended (d_path()): no link left is what tells it from a
  // file really named so.
  struct stat st = {};
  if (n <= 0 || target[0] != '/' || (::fstat(fd, &st) == 0 && st.st_nlink == 0)) {
    return fallback;
  }
  return std::string(target, static_cast<size_t>(n));
}

std::string parent_dir(const std::string& path)
{
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_name(const std::string& path)
{
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

} // namespace vmcsum::sys
