// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// A write lease: how set and repair notice that someone opened an image while they work on it.
#pragma once

#include <signal.h>

namespace vmcsum::sys {

// A write lease on fd: only granted while nobody else has the file open (this process must
// hold no other descriptor of it either), and broken as soon as anyone opens it (their open()
// then waits for us, at most /proc/sys/fs/lease-break-time). The kernel signals a break with
// SIGIO: hold an IgnoreSigio meanwhile. broken() polls F_GETLEASE.
class Lease
{
public:
  explicit Lease(int fd);
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  bool active() const { return m_active; }
  int error() const { return m_errno; }
  bool broken() const;
  void release();

private:
  int m_fd;
  bool m_active = false;
  int m_errno = 0;
};

// Ignores SIGIO (lease breaks) while alive, restoring the previous action afterwards.
class IgnoreSigio
{
public:
  IgnoreSigio();
  ~IgnoreSigio();
  IgnoreSigio(const IgnoreSigio&) = delete;
  IgnoreSigio& operator=(const IgnoreSigio&) = delete;

private:
  struct sigaction m_old = {};
};

} // namespace vmcsum::sys
