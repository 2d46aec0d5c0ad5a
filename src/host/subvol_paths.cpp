// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/backref.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/btrfs/subvolume.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/subvol_paths.hpp>
#include <vmcsum/sys/mount_table.hpp>

#include <filesystem>

#include <fcntl.h>

namespace vmcsum::core {

namespace {

std::string base(const std::string& p)
{
  auto s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::optional<std::string> first_path(int fd, uint64_t ino, const std::string& where)
{
  try {
    auto names = btrfs::inode_paths(fd, ino, where, 1);
    if (!names.empty()) {
      return names.front();
    }
  } catch (const Error&) {
    // not resolvable through this fd
  }
  return std::nullopt;
}

} // namespace

std::vector<MountedSubvol> btrfs_mounts(const std::string& mountinfo)
{
  std::vector<MountedSubvol> out;
  for (const auto& m : sys::MountTable(mountinfo).of_type("btrfs")) {
    try {
      MountedSubvol s;
      s.target = m.target;
      s.fd = std::make_shared<sys::Fd>(
        sys::open_or_throw(m.target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
      s.root = btrfs::subvolume_id(s.fd->get(), m.target);
      s.devices.push_back(base(m.source));
      auto info = btrfs::fs_info(s.fd->get(), m.target);
      s.fsid = info.fsid;
      for (const auto& d : btrfs::dev_infos(s.fd->get(), info, m.target)) {
        s.devices.push_back(base(d.path));
      }
      out.push_back(std::move(s));
    } catch (const Error&) {
      // unreachable mount point: what only it shows stays unresolved
    }
  }
  return out;
}

std::optional<std::string> inode_path(const std::vector<MountedSubvol>& mounts, uint64_t root,
                                      uint64_t ino,
                                      const std::function<bool(const MountedSubvol&)>& accept)
{
  for (const auto& m : mounts) {
    if (m.root == root && accept(m)) {
      if (auto p = first_path(m.fd->get(), ino, m.target)) {
        return (std::filesystem::path(m.target) / *p).lexically_normal().string();
      }
    }
  }
  // A subvolume not mounted by itself: its directory below a mounted ancestor subvolume.
  for (const auto& m : mounts) {
    if (m.root == root || !accept(m)) {
      continue;
    }
    try {
      const std::string sub = btrfs::subvolume_path(m.fd->get(), root, m.target);
      const std::string mine = btrfs::subvolume_path(m.fd->get(), m.root, m.target);
      if (!mine.empty() && sub.compare(0, mine.size() + 1, mine + "/") != 0) {
        continue;
      }
      const auto dir =
        std::filesystem::path(m.target) / sub.substr(mine.empty() ? 0 : mine.size() + 1);
      sys::Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd || btrfs::subvolume_id(fd.get(), dir.string()) != root) {
        continue;
      }
      if (auto p = first_path(fd.get(), ino, dir.string())) {
        return (dir / *p).lexically_normal().string();
      }
    } catch (const Error&) {
      // not below this mount, or not root: try the next one
    }
  }
  return std::nullopt;
}

} // namespace vmcsum::core
