// SPDX-License-Identifier: GPL-2.0-or-later
// A read of the disk by the calling thread, and the thread's count of them (ru_inblock): for the
// tests of what tells a cold tree from a cached one (sys::DiskReadWatch and its users).
#pragma once

#include <vmcsum/sys/fd.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <string>
#include <vector>

inline long thread_inblock()
{
  struct rusage ru = {};
  REQUIRE(::getrusage(RUSAGE_THREAD, &ru) == 0);
  return ru.ru_inblock;
}

// Reads the first `bytes` of `path` (written and synced first) after dropping it from the page
// cache: a read of the disk by this thread where the file lies on one (not on tmpfs).
inline void read_from_disk(const std::string& path, size_t bytes)
{
  const vmcsum::sys::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd);
  REQUIRE(::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED) == 0);
  std::vector<char> buf(bytes);
  REQUIRE(::pread(fd.get(), buf.data(), buf.size(), 0) == static_cast<ssize_t>(buf.size()));
}
