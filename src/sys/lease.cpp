// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/sys/lease.hpp>

#include <cerrno>

#include <fcntl.h>

namespace vmcsum::sys {

Lease::Lease(int fd)
  : m_fd(fd)
{
  if (::fcntl(fd, F_SETLEASE, F_WRLCK) == 0) {
    m_active = true;
  } else {
    m_errno = errno;
  }
}

Lease::~Lease()
{
  release();
}

bool Lease::broken() const
{
  return m_active && ::fcntl(m_fd, F_GETLEASE) != F_WRLCK;
}

void Lease::release()
{
  if (m_active) {
    ::fcntl(m_fd, F_SETLEASE, F_UNLCK);
    m_active = false;
  }
}

IgnoreSigio::IgnoreSigio()
{
  struct sigaction ign = {};
  ign.sa_handler = SIG_IGN;
  ::sigemptyset(&ign.sa_mask);
  ::sigaction(SIGIO, &ign, &m_old);
}

IgnoreSigio::~IgnoreSigio()
{
  ::sigaction(SIGIO, &m_old, nullptr);
}

} // namespace vmcsum::sys
