// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/host/kernel_log.hpp>
#include <vmcsum/host/kernel_log_reader.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

using namespace vmcsum::core;
using Kind = CsumLogEvent::Kind;

namespace {
CsumLogEvent parse(std::string_view line)
{
  auto e = parse_kernel_log_line(line);
  REQUIRE_MESSAGE(e, line);
  return *e;
}
} // namespace

// Lines verified on 6.18.44 (docs/kernel-facts.md §2.3).
TEST_CASE("6.18 read-path csum failure")
{
  auto e = parse("BTRFS warning (device loop1): csum failed root 5 ino 257 off 8192 csum "
                 "0x47ee40e9 expected csum 0xa46f53b6 mirror 1");
  CHECK(e.kind == Kind::read_csum_failed);
  CHECK(e.level == "warning");
  CHECK(e.device == "loop1");
  CHECK(e.root == 5);
  CHECK(e.ino == 257u);
  CHECK(e.offset == 8192u);
  CHECK(e.csum == "47ee40e9");
  CHECK(e.expected_csum == "a46f53b6");
  CHECK(e.mirror == 1u);
  CHECK_FALSE(e.logical);
  CHECK_FALSE(e.dev);
}

TEST_CASE("dev stats line")
{
  auto e = parse("BTRFS error (device loop1): bdev /dev/loop1 errs: wr 0, rd 0, flush 0, corrupt "
                 "1, gen 0");
  CHECK(e.kind == Kind::dev_stats);
  CHECK(e.level == "error");
  CHECK(e.dev == "/dev/loop1");
  CHECK(e.wr == 0);
  CHECK(e.rd == 0);
  CHECK(e.flush == 0);
  CHECK(e.corrupt == 1);
  CHECK(e.gen == 0);

  auto big = parse("BTRFS info (device dm-2): bdev /dev/mapper/vg-data errs: wr 12, rd 34, flush "
                   "5, corrupt 93976, gen 7");
  CHECK(big.level == "info");
  CHECK(big.dev == "/dev/mapper/vg-data");
  CHECK(big.wr == 12);
  CHECK(big.rd == 34);
  CHECK(big.flush == 5);
  CHECK(big.corrupt == 93976);
  CHECK(big.gen == 7);
}

TEST_CASE("6.18 scrub lines: 'scrub: ' prefix, path line without commas")
{
  auto u = parse("BTRFS error (device loop1): scrub: unable to fixup (regular) error at logical "
                 "13828096 on dev /dev/loop1 physical 13828096");
  CHECK(u.kind == Kind::scrub_unfixable);
  CHECK(u.logical == 13828096u);
  CHECK(u.dev == "/dev/loop1");
  CHECK(u.physical == 13828096u);

  auto w = parse("BTRFS warning (device loop1): scrub: checksum error at logical 13828096 on dev "
                 "/dev/loop1, physical 13828096 root 5 inode 257 offset 196608 length 4096 links 1 "
                 "(path: victim)");
  CHECK(w.kind == Kind::scrub_error);
  CHECK(w.error_kind == "checksum error");
  CHECK(w.logical == 13828096u);
  CHECK(w.dev == "/dev/loop1");
  CHECK(w.physical == 13828096u);
  CHECK(w.root == 5);
  CHECK(w.ino == 257u);
  CHECK(w.offset == 196608u);
  CHECK(w.path == "victim");

  auto f = parse("BTRFS error (device loop2): scrub: fixed up error at logical 84279296 on dev "
                 "/dev/loop2 physical 146341888");
  CHECK(f.kind == Kind::scrub_fixed);
  CHECK(f.logical == 84279296u);
  CHECK(f.dev == "/dev/loop2");
  CHECK(f.physical == 146341888u);
}

TEST_CASE("scrub start/finish lines are not csum events")
{
  CHECK_FALSE(parse_kernel_log_line("BTRFS info (device loop1): scrub: started on devid 1"));
  CHECK_FALSE(
    parse_kernel_log_line("BTRFS info (device loop1): scrub: finished on devid 1 with status: 0"));
}

TEST_CASE("read error corrected (DUP, 6.18)")
{
  auto e = parse("BTRFS info (device loop2): read error corrected: ino 257 off 8192 (dev "
                 "/dev/loop2 sector 285456)");
  CHECK(e.kind == Kind::read_repaired);
  CHECK(e.ino == 257u);
  CHECK(e.offset == 8192u);
  CHECK(e.dev == "/dev/loop2");
  CHECK(e.physical == 285456u * 512u);
}

TEST_CASE("6.1 lines from the user-mode-linux reproduction")
{
  auto r = parse("BTRFS warning (device ubda): csum failed root 5 ino 257 off 40960 csum "
                 "0x3dcd246a expected csum 0xd333c98a mirror 1");
  CHECK(r.kind == Kind::read_csum_failed);
  CHECK(r.device == "ubda");
  CHECK(r.offset == 40960u);

  auto s = parse("BTRFS warning (device ubda): checksum error at logical 13672448 on dev "
                 "/dev/ubda, physical 13672448, root 5, inode 257, offset 40960, length 4096, "
                 "links 1 (path: csum_file)");
  CHECK(s.kind == Kind::scrub_error);
  CHECK(s.logical == 13672448u);
  CHECK(s.physical == 13672448u);
  CHECK(s.root == 5);
  CHECK(s.ino == 257u);
  CHECK(s.offset == 40960u);
  CHECK(s.path == "csum_file");

  // ≤6.3 printed no physical address in fixup lines.
  auto u = parse("BTRFS error (device ubda): unable to fixup (regular) error at logical 13672448 "
                 "on dev /dev/ubda");
  CHECK(u.kind == Kind::scrub_unfixable);
  CHECK(u.dev == "/dev/ubda");
  CHECK_FALSE(u.physical);
}

TEST_CASE("field reports")
{
  auto lxd = parse("BTRFS warning (device sda5): csum failed root 450 ino 257 off 6203441152 csum "
                   "0x8db38b0a expected csum 0xd088c3d2 mirror 1");
  CHECK(lxd.root == 450);
  CHECK(lxd.offset == 6203441152u);

  auto raid1 = parse("BTRFS error (device dm-2): fixed up error at logical 124463056945152 on dev "
                     "/dev/dm-5 physical 408018681856");
  CHECK(raid1.kind == Kind::scrub_fixed);
  CHECK(raid1.device == "dm-2");
  CHECK(raid1.dev == "/dev/dm-5");
  CHECK(raid1.logical == 124463056945152u);
  CHECK(raid1.physical == 408018681856u);

  auto meta = parse("BTRFS warning (device sda7): checksum/header error at logical 4854595584 on "
                    "dev /dev/sda7, physical 4854595584: metadata leaf (level 0) in tree 5");
  CHECK(meta.kind == Kind::scrub_error);
  CHECK(meta.error_kind == "checksum/header error");
  CHECK(meta.root == 5);
  CHECK_FALSE(meta.ino); // metadata: no inode
  CHECK_FALSE(meta.path);

  auto old = parse("BTRFS error (device sda7): unable to fixup (regular) error at logical "
                   "4855005184 on dev /dev/sda7");
  CHECK(old.logical == 4855005184u);

  auto mapper = parse("BTRFS error (device dm-0): unable to fixup (regular) error at logical "
                      "192613056512 on dev /dev/mapper/root physical 193796243456");
  CHECK(mapper.dev == "/dev/mapper/root");
  CHECK(mapper.physical == 193796243456u);
}

TEST_CASE("each documented format")
{
  SUBCASE("data reloc tree: negative root and a logical address (6.5+)")
  {
    auto e = parse("BTRFS warning (device sdb): csum failed root -9 ino 258 off 1048576 logical "
                   "298844160 csum 0x8941f998 expected csum 0x2a2c9bd6 mirror 2");
    CHECK(e.root == -9);
    CHECK(e.logical == 298844160u);
    CHECK(e.mirror == 2u);
  }
  SUBCASE("xxhash64 and sha256 csums")
  {
    auto x = parse("BTRFS warning (device vdb): csum failed root 256 ino 1000 off 0 csum "
                   "0x0123456789abcdef expected csum 0xfedcba9876543210 mirror 1");
    CHECK(x.csum == "0123456789abcdef");
    auto s = parse("BTRFS warning (device vdb): csum failed root 5 ino 257 off 4096 csum "
                   "0x" +
                   std::string(64, 'a') + " expected csum 0x" + std::string(64, '0') + " mirror 1");
    CHECK(s.csum == std::string(64, 'a'));
    CHECK(s.expected_csum == std::string(64, '0'));
  }
  SUBCASE("6.4-6.16 scrub with commas and physical on fixup lines")
  {
    auto f = parse("BTRFS error (device sdc): fixed up error at logical 1104150528 on dev /dev/sdc "
                   "physical 1104150528");
    CHECK(f.kind == Kind::scrub_fixed);
    CHECK(f.physical == 1104150528u);
    auto m = parse("BTRFS error (device sdc): fixed up error at logical 1104150528 on mirror 2");
    CHECK(m.kind == Kind::scrub_fixed);
    CHECK(m.mirror == 2u);
    CHECK_FALSE(m.dev);
    auto u = parse("BTRFS error (device sdc): unable to fixup (regular) error at logical "
                   "1104150528 on mirror 1");
    CHECK(u.kind == Kind::scrub_unfixable);
    CHECK(u.mirror == 1u);
    auto io = parse("BTRFS warning (device sdc): i/o error at logical 1104150528 on dev /dev/sdc, "
                    "physical 1104150528, root 5, inode 259, offset 0, length 4096, links 2 "
                    "(path: dir/a file (copy).img)");
    CHECK(io.error_kind == "i/o error");
    CHECK(io.path == "dir/a file (copy).img");
    auto hdr = parse("BTRFS warning (device sdc): header error at logical 30490624 on dev "
                     "/dev/sdc, physical 38879232: metadata node (level 1) in tree 2");
    CHECK(hdr.error_kind == "header error");
    CHECK(hdr.root == 2);
  }
  SUBCASE("path resolving failed, both separator styles")
  {
    auto a = parse("BTRFS warning (device sdc): checksum error at logical 1104150528 on dev "
                   "/dev/sdc, physical 1104150528, root 257, inode 260, offset 65536: path "
                   "resolving failed with ret=-2");
    CHECK(a.kind == Kind::scrub_error);
    CHECK(a.root == 257);
    CHECK(a.ino == 260u);
    CHECK_FALSE(a.path);
    auto b = parse("BTRFS warning (device sdc): scrub: checksum error at logical 1104150528 on "
                   "dev /dev/sdc, physical 1104150528 root 257 inode 260 offset 65536: path "
                   "resolving failed with ret=-2");
    CHECK(b.ino == 260u);
  }
  SUBCASE("state letters after the device")
  {
    auto e = parse("BTRFS warning (device loop1 state EC): csum failed root 5 ino 257 off 8192 "
                   "csum 0x47ee40e9 expected csum 0xa46f53b6 mirror 1");
    CHECK(e.device == "loop1");
    auto m = parse("BTRFS info (device nvme0n1p2 state M): bdev /dev/nvme0n1p2 errs: wr 0, rd 0, "
                   "flush 0, corrupt 3, gen 0");
    CHECK(m.device == "nvme0n1p2");
    CHECK(m.corrupt == 3);
  }
  SUBCASE("every printk level")
  {
    for (const char* level :
         {"emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"}) {
      auto e = parse(std::string("BTRFS ") + level +
                     " (device sda): bdev /dev/sda errs: wr 0, rd 0, flush 0, corrupt 1, gen 0");
      CHECK(e.level == level);
    }
  }
}

// The same scrub events as each kernel line prints them (fs/btrfs/scrub.c): ≤6.3 (old scrub,
// 6.1), 6.4-6.15 (new scrub: physical on fixup lines, no prefix), 6.16+ ("scrub: " prefix,
// docs/kernel-facts.md "Re-checked 2026-12-02"; the comma-less path line as verified on 6.18.44),
// and error codes printed with %pe (7.3, d34a3a8ba61e "btrfs: use %pe for error code output").
TEST_CASE("scrub lines of 6.1, 6.15, 6.16 and a %pe error code")
{
  SUBCASE("6.1: no prefix, commas, no physical on fixup lines")
  {
    auto w = parse("BTRFS warning (device sdb): checksum error at logical 298844160 on dev "
                   "/dev/sdb, physical 307232768, root 5, inode 257, offset 40960, length 4096, "
                   "links 1 (path: images/win.raw)");
    CHECK(w.kind == Kind::scrub_error);
    CHECK(w.physical == 307232768u);
    CHECK(w.ino == 257u);
    CHECK(w.offset == 40960u);
    CHECK(w.path == "images/win.raw");
    CHECK_FALSE(w.path_error);
    auto r = parse("BTRFS warning (device sdb): checksum error at logical 298844160 on dev "
                   "/dev/sdb, physical 307232768, root 5, inode 257, offset 40960: path resolving "
                   "failed with ret=-2");
    CHECK(r.ino == 257u);
    CHECK(r.path_error == "-2");
    CHECK_FALSE(r.path);
    auto f = parse("BTRFS error (device sdb): fixed up error at logical 298844160 on dev /dev/sdb");
    CHECK(f.kind == Kind::scrub_fixed);
    CHECK_FALSE(f.physical);
  }
  SUBCASE("6.15: no prefix, physical on fixup lines")
  {
    auto w = parse("BTRFS warning (device sdb): checksum error at logical 298844160 on dev "
                   "/dev/sdb, physical 307232768, root 5, inode 257, offset 40960, length 4096, "
                   "links 1 (path: images/win.raw)");
    CHECK(w.path == "images/win.raw");
    auto u = parse("BTRFS error (device sdb): unable to fixup (regular) error at logical "
                   "298844160 on dev /dev/sdb physical 307232768");
    CHECK(u.kind == Kind::scrub_unfixable);
    CHECK(u.logical == 298844160u);
    CHECK(u.dev == "/dev/sdb");
    CHECK(u.physical == 307232768u);
    auto r = parse("BTRFS warning (device sdb): checksum error at logical 298844160 on dev "
                   "/dev/sdb, physical 307232768, root 5, inode 257, offset 40960: path resolving "
                   "failed with ret=-2");
    CHECK(r.path_error == "-2");
  }
  SUBCASE("6.16+: the scrub: prefix on every line")
  {
    auto w = parse("BTRFS warning (device sdb): scrub: checksum error at logical 298844160 on dev "
                   "/dev/sdb, physical 307232768 root 5 inode 257 offset 40960 length 4096 links "
                   "1 (path: images/win.raw)");
    CHECK(w.kind == Kind::scrub_error);
    CHECK(w.error_kind == "checksum error");
    CHECK(w.logical == 298844160u);
    CHECK(w.physical == 307232768u);
    CHECK(w.root == 5);
    CHECK(w.ino == 257u);
    CHECK(w.offset == 40960u);
    CHECK(w.path == "images/win.raw");
    // The prefix with the older comma style, as the prefix patch first printed it.
    auto c = parse("BTRFS warning (device sdb): scrub: checksum error at logical 298844160 on dev "
                   "/dev/sdb, physical 307232768, root 5, inode 257, offset 40960, length 4096, "
                   "links 1 (path: images/win.raw)");
    CHECK(c.path == "images/win.raw");
    auto f = parse("BTRFS error (device sdb): scrub: fixed up error at logical 298844160 on dev "
                   "/dev/sdb physical 307232768");
    CHECK(f.kind == Kind::scrub_fixed);
    CHECK(f.physical == 307232768u);
    auto m = parse("BTRFS error (device sdb): scrub: fixed up error at logical 298844160 on "
                   "mirror 2");
    CHECK(m.mirror == 2u);
    auto u = parse("BTRFS error (device sdb): scrub: unable to fixup (regular) error at logical "
                   "298844160 on dev /dev/sdb physical 307232768");
    CHECK(u.kind == Kind::scrub_unfixable);
    CHECK(u.physical == 307232768u);
    auto um = parse("BTRFS error (device sdb): scrub: unable to fixup (regular) error at logical "
                    "298844160 on mirror 1");
    CHECK(um.mirror == 1u);
    auto r = parse("BTRFS warning (device sdb): scrub: checksum error at logical 298844160 on dev "
                   "/dev/sdb, physical 307232768 root 5 inode 257 offset 40960: path resolving "
                   "failed with ret=-2");
    CHECK(r.ino == 257u);
    CHECK(r.path_error == "-2");
    auto g = parse("BTRFS warning (device sdb): scrub: generation error at logical 30490624 on "
                   "dev /dev/sdb, physical 38879232: metadata leaf (level 0) in tree 7");
    CHECK(g.error_kind == "generation error");
    CHECK(g.root == 7);
    CHECK_FALSE(g.ino);
  }
  SUBCASE("%pe: the error code as a symbol, kept as printed")
  {
    auto r = parse("BTRFS warning (device sdb): scrub: checksum error at logical 298844160 on dev "
                   "/dev/sdb, physical 307232768 root 5 inode 257 offset 40960: path resolving "
                   "failed with ret=-ENOENT");
    CHECK(r.kind == Kind::scrub_error);
    CHECK(r.root == 5);
    CHECK(r.ino == 257u);
    CHECK(r.offset == 40960u);
    CHECK(r.path_error == "-ENOENT");
    CHECK_FALSE(r.path);
    auto u = parse("[ 812.000001] BTRFS warning (device nvme0n1p3): scrub: i/o error at logical "
                   "1104150528 on dev /dev/nvme0n1p3, physical 1104150528 root 256 inode 300 "
                   "offset 0: path resolving failed with ret=-EUCLEAN");
    CHECK(u.error_kind == "i/o error");
    CHECK(u.path_error == "-EUCLEAN");
    auto o = parse("BTRFS warning (device sdb): scrub: checksum error at logical 1 on dev "
                   "/dev/sdb, physical 1 root 5 inode 257 offset 0: path resolving failed with "
                   "ret=-EOPNOTSUPP");
    CHECK(o.path_error == "-EOPNOTSUPP");
    // Without CONFIG_SYMBOLIC_ERRNAME %pe prints the number.
    auto n = parse("BTRFS warning (device sdb): scrub: checksum error at logical 1 on dev "
                   "/dev/sdb, physical 1 root 5 inode 257 offset 0: path resolving failed with "
                   "ret=-117");
    CHECK(n.path_error == "-117");
    for (const char* bad : {"ret=-E", "ret=-enoent", "ret=ENOENT", "ret=-ENOENT)",
                            "ret=", "ret=-ENO ENT", "ret=-2x", "ret=99999999999"}) {
      CAPTURE(bad);
      CHECK_FALSE(parse_kernel_log_line(
        std::string("BTRFS warning (device sdb): scrub: checksum error at logical 1 on dev "
                    "/dev/sdb, physical 1 root 5 inode 257 offset 0: path resolving failed with ") +
        bad));
    }
  }
}

TEST_CASE("dmesg and /dev/kmsg prefixes")
{
  const std::string msg = "BTRFS warning (device loop1): csum failed root 5 ino 257 off 8192 csum "
                          "0x47ee40e9 expected csum 0xa46f53b6 mirror 1";
  CHECK(parse("[    1.234567] " + msg).offset == 8192u);
  CHECK(parse("[ 1.234] " + msg).device == "loop1");
  CHECK(parse("[123456.000001] " + msg).ino == 257u);
  CHECK(parse("[   12.345678] [  T1234] " + msg).root == 5);
  CHECK(parse("4,1234,5678901,-;" + msg).mirror == 1u);
  CHECK(parse("6,123,456,-;" + msg).mirror == 1u);
  CHECK(parse("4,1234,5678901,c;" + msg).mirror == 1u);
  CHECK(parse("4,1234,5678901,-,caller=T42;" + msg).mirror == 1u);
  // /dev/kmsg continuation lines carry the device dictionary.
  CHECK(parse("4,1234,5678901,-;" + msg + "\n SUBSYSTEM=block\n DEVICE=b7:1\n").mirror == 1u);
  CHECK(parse(msg + "\n").mirror == 1u);
  CHECK(parse(msg + "\r\n").mirror == 1u);
}

TEST_CASE("near misses are rejected")
{
  const std::string good = "BTRFS warning (device loop1): csum failed root 5 ino 257 off 8192 "
                           "csum 0x47ee40e9 expected csum 0xa46f53b6 mirror 1";
  REQUIRE(parse_kernel_log_line(good));
  const char* bad[] = {
    "",
    "BTRFS",
    "csum failed root 5 ino 257 off 8192 csum 0x47ee40e9 expected csum 0xa46f53b6 mirror 1",
    // the ancient form without root and mirror
    "BTRFS warning (device loop1): csum failed ino 257 off 8192 csum 1 expected csum 2",
    "BTRFS warn (device loop1): csum failed root 5 ino 257 off 8192 csum 0x47ee40e9 expected "
    "csum 0xa46f53b6 mirror 1",
    "BTRFS warning (device ): csum failed root 5 ino 257 off 8192 csum 0x47ee40e9 expected csum "
    "0xa46f53b6 mirror 1",
    "BTRFS warning (device loop1 state ec): csum failed root 5 ino 257 off 8192 csum 0x47ee40e9 "
    "expected csum 0xa46f53b6 mirror 1",
    "BTRFS warning (device loop1 state ): csum failed root 5 ino 257 off 8192 csum 0x47ee40e9 "
    "expected csum 0xa46f53b6 mirror 1",
    "BTRFS warning: csum failed root 5 ino 257 off 8192 csum 0x47ee40e9 expected csum "
    "0xa46f53b6 mirror 1",
    "BTRFS warning (device loop1): csum failed root 5 ino 257 off 8192 csum 0x47ee40e9 expected "
    "csum 0xa46f53b6 mirror 1 extra",
    "BTRFS warning (device loop1): csum failed root 5 ino 257 off 8192 csum 0x47ee40e9 expected "
    "csum 0xa46f53b6 mirror -1",
    "BTRFS warning (device loop1): csum failed root 5 ino 257 off 8192 csum 0x47EE40E9 expected "
    "csum 0xa46f53b6 mirror 1",
    "BTRFS warning (device loop1): csum failed root 5 ino 257 off 8192 csum 0x47ee40e "
    "expected csum 0xa46f53b6 mirror 1",
    "BTRFS warning (device loop1): csum failed root 5 ino 257 off 8192 csum 0x47ee expected "
    "csum 0xa46f53b6 mirror 1", // shorter than any btrfs csum
    "BTRFS warning (device loop1): csum failed root 5 ino 257 off 8192 csum 47ee40e9 expected "
    "csum 0xa46f53b6 mirror 1",
    "BTRFS warning (device loop1): csum failed root 5 ino -257 off 8192 csum 0x47ee40e9 "
    "expected csum 0xa46f53b6 mirror 1",
    "BTRFS warning (device loop1): csum failed root 5 ino 257 off 99999999999999999999 csum "
    "0x47ee40e9 expected csum 0xa46f53b6 mirror 1",
    "BTRFS warning (device loop1): csum failed root 5  ino 257 off 8192 csum 0x47ee40e9 "
    "expected csum 0xa46f53b6 mirror 1",
    "BTRFS warning (device loop1): csum failed root 5 ino 257 off 8192 csum 0x47ee40e9 expected "
    "csum 0xa46f53b6",
    // scrub lines
    "BTRFS warning (device loop1): scrub: checksum error at logical 1 on dev /dev/loop1, "
    "physical 1 root 5, inode 257 offset 0 length 4096 links 1 (path: x)", // mixed separators
    "BTRFS warning (device loop1): scrub: parity error at logical 1 on dev /dev/loop1, physical "
    "1 root 5 inode 257 offset 0 length 4096 links 1 (path: x)",
    "BTRFS warning (device loop1): checksum error at logical 1 on dev /dev/loop1, physical 1, "
    "root 5, inode 257, offset 0, length 4096, links 1 (path: x",
    "BTRFS warning (device loop1): checksum error at logical 1 on dev /dev/loop1, physical 1, "
    "root 5, inode 257, offset 0, length 4096, links 1 (path: )",
    "BTRFS warning (device loop1): checksum error at logical 1 on dev /dev/loop1 physical 1 root "
    "5 inode 257 offset 0 length 4096 links 1 (path: x)",
    "BTRFS warning (device sda7): checksum/header error at logical 1 on dev /dev/sda7, physical "
    "1: metadata twig (level 0) in tree 5",
    "BTRFS error (device loop1): scrub: unable to fixup (regular) error at logical 1 on dev ",
    "BTRFS error (device loop1): fixed up error at logical x on dev /dev/loop1",
    "BTRFS error (device loop1): fixed up error at logical 1 on mirror",
    "BTRFS error (device loop1): scrub: tree block 30490624 mirror 1 has bad csum, has "
    "0x11111111 want 0x22222222",
    "BTRFS error (device loop1): bdev /dev/loop1 errs: wr 0, rd 0, flush 0, corrupt 1",
    "BTRFS error (device loop1): bdev /dev/loop1 errs: wr 0, rd 0, flush 0, corrupt x, gen 0",
    "BTRFS info (device loop2): read error corrected: ino 257 off 8192 (dev /dev/loop2 sector "
    "285456",
    "BTRFS info (device loop2): read error corrected: ino 257 off 8192 (dev /dev/loop2 sector "
    "99999999999999999999)",
    "BTRFS info (device loop1): direct IO failed ino 257 op 0x1 offset 0x2000 len 4096 err no 5",
    // prefixes
    "[ 1.234]BTRFS warning (device loop1): bdev /dev/loop1 errs: wr 0, rd 0, flush 0, corrupt "
    "1, gen 0",
    "[abc] BTRFS warning (device loop1): bdev /dev/loop1 errs: wr 0, rd 0, flush 0, corrupt 1, "
    "gen 0",
    "4,1234,5678;BTRFS warning (device loop1): bdev /dev/loop1 errs: wr 0, rd 0, flush 0, "
    "corrupt 1, gen 0",
    "4,1234,5678,x;BTRFS warning (device loop1): bdev /dev/loop1 errs: wr 0, rd 0, flush 0, "
    "corrupt 1, gen 0",
    "4,1234,5678,-BTRFS warning (device loop1): bdev /dev/loop1 errs: wr 0, rd 0, flush 0, "
    "corrupt 1, gen 0",
    "Nov 24 14:42:01 host kernel: BTRFS warning (device loop1): bdev /dev/loop1 errs: wr 0, rd "
    "0, flush 0, corrupt 1, gen 0",
    "BTRFS warning (device loop1): bdev /dev/loop1 errs: wr 0, rd 0, flush 0, corrupt 1, gen "
    "0\ntrailing",
  };
  for (const char* line : bad) {
    CAPTURE(line);
    CHECK_FALSE(parse_kernel_log_line(line));
  }
}

TEST_CASE("a captured 6.18 kernel log fixture")
{
  std::ifstream in(VMCSUM_TEST_DATA "/kernel_log_6.18.txt");
  REQUIRE(in);
  int total = 0, events = 0, read_failed = 0, scrub = 0, stats = 0;
  for (std::string line; std::getline(in, line);) {
    ++total;
    if (auto e = parse_kernel_log_line(line)) {
      ++events;
      read_failed += e->kind == Kind::read_csum_failed;
      scrub += e->kind == Kind::scrub_error || e->kind == Kind::scrub_unfixable ||
               e->kind == Kind::scrub_fixed;
      stats += e->kind == Kind::dev_stats;
    }
  }
  CHECK(total == 12);
  CHECK(events == 8);
  CHECK(read_failed == 2);
  CHECK(scrub == 3);
  CHECK(stats == 2);
}

TEST_CASE("kernel log readers: a missing text log or journal directory is a note, not an error")
{
  std::vector<std::string> notes;
  CHECK(read_kernel_log("/nonexistent/vmcsum-kern.log", notes).empty());
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("/nonexistent/vmcsum-kern.log") != std::string::npos);
  notes.clear();
  CHECK(read_journal_kernel_log(notes, "/nonexistent/vmcsum-journal").empty());
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("journal /nonexistent/vmcsum-journal not read") != std::string::npos);
}

TEST_CASE("device to filesystem lines: scans and first mounts bind a device name to an fsid")
{
  const std::string fsid = "c12d28f5-abbd-4469-99f9-c9ab02495738";
  // 6.18 (dmesg form, with major:minor), 6.1 (kmsg record, without), and the bare message.
  auto a = parse_device_fsid_line("[ 2180.506760] BTRFS: device fsid " + fsid +
                                  " devid 2 transid 8 /dev/loop3 (7:3) scanned by btrfs (19492)");
  REQUIRE(a);
  CHECK(a->device == "loop3");
  CHECK(a->fsid == fsid);
  auto b = parse_device_fsid_line("6,1234,5678,-;BTRFS: device fsid " + fsid +
                                  " devid 1 transid 6 /dev/loop0 scanned by mkfs.btrfs (1234)");
  REQUIRE(b);
  CHECK(b->device == "loop0");
  auto c = parse_device_fsid_line("BTRFS info (device loop2): first mount of filesystem " + fsid);
  REQUIRE(c);
  CHECK(c->device == "loop2");
  CHECK(c->fsid == fsid);
  auto d = parse_device_fsid_line("BTRFS info (device nvme0n1p3 state M): first mount of "
                                  "filesystem " +
                                  fsid);
  REQUIRE(d);
  CHECK(d->device == "nvme0n1p3");

  // Not such lines, or malformed ones.
  CHECK_FALSE(parse_device_fsid_line(""));
  CHECK_FALSE(parse_device_fsid_line("BTRFS: device label data devid 1 transid 6 /dev/loop0 "
                                     "scanned by mount (1)")); // no fsid printed
  CHECK_FALSE(parse_device_fsid_line("BTRFS: device fsid not-a-uuid devid 1 transid 6 /dev/loop0 "
                                     "scanned by x (1)"));
  CHECK_FALSE(parse_device_fsid_line("BTRFS: device fsid " + fsid + " devid 1 transid 6 loop0"));
  CHECK_FALSE(parse_device_fsid_line("BTRFS info (device loop2): first mount of filesystem " +
                                     fsid.substr(1)));
  CHECK_FALSE(parse_device_fsid_line("BTRFS info (device loop2): using crc32c checksum"));
  CHECK_FALSE(parse_device_fsid_line("BTRFS: device fsid " + fsid +
                                     " devid 1 transid 6 /dev/mapper/x y scanned by z (1)"));
}
