// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>
#include <vmcsum/sys/fd.hpp>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace vmcsum::sys {

void Fd::reset(int fd)
{
  if (m_fd >= 0) {
    ::close(m_fd);
  }
  m_fd = fd;
}

Fd open_or_throw(const std::string& path, int flags, unsigned mode)
{
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    throw_errno("open", path);
  }
  return Fd(fd);
}

Fd openat_or_throw(int dirfd, const std::string& name, int flags, const std::string& display_path,
                   unsigned mode)
{
  int fd = ::openat(dirfd, name.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    throw_errno("open", display_path);
  }
  return Fd(fd);
}

Fd reopen_fd(int fd, int flags)
{
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  return Fd(::open(self.c_str(), flags | O_NONBLOCK | O_CLOEXEC));
}

void ioctl_or_throw(int fd, unsigned long request, void* arg, const char* op,
                    const std::string& path)
{
  if (::ioctl(fd, request, arg) < 0) {
    throw_errno(op, path);
  }
}

int pwrite_full(int fd, const void* buf, size_t len, uint64_t off)
{
  const auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno;
    }
    p += n;
    len -= static_cast<size_t>(n);
    off += static_cast<uint64_t>(n);
  }
  return 0;
}

} // namespace vmcsum::sys
