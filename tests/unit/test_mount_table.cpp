// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/error.hpp>
#include <vmcsum/sys/mount_table.hpp>

#include <doctest/doctest.h>

using vmcsum::sys::MountTable;

TEST_CASE("mount table finds the mount holding a path")
{
  MountTable t(VMCSUM_TEST_DATA "/mountinfo.txt");
  auto m = t.find("/srv/vm/images/win.qcow2");
  REQUIRE(m);
  CHECK(m->target == "/srv/vm/images");
  CHECK(m->fstype == "btrfs");
  CHECK(m->root == "/images");
  CHECK(m->option("nodatacow").value() == "");
  CHECK_FALSE(m->option("compress"));
  CHECK(m->option("subvol").value() == "/images");

  // Over-mounted: the later mount on /srv/vm hides the earlier one.
  auto over = t.find("/srv/vm/other.img");
  REQUIRE(over);
  CHECK(over->source == "/dev/sdd");

  auto spaced = t.find("/mnt/with space/disk.raw");
  REQUIRE(spaced);
  CHECK(spaced->target == "/mnt/with space");
  CHECK(spaced->option("nodatasum"));

  auto root = t.find("/etc/passwd");
  REQUIRE(root);
  CHECK(root->fstype == "ext4");

  CHECK(t.of_type("btrfs").size() == 4);
}

TEST_CASE("compress option keeps its level")
{
  MountTable t(VMCSUM_TEST_DATA "/mountinfo.txt");
  auto all = t.of_type("btrfs");
  REQUIRE(!all.empty());
  CHECK(all.front().option("compress").value() == "zstd:3");
}

TEST_CASE("unreadable mount table is an error, not an empty table")
{
  CHECK_THROWS_AS(MountTable("/nonexistent/mountinfo"), vmcsum::Error);
}
