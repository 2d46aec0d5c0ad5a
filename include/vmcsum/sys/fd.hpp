// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <cstddef>
#include <cstdint>

#include <string>
#include <utility>

namespace vmcsum::sys {

// Owns a file descriptor; move-only. The only place in vmcsum that calls close().
class Fd
{
public:
  Fd() = default;
  explicit Fd(int fd)
    : m_fd(fd)
  {
  }
  Fd(Fd&& other) noexcept
    : m_fd(std::exchange(other.m_fd, -1))
  {
  }
  Fd& operator=(Fd&& other) noexcept
  {
    if (this != &other) {
      reset(std::exchange(other.m_fd, -1));
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return m_fd; }
  int operator*() const { return m_fd; }
  explicit operator bool() const { return m_fd >= 0; }
  // Closes the current descriptor (errors ignored: nothing useful can be done) and adopts fd.
  void reset(int fd = -1);
  int release() { return std::exchange(m_fd, -1); }

private:
  int m_fd = -1;
};

// open(2) with O_CLOEXEC always added. Throws Error naming the path on failure.
Fd open_or_throw(const std::string& path, int flags, unsigned mode = 0);
// openat(2) with O_CLOEXEC always added. Throws Error naming `display_path` on failure.
Fd openat_or_throw(int dirfd, const std::string& name, int flags, const std::string& display_path,
                   unsigned mode = 0);

// The inode `fd` names (an O_PATH descriptor will do) opened anew with `flags`, through its
// /proc/self/fd magic link: that very inode, never a name resolved again (proc(5)). O_NONBLOCK
// and O_CLOEXEC are always added: a FIFO or device never blocks the open, and an open for
// writing of a file another process holds a lease on fails at once with EWOULDBLOCK instead of
// waiting out /proc/sys/fs/lease-break-time (fcntl(2), "Leases"). An empty Fd and errno on
// failure (ENOENT: /proc is not mounted). The caller checks what it got (fstat): a descriptor
// that is not O_PATH may be of anything.
Fd reopen_fd(int fd, int flags);

// ioctl(2) that throws Error{op: strerror} naming the path.
void ioctl_or_throw(int fd, unsigned long request, void* arg, const char* op,
                    const std::string& path);

// pwrite(2) of all `len` bytes at `off`, retried after EINTR and short writes. Returns 0, or
// the errno of the failing call (callers word the error for their own context).
int pwrite_full(int fd, const void* buf, size_t len, uint64_t off);

} // namespace vmcsum::sys
