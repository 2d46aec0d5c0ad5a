// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/btrfs/profile.hpp>
#include <vmcsum/btrfs/tree_search.hpp>
#include <vmcsum/image/file_facts.hpp>

#include <doctest/doctest.h>

#include <linux/btrfs_tree.h>
#include <linux/fiemap.h>

#include <vector>

using namespace vmcsum;

namespace {
void put_le(std::vector<uint8_t>& buf, size_t off, uint64_t v, int bytes)
{
  for (int i = 0; i < bytes; ++i) {
    buf[off + i] = static_cast<uint8_t>(v >> (8 * i));
  }
}
} // namespace

TEST_CASE("inode item parses the on-disk layout")
{
  std::vector<uint8_t> buf(160, 0);
  put_le(buf, 0, 7, 8);        // generation
  put_le(buf, 16, 1 << 20, 8); // size
  put_le(buf, 40, 2, 4);       // nlink
  put_le(buf, 52, 0100644, 4); // mode
  put_le(buf, 64, 0x3, 8);     // NODATASUM|NODATACOW
  auto item = btrfs::parse_inode_item(buf);
  REQUIRE(item);
  CHECK(item->generation == 7);
  CHECK(item->size == (1u << 20));
  CHECK(item->nlink == 2);
  CHECK(item->mode == 0100644);
  CHECK(item->flags == 0x3);
  CHECK(btrfs::inode_flag_names(item->flags) == std::vector<std::string>{"NODATASUM", "NODATACOW"});

  buf.resize(159);
  CHECK_FALSE(btrfs::parse_inode_item(buf));
}

TEST_CASE("inode flag bits agree with the kernel header where it has them")
{
  CHECK(btrfs::inode_flag::nodatasum == 1);
  CHECK(btrfs::inode_flag::nodatacow == 2);
  CHECK(btrfs::inode_flag::compress == (1 << 11));
  CHECK(btrfs::inode_flag_names(1ULL << 4) == std::vector<std::string>{"PREALLOC"});
  CHECK(btrfs::inode_flag_names(0).empty());
}

TEST_CASE("profile names and copies")
{
  CHECK(btrfs::profile_name(BTRFS_BLOCK_GROUP_DATA) == "single");
  CHECK(btrfs::profile_name(BTRFS_BLOCK_GROUP_DATA | BTRFS_BLOCK_GROUP_DUP) == "dup");
  CHECK(btrfs::profile_name(BTRFS_BLOCK_GROUP_DATA | BTRFS_BLOCK_GROUP_RAID1) == "raid1");
  CHECK(btrfs::profile_name(BTRFS_BLOCK_GROUP_RAID1C3) == "raid1c3");
  CHECK(btrfs::profile_name(BTRFS_BLOCK_GROUP_RAID1C4) == "raid1c4");
  CHECK(btrfs::profile_name(BTRFS_BLOCK_GROUP_RAID10) == "raid10");
  CHECK(btrfs::profile_name(BTRFS_BLOCK_GROUP_RAID0) == "raid0");
  CHECK(btrfs::profile_name(BTRFS_BLOCK_GROUP_RAID5) == "raid5");
  CHECK(btrfs::profile_name(BTRFS_BLOCK_GROUP_RAID6) == "raid6");
  CHECK(btrfs::profile_name(BTRFS_BLOCK_GROUP_RAID5 | BTRFS_BLOCK_GROUP_RAID6) == "unknown");

  CHECK(btrfs::profile_copies("single") == 1);
  CHECK(btrfs::profile_copies("dup") == 2);
  CHECK(btrfs::profile_copies("raid1c4") == 4);
  CHECK(btrfs::profile_copies("raid6") == 1);

  // The 7.0 rule: O_DIRECT to NODATASUM still falls back on profiles that duplicate data.
  for (const char* p : {"dup", "raid1", "raid1c3", "raid1c4", "raid10", "raid5", "raid6"}) {
    CHECK(btrfs::profile_has_duplication(p));
  }
  CHECK_FALSE(btrfs::profile_has_duplication("single"));
  CHECK_FALSE(btrfs::profile_has_duplication("raid0"));
}

TEST_CASE("data profiles from SPACE_INFO ignore metadata and empty groups")
{
  std::vector<btrfs::SpaceInfo> spaces = {
    {BTRFS_BLOCK_GROUP_DATA, 0, 0},                                         // mkfs leftover
    {BTRFS_BLOCK_GROUP_METADATA | BTRFS_BLOCK_GROUP_DUP, 1 << 30, 1 << 20}, // not data
    {BTRFS_BLOCK_GROUP_DATA | BTRFS_BLOCK_GROUP_RAID1, 8ULL << 30, 1 << 30},
    {BTRFS_BLOCK_GROUP_DATA | BTRFS_BLOCK_GROUP_DUP, 1ULL << 30, 1 << 29},
  };
  CHECK(btrfs::data_profiles(spaces) == std::vector<std::string>{"raid1", "dup"});
  CHECK(btrfs::data_profiles({}).empty());
  // Mixed block groups hold data too.
  CHECK(btrfs::data_profiles({{BTRFS_BLOCK_GROUP_DATA | BTRFS_BLOCK_GROUP_METADATA, 1, 0}}) ==
        std::vector<std::string>{"single"});
}

TEST_CASE("next_key carries like the b-tree orders keys")
{
  btrfs::Key k{5, 1, 7};
  REQUIRE(btrfs::next_key(k));
  CHECK((k.objectid == 5 && k.type == 1 && k.offset == 8));
  k = {5, 1, ~0ULL};
  REQUIRE(btrfs::next_key(k));
  CHECK((k.objectid == 5 && k.type == 2 && k.offset == 0));
  k = {5, 0xff, ~0ULL};
  REQUIRE(btrfs::next_key(k));
  CHECK((k.objectid == 6 && k.type == 0 && k.offset == 0));
  k = {~0ULL, 0xff, ~0ULL};
  CHECK_FALSE(btrfs::next_key(k));
}

TEST_CASE("checksum type names match btrfs-progs")
{
  CHECK(btrfs::csum_type_name(0) == "crc32c");
  CHECK(btrfs::csum_type_name(1) == "xxhash64");
  CHECK(btrfs::csum_type_name(2) == "sha256");
  CHECK(btrfs::csum_type_name(3) == "blake2");
  CHECK(btrfs::csum_type_name(9) == "unknown(9)");
}

TEST_CASE("extent counting follows filefrag: contiguous records are one extent")
{
  core::ExtentCounter c;
  c.add({0, 1000 * 4096, 4096, 0});
  c.add({4096, 1001 * 4096, 4096, 0});                    // continues on disk
  c.add({8192, 5000 * 4096, 8192, FIEMAP_EXTENT_SHARED}); // jumps: a new extent
  c.add({65536, 9000 * 4096, 4096, FIEMAP_EXTENT_UNWRITTEN | FIEMAP_EXTENT_LAST});
  const auto& s = c.summary();
  CHECK(s.extents == 3);
  CHECK(s.shared_bytes == 8192);
  CHECK(s.unwritten_bytes == 4096);
  CHECK(s.mapped_bytes == 4096 * 5);

  core::ExtentCounter z;
  z.add({0, 7 * 4096, 131072, FIEMAP_EXTENT_ENCODED});
  z.add({131072, 7 * 4096 + 131072, 131072, FIEMAP_EXTENT_ENCODED});
  CHECK(z.summary().extents == 2); // compressed extents never merge
  CHECK(z.summary().compressed_bytes == 262144);
}

TEST_CASE("kind_of_mode")
{
  CHECK(core::kind_of_mode(0100644) == "file");
  CHECK(core::kind_of_mode(040755) == "directory");
  CHECK(core::kind_of_mode(010644) == "fifo");
  CHECK(core::kind_of_mode(060660) == "block-device");
}
