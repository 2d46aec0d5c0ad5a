// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/sys/fd.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

namespace vmcsum::btrfs {

using sys::ioctl_or_throw;

std::string csum_type_name(uint16_t type)
{
  switch (type) {
  case 0:
    return "crc32c";
  case 1:
    return "xxhash64";
  case 2:
    return "sha256";
  case 3:
    return "blake2";
  default:
    return "unknown(" + std::to_string(type) + ")";
  }
}

namespace {
std::string uuid_text(const uint8_t* u)
{
  char buf[37];
  std::snprintf(
    buf, sizeof buf, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
    u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  return buf;
}
} // namespace

FsInfo fs_info(int fd, const std::string& path)
{
  btrfs_ioctl_fs_info_args args{};
  args.flags = BTRFS_FS_INFO_FLAG_CSUM_INFO | BTRFS_FS_INFO_FLAG_GENERATION;
  ioctl_or_throw(fd, BTRFS_IOC_FS_INFO, &args, "BTRFS_IOC_FS_INFO", path);
  FsInfo info;
  info.fsid = uuid_text(args.fsid);
  info.num_devices = args.num_devices;
  info.max_devid = args.max_id;
  info.nodesize = args.nodesize;
  info.sectorsize = args.sectorsize;
  // The kernel echoes back only the flags it understood and filled in.
  info.csum_info_valid = (args.flags & BTRFS_FS_INFO_FLAG_CSUM_INFO) != 0;
  if (info.csum_info_valid) {
    info.csum_type = args.csum_type;
    info.csum_size = args.csum_size;
  }
  if (args.flags & BTRFS_FS_INFO_FLAG_GENERATION) {
    info.generation = args.generation;
  }
  return info;
}

std::vector<DevInfo> dev_infos(int fd, const FsInfo& info, const std::string& path)
{
  std::vector<DevInfo> devs;
  for (uint64_t devid = 1; devid <= info.max_devid; ++devid) {
    btrfs_ioctl_dev_info_args args{};
    args.devid = devid;
    if (::ioctl(fd, BTRFS_IOC_DEV_INFO, &args) < 0) {
      if (errno == ENODEV) {
        continue; // a removed device leaves a hole in the devid range
      }
      throw_errno("BTRFS_IOC_DEV_INFO", path);
    }
    DevInfo dev;
    dev.devid = args.devid;
    dev.path = reinterpret_cast<const char*>(args.path);
    dev.total_bytes = args.total_bytes;
    dev.bytes_used = args.bytes_used;
    devs.push_back(std::move(dev));
  }
  return devs;
}

DevStats dev_stats(int fd, uint64_t devid, const std::string& path)
{
  btrfs_ioctl_get_dev_stats args{};
  args.devid = devid;
  args.nr_items = BTRFS_DEV_STAT_VALUES_MAX;
  ioctl_or_throw(fd, BTRFS_IOC_GET_DEV_STATS, &args, "BTRFS_IOC_GET_DEV_STATS", path);
  DevStats s;
  s.write_errs = args.values[BTRFS_DEV_STAT_WRITE_ERRS];
  s.read_errs = args.values[BTRFS_DEV_STAT_READ_ERRS];
  s.flush_errs = args.values[BTRFS_DEV_STAT_FLUSH_ERRS];
  s.corruption_errs = args.values[BTRFS_DEV_STAT_CORRUPTION_ERRS];
  s.generation_errs = args.values[BTRFS_DEV_STAT_GENERATION_ERRS];
  return s;
}

uint64_t subvolume_id(int fd, const std::string& path)
{
  btrfs_ioctl_ino_lookup_args args{};
  args.treeid = 0;
  args.objectid = BTRFS_FIRST_FREE_OBJECTID;
  ioctl_or_throw(fd, BTRFS_IOC_INO_LOOKUP, &args, "BTRFS_IOC_INO_LOOKUP", path);
  return args.treeid;
}

std::vector<SpaceInfo> space_info(int fd, const std::string& path)
{
  // First call with no slots asks how many there are; the count can grow in between
  // (a balance adding a profile), so retry until it fits.
  btrfs_ioctl_space_args probe{};
  ioctl_or_throw(fd, BTRFS_IOC_SPACE_INFO, &probe, "BTRFS_IOC_SPACE_INFO", path);
  uint64_t slots = probe.total_spaces + 4;
  for (;;) {
    size_t bytes = sizeof(btrfs_ioctl_space_args) + slots * sizeof(btrfs_ioctl_space_info);
    auto buf = std::make_unique<uint64_t[]>((bytes + 7) / 8);
    auto* args = reinterpret_cast<btrfs_ioctl_space_args*>(buf.get());
    args->space_slots = slots;
    ioctl_or_throw(fd, BTRFS_IOC_SPACE_INFO, args, "BTRFS_IOC_SPACE_INFO", path);
    if (args->total_spaces > slots) {
      slots = args->total_spaces + 4;
      continue;
    }
    std::vector<SpaceInfo> out;
    for (uint64_t i = 0; i < args->total_spaces; ++i) {
      const auto& s = args->spaces[i];
      out.push_back({s.flags, s.total_bytes, s.used_bytes});
    }
    return out;
  }
}

void sync_fs(int fd, const std::string& path)
{
  ioctl_or_throw(fd, BTRFS_IOC_SYNC, nullptr, "BTRFS_IOC_SYNC", path);
}

uint64_t commit_transaction(int fd, const std::string& path)
{
  uint64_t transid = 0;
  ioctl_or_throw(fd, BTRFS_IOC_START_SYNC, &transid, "BTRFS_IOC_START_SYNC", path);
  ioctl_or_throw(fd, BTRFS_IOC_WAIT_SYNC, &transid, "BTRFS_IOC_WAIT_SYNC", path);
  return transid;
}

uint32_t get_attr_flags(int fd, const std::string& path)
{
  // The kernel ABI passes an int despite the "long" in the macro's type.
  int flags = 0;
  ioctl_or_throw(fd, FS_IOC_GETFLAGS, &flags, "FS_IOC_GETFLAGS", path);
  return static_cast<uint32_t>(flags);
}

void set_attr_flags(int fd, uint32_t flags, const std::string& path)
{
  int value = static_cast<int>(flags);
  ioctl_or_throw(fd, FS_IOC_SETFLAGS, &value, "FS_IOC_SETFLAGS", path);
}

void for_each_extent(int fd, const std::string& path, bool sync,
                     const std::function<void(const Extent&)>& visit)
{
  // Room for 512 extents, but a first call asks for 32 (most images audit meets have a few),
  // then 512 a call. Only the part of the buffer a call offers is zeroed before it (valgrind
  // cannot tell what FIEMAP wrote); zeroing all 512 slots per image was 5% of an audit's
  // instructions.
  constexpr uint32_t max_batch = 512;
  const size_t max_bytes = sizeof(fiemap) + max_batch * sizeof(fiemap_extent);
  auto buf = std::make_unique_for_overwrite<uint64_t[]>((max_bytes + 7) / 8);
  auto* fm = reinterpret_cast<fiemap*>(buf.get());
  uint32_t batch = 32;
  uint64_t start = 0;
  for (;;) {
    std::memset(fm, 0, sizeof(fiemap) + batch * sizeof(fiemap_extent));
    fm->fm_start = start;
    fm->fm_length = FIEMAP_MAX_OFFSET - start;
    fm->fm_flags = sync ? FIEMAP_FLAG_SYNC : 0;
    fm->fm_extent_count = batch;
    ioctl_or_throw(fd, FS_IOC_FIEMAP, fm, "FS_IOC_FIEMAP", path);
    if (fm->fm_mapped_extents == 0) {
      return;
    }
    bool last = false;
    for (uint32_t i = 0; i < fm->fm_mapped_extents; ++i) {
      const auto& e = fm->fm_extents[i];
      visit({e.fe_logical, e.fe_physical, e.fe_length, e.fe_flags});
      start = e.fe_logical + e.fe_length;
      last = last || (e.fe_flags & FIEMAP_EXTENT_LAST);
    }
    if (last || fm->fm_mapped_extents < batch) {
      return;
    }
    batch = max_batch;
  }
}

} // namespace vmcsum::btrfs
