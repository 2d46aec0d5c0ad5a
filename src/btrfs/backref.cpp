// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/backref.hpp>
#include <vmcsum/error.hpp>

#include <cstring>
#include <memory>

#include <linux/btrfs.h>
#include <sys/ioctl.h>

namespace vmcsum::btrfs {

std::vector<ExtentRef> extent_refs(int fd, uint64_t logical, const std::string& path, size_t max)
{
  // Three u64 per reference after the btrfs_data_container header; the kernel caps the buffer
  // at 16 MiB for V2.
  const size_t size = std::min<size_t>(sizeof(btrfs_data_container) + max * 24, 16u << 20);
  auto buf = std::make_unique<uint64_t[]>((size + 7) / 8);
  btrfs_ioctl_logical_ino_args args = {};
  args.logical = logical;
  args.size = size;
  args.flags = BTRFS_LOGICAL_INO_ARGS_IGNORE_OFFSET;
  args.inodes = reinterpret_cast<uintptr_t>(buf.get());
  if (::ioctl(fd, BTRFS_IOC_LOGICAL_INO_V2, &args) < 0) {
    if (errno == ENOENT) {
      return {};
    }
    throw_errno("BTRFS_IOC_LOGICAL_INO_V2", path);
  }
  const auto* dc = reinterpret_cast<const btrfs_data_container*>(buf.get());
  std::vector<ExtentRef> out;
  // val[] holds (inode, offset, root) triples (fs/btrfs/backref.c build_data_container()).
  for (uint32_t i = 0; i + 2 < dc->elem_cnt; i += 3) {
    out.push_back({dc->val[i + 2], dc->val[i], dc->val[i + 1]});
  }
  return out;
}

std::vector<std::string> inode_paths(int fd, uint64_t ino, const std::string& path, size_t max)
{
  constexpr size_t size = 16384;
  auto buf = std::make_unique<uint64_t[]>(size / 8);
  btrfs_ioctl_ino_path_args args = {};
  args.inum = ino;
  args.size = size;
  args.fspath = reinterpret_cast<uintptr_t>(buf.get());
  if (::ioctl(fd, BTRFS_IOC_INO_PATHS, &args) < 0) {
    if (errno == ENOENT) {
      return {};
    }
    throw_errno("BTRFS_IOC_INO_PATHS", path);
  }
  const auto* dc = reinterpret_cast<const btrfs_data_container*>(buf.get());
  const char* base = reinterpret_cast<const char*>(dc->val);
  const char* end = reinterpret_cast<const char*>(buf.get()) + size;
  std::vector<std::string> out;
  // val[i] is the offset of the i-th name from &val[0] (fs/btrfs/backref.c inode_to_path()).
  for (uint32_t i = 0; i < dc->elem_cnt && out.size() < max; ++i) {
    const char* p = base + dc->val[i];
    if (p < base || p >= end) {
      break;
    }
    out.emplace_back(p, strnlen(p, static_cast<size_t>(end - p)));
  }
  return out;
}

} // namespace vmcsum::btrfs
