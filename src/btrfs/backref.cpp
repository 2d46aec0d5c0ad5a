// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/backref.hpp>
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>

#include <linux/btrfs.h>
#include <sys/ioctl.h>

namespace vmcsum::btrfs {

namespace {

// struct btrfs_data_container: four u32 counters, then val[].
constexpr size_t k_container_header = 16;
static_assert(offsetof(btrfs_data_container, val) == k_container_header);
static_assert(offsetof(btrfs_data_container, elem_cnt) == 8);

// How many val[] entries the kernel says it filled, never more than the buffer holds.
size_t value_count(std::span<const uint8_t> c)
{
  if (c.size() < k_container_header) {
    return 0;
  }
  const size_t room = (c.size() - k_container_header) / 8;
  return std::min<size_t>(le32(c.data() + offsetof(btrfs_data_container, elem_cnt)), room);
}

std::span<const uint8_t> as_bytes(const std::unique_ptr<uint64_t[]>& buf, size_t size)
{
  return {reinterpret_cast<const uint8_t*>(buf.get()), size};
}

} // namespace

std::vector<ExtentRef> decode_logical_ino(std::span<const uint8_t> c)
{
  const size_t n = value_count(c);
  const uint8_t* val = c.data() + k_container_header;
  std::vector<ExtentRef> out;
  // val[] holds (inode, offset, root) triples (fs/btrfs/backref.c build_data_container()).
  for (size_t i = 0; i + 2 < n; i += 3) {
    out.push_back({le64(val + (i + 2) * 8), le64(val + i * 8), le64(val + (i + 1) * 8)});
  }
  return out;
}

std::vector<std::string> decode_ino_paths(std::span<const uint8_t> c, size_t max)
{
  const size_t n = value_count(c);
  std::vector<std::string> out;
  if (n == 0) {
    return out;
  }
  const std::span<const uint8_t> names = c.subspan(k_container_header);
  // val[i] is the offset of the i-th name from &val[0] (fs/btrfs/backref.c inode_to_path()).
  // Compared as integers: adding an untrusted offset to a pointer first would already be
  // undefined when it lands outside the buffer.
  for (size_t i = 0; i < n && out.size() < max; ++i) {
    const uint64_t off = le64(names.data() + i * 8);
    if (off >= names.size()) {
      break;
    }
    const char* p = reinterpret_cast<const char*>(names.data() + off);
    out.emplace_back(p, strnlen(p, names.size() - off));
  }
  return out;
}

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
  return decode_logical_ino(as_bytes(buf, size));
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
  return decode_ino_paths(as_bytes(buf, size), max);
}

} // namespace vmcsum::btrfs
