// SPDX-License-Identifier: GPL-2.0-or-later
// The decision table of `vmcsum set`, its temp-file names and byte-range lists.
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/set/rewrite.hpp>

#include <doctest/doctest.h>

#include <climits>

#include <linux/fs.h>

using namespace vmcsum::core;
namespace flag = vmcsum::btrfs::inode_flag;

namespace {

// A checksummed, non-empty image nobody uses, on a roomy btrfs.
SetFacts cow_image()
{
  SetFacts f;
  f.kind = "file";
  f.on_btrfs = true;
  f.fs = "btrfs";
  f.nocow = false;
  f.inode_flags = 0;
  f.size = 1ULL << 30;
  f.allocated = 512ULL << 20;
  f.nlink = 1;
  f.compression = "none";
  f.free_bytes = 10ULL << 30;
  return f;
}

SetFacts nocow_image()
{
  SetFacts f = cow_image();
  f.nocow = true;
  f.inode_flags = flag::nodatacow | flag::nodatasum;
  return f;
}

std::string codes(const SetPlan& p)
{
  std::string s;
  for (const auto& r : p.refusals) {
    s += (s.empty() ? "" : ",") + r.code;
  }
  return s;
}

} // namespace

TEST_CASE("set: state names and the target test")
{
  CHECK(cow_state_name(0) == "cow");
  CHECK(cow_state_name(flag::nodatacow | flag::nodatasum) == "nocow");
  CHECK(cow_state_name(flag::nodatasum) == "nodatasum");
  CHECK(cow_state_name(flag::nodatacow) == "nodatacow");
  CHECK(cow_state_name(flag::nodatasum | flag::prealloc) == "nodatasum");
  CHECK(in_target_state(flag::nodatacow | flag::nodatasum, CowTarget::nocow));
  CHECK_FALSE(in_target_state(flag::nodatasum, CowTarget::nocow));
  CHECK_FALSE(in_target_state(flag::nodatasum, CowTarget::cow));
  CHECK(in_target_state(flag::prealloc, CowTarget::cow));
}

TEST_CASE("set: a checksummed image is rewritten for --nocow, left alone for --cow")
{
  SetPlan p = plan_set(cow_image(), CowTarget::nocow, "a.raw");
  CHECK(p.action == SetAction::rewrite);
  CHECK(p.refusals.empty());
  CHECK(p.needed_bytes == (512ULL << 20) + space_margin(512ULL << 20));
  CHECK(p.steps.size() >= 5);
  CHECK(plan_set(cow_image(), CowTarget::cow, "a.raw").action == SetAction::unchanged);
  CHECK(plan_set(nocow_image(), CowTarget::nocow, "a.raw").action == SetAction::unchanged);
  CHECK(plan_set(nocow_image(), CowTarget::cow, "a.raw").action == SetAction::rewrite);
}

TEST_CASE("set: NODATASUM without NODATACOW (mount -o nodatasum) is neither state")
{
  SetFacts f = cow_image();
  f.inode_flags = flag::nodatasum;
  CHECK(plan_set(f, CowTarget::nocow, "x").action == SetAction::rewrite);
  CHECK(plan_set(f, CowTarget::cow, "x").action == SetAction::rewrite);
}

TEST_CASE("set: empty files and directories get the flag in place")
{
  SetFacts f = cow_image();
  f.size = 0;
  f.allocated = 0;
  f.users.push_back({42, "qemu", 3, true, true}); // only a rewrite cares
  f.nlink = 3;
  CHECK(plan_set(f, CowTarget::nocow, "e").action == SetAction::flag_set);

  SetFacts d = cow_image();
  d.kind = "directory";
  CHECK(plan_set(d, CowTarget::nocow, "d").action == SetAction::flag_set);
  CHECK(plan_set(d, CowTarget::cow, "d").action == SetAction::unchanged);
  // Directories are judged by FS_NOCOW_FL (a NOCOW directory has NODATACOW only).
  d.nocow = true;
  d.inode_flags = flag::nodatacow;
  CHECK(plan_set(d, CowTarget::nocow, "d").action == SetAction::unchanged);
  CHECK(plan_set(d, CowTarget::cow, "d").action == SetAction::flag_set);
  // ...and readable without CAP_SYS_ADMIN.
  d.inode_flags.reset();
  CHECK(plan_set(d, CowTarget::cow, "d").action == SetAction::flag_set);
}

TEST_CASE("set: every refusal of a rewrite, all reported together")
{
  SetFacts f = cow_image();
  f.nlink = 2;
  f.users.push_back({812, "qemu-system-x86", 17, true, true});
  f.locks.push_back({std::nullopt, "OFDLCK", "READ", 100, 101, true, true, "F_OFD_GETLK"});
  f.free_bytes = 100ULL << 20;
  SetPlan p = plan_set(f, CowTarget::nocow, "win.qcow2");
  CHECK(p.action == SetAction::refused);
  CHECK(codes(p) == "hard-links,in-use,locked,no-space");
  CHECK(p.refusals[1].message.find("qemu-system-x86[812] (write, O_DIRECT)") != std::string::npos);
  CHECK(p.refusals[2].message.find("bytes 100-101") != std::string::npos);
  CHECK(p.refusals[2].message.find("QEMU") != std::string::npos);
  CHECK(p.steps.empty());
}

TEST_CASE("set: free space needs the data plus a margin")
{
  SetFacts f = cow_image();
  f.free_bytes = f.allocated + space_margin(f.allocated);
  CHECK(plan_set(f, CowTarget::nocow, "x").action == SetAction::rewrite);
  f.free_bytes = *f.free_bytes - 1;
  CHECK(codes(plan_set(f, CowTarget::nocow, "x")) == "no-space");
  f.free_bytes.reset();
  SetPlan p = plan_set(f, CowTarget::nocow, "x");
  CHECK(p.action == SetAction::rewrite);
  CHECK(!p.notes.empty());
  CHECK(space_margin(0) == 32ULL << 20);
  CHECK(space_margin(64ULL << 30) == (32ULL << 20) + (1ULL << 30));
}

TEST_CASE("set: compression and NOCOW")
{
  SetFacts f = cow_image();
  f.compression = "zstd";
  f.compression_source = "property";
  SetPlan p = plan_set(f, CowTarget::nocow, "c.raw");
  CHECK(codes(p) == "compressed");
  CHECK(p.refusals[0].message.find("btrfs property set c.raw compression none") !=
        std::string::npos);
  // Going back to checksums keeps compression possible.
  CHECK(plan_set(f, CowTarget::cow, "c.raw").action == SetAction::unchanged);

  // Empty files too: SETFLAGS would fail with EINVAL.
  f.size = 0;
  CHECK(codes(plan_set(f, CowTarget::nocow, "c.raw")) == "compressed");

  // Compressed extents from the mount option: refused until compression is turned off for the
  // file, which is how the user accepts storing them uncompressed.
  SetFacts m = cow_image();
  m.compression = "zstd";
  m.compression_source = "mount";
  m.compressed_bytes = 100ULL << 20;
  CHECK(codes(plan_set(m, CowTarget::nocow, "m.raw")) == "compressed");
  m.compression = "none";
  m.compression_source = "property";
  p = plan_set(m, CowTarget::nocow, "m.raw");
  CHECK(p.action == SetAction::rewrite);
  CHECK(!p.notes.empty());
  // Mounted with compress but nothing compressed (incompressible data): fine, with a note.
  SetFacts n = cow_image();
  n.compression = "zstd";
  n.compression_source = "mount";
  p = plan_set(n, CowTarget::nocow, "n.raw");
  CHECK(p.action == SetAction::rewrite);
  CHECK(p.notes.size() == 1);
  // A directory with a compression property cannot become NOCOW either.
  SetFacts d = cow_image();
  d.kind = "directory";
  d.compression = "zlib";
  d.compression_source = "property";
  CHECK(codes(plan_set(d, CowTarget::nocow, "d")) == "compressed");
}

TEST_CASE("set: immutable, read-only, unknown flags, other filesystems, other kinds")
{
  SetFacts f = cow_image();
  f.attr_flags = FS_IMMUTABLE_FL;
  CHECK(codes(plan_set(f, CowTarget::nocow, "x")) == "immutable");
  f.attr_flags = FS_APPEND_FL;
  CHECK(codes(plan_set(f, CowTarget::nocow, "x")) == "immutable");

  f = cow_image();
  f.read_only = true;
  CHECK(codes(plan_set(f, CowTarget::nocow, "x")) == "read-only");
  // Nothing to change is not an error on a read-only filesystem.
  CHECK(plan_set(f, CowTarget::cow, "x").action == SetAction::unchanged);

  f = cow_image();
  f.inode_flags.reset();
  f.inode_flags_unknown = "needs CAP_SYS_ADMIN";
  CHECK(codes(plan_set(f, CowTarget::nocow, "x")) == "needs-root");

  f = cow_image();
  f.on_btrfs = false;
  f.fs = "ext4";
  SetPlan p = plan_set(f, CowTarget::nocow, "x");
  CHECK(codes(p) == "not-btrfs");
  CHECK(p.refusals[0].message.find("ext4") != std::string::npos);

  f = cow_image();
  f.kind = "missing";
  f.error = "No such file or directory";
  CHECK(codes(plan_set(f, CowTarget::nocow, "x")) == "not-found");

  f = cow_image();
  f.kind = "symlink"; // or unknown: a refused symlink before the last name
  f.error = "the symlink /m/l belongs to uid 1001: not followed";
  f.symlink_refused = true;
  CHECK(codes(plan_set(f, CowTarget::nocow, "x")) == "symlink-refused");
  f.kind = "unknown";
  CHECK(codes(plan_set(f, CowTarget::nocow, "x")) == "symlink-refused");

  f = cow_image();
  f.kind = "fifo";
  CHECK(codes(plan_set(f, CowTarget::nocow, "x")) == "not-regular");
  f.in_walk = true;
  CHECK(plan_set(f, CowTarget::nocow, "x").action == SetAction::skipped);
  f.kind = "symlink";
  CHECK(plan_set(f, CowTarget::nocow, "x").action == SetAction::skipped);
}

TEST_CASE("set: temp file names")
{
  CHECK(temp_name_for("win.qcow2", "Ab12Cd") == ".win.qcow2.vmcsum-tmp.Ab12Cd");
  CHECK(is_temp_name(".win.qcow2.vmcsum-tmp.Ab12Cd"));
  CHECK(is_temp_name_for(".win.qcow2.vmcsum-tmp.Ab12Cd", "win.qcow2"));
  CHECK_FALSE(is_temp_name_for(".win.qcow2.vmcsum-tmp.Ab12Cd", "win.qcow"));
  CHECK_FALSE(is_temp_name_for(".xwin.qcow2.vmcsum-tmp.Ab12Cd", "win.qcow2"));
  CHECK_FALSE(is_temp_name("win.qcow2.vmcsum-tmp.Ab12Cd"));   // no leading dot
  CHECK_FALSE(is_temp_name(".win.qcow2.vmcsum-tmp.Ab12C"));   // 5 random characters
  CHECK_FALSE(is_temp_name(".win.qcow2.vmcsum-tmp.Ab12C-"));  // not alphanumeric
  CHECK_FALSE(is_temp_name(".win.qcow2.vmcsum-tmp.Ab12Cd7")); // marker not where expected
  CHECK_FALSE(is_temp_name("..vmcsum-tmp.Ab12Cd"));           // no name at all

  // Long names are shortened to fit NAME_MAX, never in the middle of a UTF-8 sequence.
  std::string long_name(300, 'a');
  std::string t = temp_name_for(long_name, "Zz9Zz9");
  CHECK(t.size() == NAME_MAX);
  CHECK(is_temp_name_for(t, long_name));
  std::string utf8;
  while (utf8.size() < 300) {
    utf8 += "\xc3\xa9"; // é
  }
  t = temp_name_for(utf8, "Zz9Zz9");
  CHECK(t.size() <= NAME_MAX);
  std::string kept = t.substr(1, t.size() - 1 - std::string(".vmcsum-tmp.Zz9Zz9").size());
  CHECK(kept.size() % 2 == 0);
  CHECK(is_temp_name_for(t, utf8));
}

TEST_CASE("set: unreadable ranges merge")
{
  std::vector<ByteRange> r;
  add_range(r, 8192, 4096);
  add_range(r, 0, 4096);
  add_range(r, 4096, 4096); // bridges the two
  REQUIRE(r.size() == 1);
  CHECK(r[0].offset == 0);
  CHECK(r[0].length == 12288);
  add_range(r, 40960, 4096);
  add_range(r, 20480, 4096);
  REQUIRE(r.size() == 3);
  CHECK(r[1].offset == 20480);
  add_range(r, 12288, 40960); // swallows everything after the first
  REQUIRE(r.size() == 1);
  CHECK(r[0].length == 53248);
  add_range(r, 100, 0);
  CHECK(r.size() == 1);
}
