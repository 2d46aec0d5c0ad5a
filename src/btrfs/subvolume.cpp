// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/subvolume.hpp>
#include <vmcsum/error.hpp>

#include <cerrno>
#include <cstdlib>
#include <memory>

#include <btrfsutil.h>

namespace vmcsum::btrfs {

std::string subvolume_path(int fd, uint64_t id, const std::string& path)
{
  char* raw = nullptr;
  auto err = btrfs_util_subvolume_path_fd(fd, id, &raw);
  // libbtrfsutil leaves errno from the failing syscall next to its own error code.
  int saved = errno;
  std::unique_ptr<char, decltype(&std::free)> owned(raw, &std::free);
  if (err != BTRFS_UTIL_OK) {
    if (saved == 0) {
      saved = EIO;
    }
    throw Error(errc_from_errno(saved),
                std::string("btrfs_util_subvolume_path: ") + btrfs_util_strerror(err) + ": " +
                  errno_text(saved),
                path, saved);
  }
  return owned ? std::string(owned.get()) : std::string();
}

} // namespace vmcsum::btrfs
