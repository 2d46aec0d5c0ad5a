// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "scratch.hpp"

#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/path.hpp>

#include <cerrno>
#include <climits>
#include <cstdlib>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vmcsum::core::detail {

ScratchFile ScratchFile::create(const std::string& dir, bool nocow)
{
  ScratchFile f;
  f.m_display = dir + "/(unnamed scratch file)";
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    // Kernels or filesystems without O_TMPFILE: a named file, unlinked before it is used.
    std::string tmpl = dir + "/.vmcsum-scratch.XXXXXX";
    fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd >= 0) {
      ::unlink(tmpl.c_str());
      if (::fcntl(fd, F_SETFL, O_DIRECT) < 0) {
        int err = errno;
        ::close(fd);
        throw_errno(err, "O_DIRECT", dir);
      }
    }
  }
  if (fd < 0) {
    throw_errno("create a scratch file", dir);
  }
  f.m_fd.reset(fd);
  struct stat st
  {
  };
  if (::fstat(fd, &st) < 0) {
    throw_errno("fstat", f.m_display);
  }
  f.m_ino = st.st_ino;
  uint32_t flags = btrfs::get_attr_flags(fd, f.m_display);
  uint32_t want = nocow ? (flags | FS_NOCOW_FL) : (flags & ~uint32_t(FS_NOCOW_FL));
  if (want != flags) {
    // btrfs_fileattr_set(): +C/-C only take effect while the file is empty, as it is here.
    btrfs::set_attr_flags(fd, want, f.m_display);
    flags = btrfs::get_attr_flags(fd, f.m_display);
  }
  f.m_nocow = (flags & FS_NOCOW_FL) != 0;
  return f;
}

std::string scratch_dir_of(const std::string& path)
{
  struct stat st
  {
  };
  if (::stat(path.c_str(), &st) < 0) {
    throw_errno("stat", path);
  }
  std::string p = sys::canonical_path(path);
  if (S_ISDIR(st.st_mode)) {
    return p;
  }
  auto slash = p.find_last_of('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : p.substr(0, slash);
}

uint64_t free_bytes(const std::string& dir)
{
  sys::Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  return fd ? sys::free_bytes(fd.get()).value_or(0) : 0;
}

} // namespace vmcsum::core::detail
