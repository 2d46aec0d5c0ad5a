// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// repair's decision table, copy choice, backup format and --from parser.
#include "repair/repair_internal.hpp"

#include <vmcsum/btrfs/file_extents.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/repair/repair.hpp>
#include <vmcsum/repair/repair_backup.hpp>
#include <vmcsum/sys/lease.hpp>
#include <vmcsum/sys/temp_file.hpp>

#include <doctest/doctest.h>
#include <xxhash.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

using namespace vmcsum;
using namespace vmcsum::core;

namespace {

BadSector sector(BadClass cls, std::vector<std::pair<bool, bool>> copies /* matches, read_error */)
{
  BadSector b;
  b.offset = 8192;
  b.length = 4096;
  b.logical = 1 << 20;
  b.cls = cls;
  unsigned m = 1;
  for (auto [matches, err] : copies) {
    SectorCopy c;
    c.mirror = m++;
    c.matches = matches;
    c.read_error = err;
    b.copies.push_back(c);
  }
  return b;
}

struct TempDir
{
  std::string path;
  TempDir()
  {
    char tmpl[] = "/tmp/vmcsum-unit-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir()
  {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

} // namespace

TEST_CASE("repair: no copy matches, false mismatch -> rewrite from the lowest readable copy")
{
  auto b = sector(BadClass::false_mismatch, {{false, false}, {false, false}});
  auto d = decide_sector(b, {});
  CHECK(d.action == SectorAction::rewrite);
  REQUIRE(d.mirror);
  CHECK(*d.mirror == 1);
  b.copies[0].read_error = true;
  d = decide_sector(b, {});
  CHECK(*d.mirror == 2);
}

TEST_CASE("repair: --prefer-mirror wins when that copy was readable, else the rule")
{
  auto b = sector(BadClass::false_mismatch, {{false, false}, {false, false}});
  RepairChoice c;
  c.prefer_mirror = 2;
  CHECK(*decide_sector(b, c).mirror == 2);
  b.copies[1].read_error = true;
  CHECK(*decide_sector(b, c).mirror == 1);
  c.prefer_mirror = 3; // no such copy on dup
  b.copies[1].read_error = false;
  CHECK(*decide_sector(b, c).mirror == 1);
}

TEST_CASE("repair: every copy unreadable is skipped as unreadable")
{
  auto b = sector(BadClass::false_mismatch, {{false, true}, {false, true}});
  auto d = decide_sector(b, {});
  CHECK(d.action == SectorAction::skip);
  CHECK(d.code == "unreadable");
}

TEST_CASE("repair: undetermined only with --include-undetermined")
{
  auto b = sector(BadClass::undetermined, {{false, false}});
  auto d = decide_sector(b, {});
  CHECK(d.action == SectorAction::skip);
  CHECK(d.code == "undetermined");
  RepairChoice c;
  c.include_undetermined = true;
  d = decide_sector(b, c);
  CHECK(d.action == SectorAction::rewrite);
  CHECK(*d.mirror == 1);
}

TEST_CASE("repair: a copy that is one byte repeated is chosen last")
{
  // Mirror 1 zeros (a lost sector), mirror 2 other wrong bytes: mirror 2 is closer to the data.
  auto b = sector(BadClass::undetermined, {{false, false}, {false, false}});
  b.copies[0].fill = 0x00;
  RepairChoice c;
  c.include_undetermined = true;
  auto d = decide_sector(b, c);
  REQUIRE(d.mirror);
  CHECK(*d.mirror == 2);
  // Every copy a fill: the lowest of them; --prefer-mirror still wins.
  b.copies[1].fill = 0xff;
  CHECK(*decide_sector(b, c).mirror == 1);
  c.prefer_mirror = 1;
  b.copies[1].fill.reset();
  CHECK(*decide_sector(b, c).mirror == 1);
}

TEST_CASE("repair: a matching copy: false mismatches are read, then rewritten if still "
          "bad, media and undetermined are left to btrfs")
{
  RepairChoice c;
  c.mount_point = "/srv";
  auto first = sector(BadClass::false_mismatch, {{true, false}, {false, false}});
  CHECK(decide_sector(first, c).action == SectorAction::read);
  for (auto cls : {BadClass::media, BadClass::undetermined}) {
    auto b = sector(cls, {{true, false}, {false, false}});
    CHECK(decide_sector(b, c).action == SectorAction::skip); // left to btrfs, never touched
  }
  c.after_read = true;
  auto fm = sector(BadClass::false_mismatch, {{true, false}, {false, false}});
  auto d = decide_sector(fm, c);
  CHECK(d.action == SectorAction::rewrite);
  CHECK_FALSE(d.mirror); // as btrfs reads it: the good copy
  auto media = sector(BadClass::media, {{true, false}, {false, false}});
  d = decide_sector(media, c);
  CHECK(d.action == SectorAction::skip);
  CHECK(d.code == "media");
  CHECK(d.reason.find("btrfs scrub start -B /srv") != std::string::npos);
}

TEST_CASE("repair: media with no matching copy and compressed sectors are left")
{
  auto media = sector(BadClass::media, {{false, false}, {false, true}});
  CHECK(decide_sector(media, {}).code == "media");
  auto comp = sector(BadClass::false_mismatch, {{false, false}, {false, false}});
  comp.compressed = true;
  RepairChoice c;
  c.include_undetermined = true;
  CHECK(decide_sector(comp, c).code == "compressed");
}

TEST_CASE("repair: backup round trip, chosen copy kept, trailer verified")
{
  TempDir dir;
  BackupHeader h;
  h.path = "/srv/images/vm\xff.raw"; // not UTF-8: escaped in the header, restored on reading
  h.fsid = "0f0e0d0c-0b0a-0908-0706-050403020100";
  h.subvolume = 256;
  h.inode = 257;
  h.size = 1 << 20;
  h.mtime_sec = 1700000000;
  h.mtime_nsec = 123;
  h.csum_type = "crc32c";
  h.created = "2026-11-24T19:00:00Z";
  h.ranges = {{0, 8192}};
  std::vector<uint8_t> good(4096, 0xaa), m1(4096, 0x11), m2(4096, 0x22);
  std::string final_path;
  {
    BackupWriter w(dir.path, h);
    w.add_hashed(0, good.data(), 4096);
    w.add(4096, 1 << 20, 1, BackupRecord::k_chosen, {1, 2, 3, 4}, m1.data(), 4096);
    w.add(4096, 1 << 20, 2, 0, {1, 2, 3, 4}, m2.data(), 4096);
    final_path = w.commit("x.vmcsum-backup");
  }
  BackupReader r(final_path);
  CHECK(r.header().path == h.path);
  CHECK(r.header().inode == 257);
  CHECK(r.header().mtime_nsec == 123);
  REQUIRE(r.header().ranges.size() == 1);
  r.verify_complete();
  BackupRecord rec;
  REQUIRE(r.next(rec));
  CHECK(rec.mirror == 0);
  CHECK(rec.hashed());
  CHECK(rec.data.empty());
  CHECK(rec.sha256 == stretch_digest(good.data(), good.size()));
  REQUIRE(r.next(rec));
  CHECK(rec.chosen());
  CHECK(rec.expected_csum == std::vector<uint8_t>{1, 2, 3, 4});
  CHECK(rec.data == m1);
  REQUIRE(r.next(rec));
  CHECK_FALSE(rec.chosen());
  CHECK(rec.data == m2);
  CHECK_FALSE(r.next(rec));
}

TEST_CASE("repair: a truncated or damaged backup is refused, and an uncommitted one vanishes")
{
  TempDir dir;
  BackupHeader h;
  h.path = "/a";
  h.ranges = {{0, 4096}};
  std::vector<uint8_t> data(4096, 7);
  std::string p;
  {
    BackupWriter w(dir.path, h);
    w.add(0, 1 << 20, 1, BackupRecord::k_chosen, {}, data.data(), 4096);
    p = w.commit("b.vmcsum-backup");
  }
  {
    BackupWriter w(dir.path, h);
    w.add(0, 1 << 20, 1, BackupRecord::k_chosen, {}, data.data(), 4096);
    // no commit: the temp file is removed
  }
  auto entries = std::distance(std::filesystem::directory_iterator(dir.path),
                               std::filesystem::directory_iterator());
  CHECK(entries == 1);
  CHECK_NOTHROW(BackupReader(p).verify_complete());
  // Truncate: drop the trailer.
  std::string truncated = dir.path + "/t.vmcsum-backup";
  std::filesystem::copy_file(p, truncated);
  std::filesystem::resize_file(truncated, std::filesystem::file_size(p) - 20);
  CHECK_THROWS_WITH_AS(BackupReader(truncated).verify_complete(), doctest::Contains("no trailer"),
                       Error);
  // Flip one data byte.
  std::string flipped = dir.path + "/f.vmcsum-backup";
  std::filesystem::copy_file(p, flipped);
  {
    std::fstream f(flipped, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-30, std::ios::end);
    f.put('\x55');
  }
  CHECK_THROWS_WITH_AS(BackupReader(flipped).verify_complete(), doctest::Contains("is damaged"),
                       Error);
  std::string junk = dir.path + "/j";
  std::ofstream(junk) << "hello\n";
  CHECK_THROWS_AS(BackupReader{junk}, Error);
}

// A backup written by format 1's writer (session 21, before format 2): ranges {0, 12288}; a
// mirror-0 record of 0xaa at 0, two copies (0x11 chosen, 0x22) of the bad sector at 4096, a
// mirror-0 record of 0xbb at 8192. Undo and resume must go on reading such files.
TEST_CASE("repair: a format 1 backup is still read")
{
  BackupReader r(VMCSUM_TEST_DATA "/backup-format1.vmcsum-backup");
  CHECK(r.format() == 1);
  CHECK(r.header().path == "/srv/images/vm.raw");
  CHECK(r.header().ranges == std::vector<std::pair<uint64_t, uint64_t>>{{0, 12288}});
  r.verify_complete();
  BackupRecord rec;
  std::vector<std::string> seen;
  while (r.next(rec)) {
    CHECK_FALSE(rec.hashed());
    CHECK(rec.length == rec.data.size());
    seen.push_back(std::to_string(rec.offset) + ":" + std::to_string(rec.mirror) + ":" +
                   std::to_string(rec.data.at(0)) + (rec.chosen() ? "*" : ""));
  }
  CHECK(seen == std::vector<std::string>{"0:0:170", "4096:1:17*", "4096:2:34", "8192:0:187"});
}

namespace {

BackupHeader v2_header()
{
  BackupHeader h;
  h.path = "/srv/images/vm.raw";
  h.sectorsize = 4096;
  h.size = 1 << 20;
  h.ranges = {{0, 12288}};
  return h;
}

std::string hex_of(const std::vector<uint8_t>& v)
{
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t b : v) {
    s += d[b >> 4];
    s += d[b & 15];
  }
  return s;
}

// The backup both format-2 tests use: ranges {0, 12288}; 0xaa at 0 and 0xbb at 8192 kept as
// hashed stretches, two copies (0x11 chosen, 0x22) of the bad sector at 4096.
struct V2Backup
{
  std::vector<uint8_t> aa = std::vector<uint8_t>(4096, 0xaa), bb = std::vector<uint8_t>(4096, 0xbb),
                       m1 = std::vector<uint8_t>(4096, 0x11), m2 = std::vector<uint8_t>(4096, 0x22);
  std::string write(const std::string& dir, const std::string& name)
  {
    BackupWriter w(dir, v2_header());
    w.add_hashed(0, aa.data(), 4096);
    w.add(4096, 1 << 20, 1, BackupRecord::k_chosen, {1, 2, 3, 4}, m1.data(), 4096);
    w.add(4096, 1 << 20, 2, 0, {1, 2, 3, 4}, m2.data(), 4096);
    w.add_hashed(8192, bb.data(), 4096);
    CHECK_THROWS_AS(w.add_hashed(0, aa.data(), k_max_hashed + 1), Error);
    return w.commit(name);
  }
};

} // namespace

TEST_CASE("repair: format 2 keeps a SHA-256 of the stretches rewritten unchanged")
{
  TempDir dir;
  V2Backup b;
  const auto& [aa, bb, m1, m2] = std::tie(b.aa, b.bb, b.m1, b.m2);
  const std::string p = b.write(dir.path, "v2.vmcsum-backup");
  // The digest and the magic line, checked against tools of their own (Python's hashlib).
  std::ifstream in(p, std::ios::binary);
  std::string line;
  std::getline(in, line);
  CHECK(line == "vmcsum-repair-backup 2");
  BackupReader r(p);
  CHECK(r.format() == 2);
  r.verify_complete();
  BackupRecord rec;
  REQUIRE(r.next(rec));
  CHECK(rec.hashed());
  CHECK(rec.offset == 0);
  CHECK(rec.length == 4096);
  CHECK(rec.data.empty());
  CHECK(hex_of(rec.sha256) == "c622005493c4cb75f3e08eda4cc0bfe172e2c5eeca661ec4908c5490fc3d6994");
  REQUIRE(r.next(rec));
  CHECK_FALSE(rec.hashed());
  CHECK(rec.chosen());
  CHECK(rec.data == m1);
  REQUIRE(r.next(rec));
  CHECK(rec.data == m2);
  REQUIRE(r.next(rec));
  CHECK(rec.hashed());
  CHECK(rec.offset == 8192);
  CHECK(hex_of(rec.sha256) == "15e4f1aac8507317040181a8e042bd52fa7fe29e0cf390775cd4e43d01fc5c4b");
  CHECK_FALSE(r.next(rec));
  // The whole file is 23 + header + 2 hashed records of 60 bytes + 2 copies + trailer: no data
  // beside the copies.
  const auto size = std::filesystem::file_size(p);
  CHECK(size < 2 * 4096 + 2 * 60 + 2 * 80 + 1024);
}

TEST_CASE("repair: a damaged, misplaced or out-of-format hashed record is refused")
{
  TempDir dir;
  std::vector<uint8_t> aa(4096, 0xaa);
  std::string p;
  {
    BackupWriter w(dir.path, v2_header());
    w.add_hashed(4096, aa.data(), 4096);
    p = w.commit("h.vmcsum-backup");
  }
  const auto size = std::filesystem::file_size(p);
  auto variant = [&](const std::string& name, long at, char byte) {
    const std::string q = dir.path + "/" + name;
    std::filesystem::copy_file(p, q);
    std::fstream f(q, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(at);
    f.put(byte);
    return q;
  };
  // The record is the 60 bytes before the 20-byte trailer: magic, offset (+4), length (+12),
  // algorithm (+16), digest (+20), XXH64 of the 52 bytes before it (+52).
  const long rec = static_cast<long>(size) - 20 - 60;
  CHECK_NOTHROW(BackupReader(p).verify_complete());
  CHECK_THROWS_WITH_AS(BackupReader(variant("digest", rec + 20, 0x55)).verify_complete(),
                       doctest::Contains("is damaged"), Error);
  // Fields changed with the record's XXH64 made to match: each is refused for what it says.
  auto resealed = [&](const std::string& name, long at, uint32_t value) {
    const std::string q = dir.path + "/" + name;
    std::filesystem::copy_file(p, q);
    std::fstream f(q, std::ios::in | std::ios::out | std::ios::binary);
    uint8_t body[52];
    f.seekg(rec);
    f.read(reinterpret_cast<char*>(body), sizeof body);
    for (int i = 0; i < 4; ++i) {
      body[at - rec + i] = static_cast<uint8_t>(value >> (8 * i));
    }
    uint64_t h = XXH64(body, sizeof body, 0);
    uint8_t le[8];
    for (int i = 0; i < 8; ++i) {
      le[i] = static_cast<uint8_t>(h >> (8 * i));
    }
    f.seekp(rec);
    f.write(reinterpret_cast<const char*>(body), sizeof body);
    f.write(reinterpret_cast<const char*>(le), sizeof le);
    return q;
  };
  CHECK_THROWS_WITH_AS(BackupReader(resealed("algo", rec + 16, 2)).verify_complete(),
                       doctest::Contains("unknown digest algorithm 2"), Error);
  CHECK_THROWS_WITH_AS(BackupReader(resealed("zero", rec + 12, 0)).verify_complete(),
                       doctest::Contains("hashed record of 0 bytes"), Error);
  CHECK_THROWS_WITH_AS(BackupReader(resealed("long", rec + 12, k_max_hashed + 1)).verify_complete(),
                       doctest::Contains("hashed record of"), Error);
  // "VMCH" in a file that says format 1: not a record of that format.
  CHECK_THROWS_AS(BackupReader(variant("format1", 21, '1')).verify_complete(), Error);
  // Outside the header's ranges: the header's first range is [0, 12288); one of [4096, 12288)
  // from offset 12288 on is refused even with an intact XXH64 (made by the writer itself).
  {
    BackupWriter w(dir.path, v2_header());
    w.add_hashed(12288, aa.data(), 4096);
    const std::string q = w.commit("outside.vmcsum-backup");
    CHECK_THROWS_WITH_AS(BackupReader(q).verify_complete(),
                         doctest::Contains("outside the header's ranges"), Error);
  }
  // A range ending mid-sector (the file's size): a device copy may fill its last sector, a
  // hashed stretch (bytes read through the file) may not reach past it.
  {
    BackupHeader h = v2_header();
    h.ranges = {{0, 10000}};
    BackupWriter copy(dir.path, h);
    copy.add(8192, 1 << 20, 1, BackupRecord::k_chosen, {}, aa.data(), 4096);
    CHECK_NOTHROW(BackupReader(copy.commit("copy.vmcsum-backup")).verify_complete());
    BackupWriter hashed(dir.path, h);
    hashed.add_hashed(8192, aa.data(), 4096);
    CHECK_THROWS_WITH_AS(BackupReader(hashed.commit("past.vmcsum-backup")).verify_complete(),
                         doctest::Contains("outside the header's ranges"), Error);
    BackupWriter fits(dir.path, h);
    fits.add_hashed(8192, aa.data(), 10000 - 8192);
    CHECK_NOTHROW(BackupReader(fits.commit("fits.vmcsum-backup")).verify_complete());
  }
  // The bytes as read kept as a record (mirror 0) is format 1's way, not format 2's.
  {
    BackupWriter w(dir.path, v2_header());
    w.add(0, 0, 0, 0, {}, aa.data(), 4096);
    CHECK_THROWS_WITH_AS(BackupReader(w.commit("m0.vmcsum-backup")).verify_complete(),
                         doctest::Contains("mirror 0"), Error);
  }
}

TEST_CASE("repair: the applier checks each hashed stretch before it writes it, and stops there")
{
  using repair_detail::ApplyMode;
  using repair_detail::BackupApplier;
  TempDir dir;
  V2Backup b;
  const auto& [aa, bb, m1, m2] = std::tie(b.aa, b.bb, b.m1, b.m2);
  const std::string p = b.write(dir.path, "a.vmcsum-backup");
  // The image: what the repair found (bad sector: zeroes), then what it should hold after.
  const std::string img = dir.path + "/img";
  auto write_img = [&](uint8_t second) {
    std::vector<uint8_t> all;
    all.insert(all.end(), aa.begin(), aa.end());
    all.insert(all.end(), 4096, second);
    all.insert(all.end(), bb.begin(), bb.end());
    std::ofstream(img, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(all.data()), static_cast<std::streamsize>(all.size()));
  };
  auto put_byte = [&](long off, char byte) {
    std::fstream f(img, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(off);
    f.put(byte);
  };
  auto read_img = [&](uint64_t off) {
    std::ifstream in(img, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(off));
    return in.get();
  };
  std::vector<RewriteRange> ranges(1);
  ranges[0].length = 12288;
  RateLimiter limiter(0);
  auto applier = [&](int fd, std::optional<unsigned> prefer = std::nullopt) {
    return BackupApplier(
      fd, img, ranges, prefer, limiter, [](uint64_t) {}, [] {});
  };
  std::string diff;
  write_img(0);
  {
    sys::Fd fd(::open(img.c_str(), O_RDWR | O_CLOEXEC));
    BackupReader r(p);
    auto a = applier(*fd);
    a.run(r, ApplyMode::rewrite, diff);
    CHECK(read_img(4096) == 0x11); // the chosen copy
    CHECK(read_img(0) == 0xaa);
    CHECK(read_img(8192) == 0xbb);
    // The digest of the range as it now is: the one the O_DIRECT read-back must find.
    sys::Hasher h;
    std::vector<uint8_t> after(aa);
    after.insert(after.end(), m1.begin(), m1.end());
    after.insert(after.end(), bb.begin(), bb.end());
    h.update(after.data(), after.size());
    CHECK(a.digests().digest(0) == h.hex());
  }
  // One run of a writing mode checked against `known`: "same", or the Stop's code and message;
  // `written` counts the bytes it got through.
  uint64_t written = 0;
  auto apply_with = [&](ApplyMode mode, const repair_detail::StretchDigests& known) {
    sys::Fd fd(::open(img.c_str(), O_RDWR | O_CLOEXEC));
    BackupReader r(p);
    written = 0;
    BackupApplier a(
      *fd, img, ranges, std::nullopt, limiter, [&](uint64_t n) { written += n; }, [] {});
    a.check_stretches_against(known);
    try {
      return std::string(a.run(r, mode, diff) ? "same" : "difference");
    } catch (const repair_detail::Stop& stop) {
      return stop.code + ": " + stop.message;
    }
  };
  // The repair's own run checks each stretch against what its backup phase read (kept in
  // memory): the XXH3 of the bytes, not the SHA-256 computed again, and the SHA-256 it recorded
  // against the one in the file. Either wrong stops it before the stretch is written; a stretch
  // it has no digest of (another length) is checked against the file's SHA-256 alone.
  {
    using repair_detail::stretch_xxh3;
    using repair_detail::StretchDigest;
    auto rewrite_with = [&](const repair_detail::StretchDigests& known) {
      return apply_with(ApplyMode::rewrite, known);
    };
    auto stopped_at_8192 = [&](const std::string& s) {
      // The stretch before it and the bad sector written, not the stretch at 8192.
      return s.rfind("changed: the 4096 bytes at offset 8192", 0) == 0 && written == 8192;
    };
    const StretchDigest ka{4096, stretch_xxh3(aa.data(), 4096), stretch_digest(aa.data(), 4096)};
    const StretchDigest kb{4096, stretch_xxh3(bb.data(), 4096), stretch_digest(bb.data(), 4096)};
    CHECK(ka.xxh3.size() == 32);
    CHECK(ka.xxh3 != kb.xxh3);
    CHECK(rewrite_with({{0, ka}, {8192, kb}}) == "same");
    CHECK(written == 12288);
    // The in-memory XXH3 is what is checked: a wrong one stops although the SHA-256 matches.
    CHECK(stopped_at_8192(rewrite_with({{0, ka}, {8192, {4096, ka.xxh3, kb.sha256}}})));
    // The SHA-256 the backup phase recorded must be the file's: a backup that does not name the
    // bytes the repair leaves (what undo checks) stops the write although the bytes match.
    CHECK(stopped_at_8192(rewrite_with({{0, ka}, {8192, {4096, kb.xxh3, ka.sha256}}})));
    CHECK(rewrite_with({{0, ka}, {8192, {4095, ka.xxh3, ka.sha256}}}) == "same");
    put_byte(9000, '\x01');
    CHECK(stopped_at_8192(rewrite_with({{0, ka}, {8192, kb}})));
    CHECK(read_img(9000) == 0x01);
    put_byte(9000, '\xbb');
    CHECK(read_img(4096) == 0x11);
  }
  // One run of the applier over the whole backup, on a descriptor of its own: "same" when it
  // ran through, else "hashed" or "record" for where the first difference was.
  auto run = [&](ApplyMode mode, std::optional<unsigned> prefer = std::nullopt,
                 const std::string& backup = {}) {
    sys::Fd fd(::open(img.c_str(), O_RDWR | O_CLOEXEC));
    BackupReader r(backup.empty() ? p : backup);
    auto a = applier(*fd, prefer);
    return a.run(r, mode, diff) ? "same" : a.difference_hashed() ? "hashed" : "record";
  };
  CHECK(std::string(run(ApplyMode::compare)) == "same");
  // Undo's compare keeps each hashed stretch it matched (the backup's SHA-256 and the XXH3 of
  // the bytes it read) for its write phase; a stretch that differs is not kept.
  {
    using repair_detail::stretch_xxh3;
    auto matched = [&](ApplyMode mode) {
      sys::Fd fd(::open(img.c_str(), O_RDWR | O_CLOEXEC));
      BackupReader r(p);
      auto a = applier(*fd);
      a.run(r, mode, diff);
      return a.matched_stretches();
    };
    for (ApplyMode mode : {ApplyMode::compare, ApplyMode::compare_hashed}) {
      const auto m = matched(mode);
      REQUIRE(m.size() == 2);
      CHECK(m.at(0).length == 4096);
      CHECK(m.at(0).xxh3 == stretch_xxh3(aa.data(), 4096));
      CHECK(m.at(0).sha256 == stretch_digest(aa.data(), 4096));
      CHECK(m.at(8192).xxh3 == stretch_xxh3(bb.data(), 4096));
      CHECK(m.at(8192).sha256 == stretch_digest(bb.data(), 4096));
    }
    put_byte(9000, '\x01');
    const auto m = matched(ApplyMode::compare_hashed);
    CHECK(m.count(0) == 1);
    CHECK(m.count(8192) == 0);
    put_byte(9000, '\xbb');
    // Restore against what compare matched (what undo's write phase does): each stretch is
    // checked against that XXH3, so bytes changed since compare stop it before that stretch,
    // and so does an XXH3 that is not the bytes' although the SHA-256 is right.
    const auto whole = matched(ApplyMode::compare);
    auto restore_with = [&](const repair_detail::StretchDigests& known) {
      const std::string got = apply_with(ApplyMode::restore, known);
      return got.substr(0, got.find(':'));
    };
    CHECK(restore_with(whole) == "same");
    CHECK(written == 12288);
    auto wrong = whole;
    wrong.at(8192).xxh3 = whole.at(0).xxh3;
    CHECK(restore_with(wrong) == "changed");
    CHECK(written == 8192); // the stretch at 0 and the bad sector, not the stretch at 8192
    put_byte(9000, '\x01');
    CHECK(restore_with(whole) == "changed");
    CHECK(written == 8192);
    CHECK(read_img(9000) == 0x01);
    put_byte(9000, '\xbb');
  }
  // A guest write in a hashed stretch: compare says so and names it a hashed difference; undo's
  // --force pass over the hashed stretches too; writing modes stop before writing anything there.
  put_byte(9000, '\x01');
  CHECK(std::string(run(ApplyMode::compare)) == "hashed");
  CHECK(diff.find("offset 8192") != std::string::npos);
  CHECK(std::string(run(ApplyMode::compare_hashed)) == "hashed");
  CHECK_THROWS_AS(run(ApplyMode::restore, 2u), repair_detail::Stop);
  CHECK(read_img(4096) == 0x22); // copy 2 went before the stretch that changed...
  CHECK(read_img(9000) == 0x01); // ...which was left alone
  CHECK_THROWS_AS(run(ApplyMode::rewrite), repair_detail::Stop);
  CHECK(read_img(4096) == 0x11); // the chosen copy, before the stretch...
  CHECK(read_img(9000) == 0x01); // ...which it did not write
  // Put the guest's byte back: a difference in a record only (copy 2 is not in the file) is not
  // a hashed one, and the hashed-only pass finds nothing.
  put_byte(9000, '\xbb');
  CHECK(std::string(run(ApplyMode::compare, 2u)) == "record");
  CHECK(std::string(run(ApplyMode::compare_hashed, 2u)) == "same");
  CHECK(std::string(run(ApplyMode::restore, 2u)) == "same");
  CHECK(read_img(4096) == 0x22);
  CHECK(std::string(run(ApplyMode::compare, 2u)) == "same");
  // A format-1 backup of the same ranges (tests/unit/data: 0xaa, copies 0x11 chosen and 0x22,
  // 0xbb) keeps the bytes themselves: a change outside the bad sector is a difference in a
  // record, and restoring writes the saved bytes back over it.
  const std::string v1 = VMCSUM_TEST_DATA "/backup-format1.vmcsum-backup";
  put_byte(100, '\x01');
  CHECK(std::string(run(ApplyMode::compare, std::nullopt, v1)) == "record");
  CHECK(std::string(run(ApplyMode::compare_hashed, std::nullopt, v1)) == "same");
  CHECK(std::string(run(ApplyMode::restore, std::nullopt, v1)) == "same");
  CHECK(read_img(100) == 0xaa);
  CHECK(read_img(4096) == 0x11);
  CHECK(std::string(run(ApplyMode::compare, std::nullopt, v1)) == "same");
}

TEST_CASE(
  "repair and undo: the write lease refuses a file open elsewhere, notes when none is given")
{
  TempDir dir;
  const std::string f = dir.path + "/img";
  std::ofstream(f) << "x";
  std::vector<std::string> notes;
  {
    sys::Fd fd(::open(f.c_str(), O_RDWR | O_CLOEXEC));
    std::optional<sys::Lease> lease;
    repair_detail::take_write_lease(lease, *fd, notes);
    CHECK(lease->active());
    CHECK(notes.empty());
  }
  {
    // Another descriptor of the file open (a guest's): the kernel refuses the lease (EAGAIN).
    sys::Fd fd(::open(f.c_str(), O_RDWR | O_CLOEXEC));
    sys::Fd other(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
    std::optional<sys::Lease> lease;
    try {
      repair_detail::take_write_lease(lease, *fd, notes);
      FAIL("no stop");
    } catch (const repair_detail::Stop& stop) {
      CHECK(stop.code == "in-use");
      CHECK(stop.outcome == RepairAction::refused);
    }
    CHECK(notes.empty());
  }
  {
    // No lease for another reason (a pipe: EINVAL): the writes go on, and a note says so.
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    sys::Fd r(p[0]);
    sys::Fd w(p[1]);
    std::optional<sys::Lease> lease;
    repair_detail::take_write_lease(lease, *w, notes);
    CHECK_FALSE(lease->active());
    REQUIRE(notes.size() == 1);
    CHECK(notes[0].rfind("no write lease (", 0) == 0);
  }
}

TEST_CASE("repair: backup file names fit NAME_MAX and end in the suffix")
{
  std::string longname(300, 'a');
  auto n = backup_file_name(longname, 257, "20261124T190000Z");
  CHECK(n.size() <= 255);
  CHECK(n.substr(n.size() - 14) == ".vmcsum-backup");
  CHECK(backup_file_name("vm.raw", 257, "S") == "vm.raw.257.S.vmcsum-backup");
}

TEST_CASE("repair: --from takes only vmcsum.scrub/1 documents")
{
  auto m = parse_scrub_report(R"({"schema":"vmcsum.scrub/1","files":[
    {"path":"/a/vm\\xff.raw","bad":[{"offset":4096,"length":4096},{"offset":12288,"length":4096}]},
    {"path":"/b","bad":[]}]})");
  REQUIRE(m.size() == 2);
  REQUIRE(m.count("/a/vm\xff.raw") == 1);
  CHECK(m["/a/vm\xff.raw"].size() == 2);
  CHECK(m["/a/vm\xff.raw"][1].first == 12288);
  CHECK(m["/b"].empty());
  CHECK_THROWS_AS(parse_scrub_report("not json"), Error);
  CHECK_THROWS_AS(parse_scrub_report(R"({"schema":"vmcsum.audit/1","files":[]})"), Error);
  CHECK_THROWS_AS(parse_scrub_report(R"({"schema":"vmcsum.scrub/1","files":[{"bad":[]}]})"), Error);
}

TEST_CASE("file extent items decode as btrfs writes them")
{
  std::vector<uint8_t> item(53, 0);
  auto put = [&](size_t off, uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      item[off + i] = static_cast<uint8_t>(v >> (8 * i));
    }
  };
  put(0, 7);         // generation
  put(8, 1 << 20);   // ram_bytes
  item[20] = 1;      // regular
  put(21, 13631488); // disk_bytenr
  put(29, 1 << 20);  // disk_num_bytes
  put(37, 8192);     // offset
  put(45, 65536);    // num_bytes
  auto e = btrfs::decode_file_extent(40960, item);
  CHECK(e.generation == 7);
  CHECK(e.type == btrfs::FileExtentType::regular);
  CHECK(e.disk_bytenr == 13631488);
  CHECK(e.extent_offset == 8192);
  CHECK(e.num_bytes == 65536);
  CHECK(e.logical_of(40960 + 4096) == 13631488 + 8192 + 4096);
  CHECK_FALSE(e.hole());
  item[20] = 0; // inline: only the first 21 bytes count
  auto in = btrfs::decode_file_extent(0, std::span<const uint8_t>(item.data(), 30));
  CHECK(in.type == btrfs::FileExtentType::inline_data);
  CHECK(in.num_bytes == 1u << 20);
  CHECK_THROWS_AS(btrfs::decode_file_extent(0, std::span<const uint8_t>(item.data(), 10)), Error);
  item[20] = 1;
  CHECK_THROWS_AS(btrfs::decode_file_extent(0, std::span<const uint8_t>(item.data(), 40)), Error);
}

TEST_CASE("repair --then-nocow: worthwhile only for single-copy data profiles")
{
  std::string why;
  CHECK(nocow_worthwhile({"single"}, why));
  CHECK(nocow_worthwhile({"raid0"}, why));
  for (const char* p : {"dup", "raid1", "raid1c3", "raid1c4", "raid10", "raid5", "raid6"}) {
    CHECK_FALSE(nocow_worthwhile({p}, why));
    CHECK(why.find("copies") != std::string::npos);
  }
  CHECK_FALSE(nocow_worthwhile({"single", "raid1"}, why)); // mid-conversion
  CHECK_FALSE(nocow_worthwhile({"unknown"}, why));
  CHECK_FALSE(nocow_worthwhile({}, why));
  CHECK(why.find("unknown") != std::string::npos);
}

TEST_CASE("backup temps: an unfinished one of a dead run goes, an image named like one stays")
{
  TempDir dir;
  BackupHeader h;
  h.path = "/a";
  h.ranges = {{0, 4096}};
  std::vector<uint8_t> data(4096, 7);
  // A killed run: its temp file stays (released from the writer without commit or unlink).
  std::string leftover;
  {
    BackupWriter w(dir.path, h);
    w.add(0, 1 << 20, 1, BackupRecord::k_chosen, {}, data.data(), 4096);
    for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
      leftover = e.path().filename();
    }
    REQUIRE(vmcsum::sys::is_temp_name(leftover));
    // Another vmcsum holds it locked while it writes: not stale.
    CHECK(remove_stale_backup_temps(dir.path).empty());
    std::filesystem::create_hard_link(dir.path + "/" + leftover, dir.path + "/keep");
  }
  // The writer's destructor removed its name; put the dead run's file back under it.
  std::filesystem::rename(dir.path + "/keep", dir.path + "/" + leftover);
  // An image someone named like a temp file, without vmcsum's marker (issue 12 #3).
  const std::string image = dir.path + "/.vmcsum-backup.vmcsum-tmp.abc123";
  std::ofstream(image) << "an image";
  const std::string left = dir.path + "/" + leftover;
  char v[256];
  const bool marked =
    ::getxattr(left.c_str(), vmcsum::sys::k_temp_marker_trusted, v, sizeof v) >= 0 ||
    ::getxattr(left.c_str(), vmcsum::sys::k_temp_marker_user, v, sizeof v) >= 0;
  const auto removed = remove_stale_backup_temps(dir.path);
  if (!marked) {
    // No xattrs here (tmpfs before 6.6 as non-root): nothing can prove it ours, so it stays.
    CHECK(removed.empty());
    return;
  }
  REQUIRE(removed.size() == 1);
  CHECK(removed[0] == dir.path + "/" + leftover);
  CHECK(std::filesystem::exists(image));
}

TEST_CASE(
  "repair: what is written and read back is the inode examined, not what its path names now")
{
  TempDir d;
  const std::string img = d.path + "/vm.raw";
  const std::string other = d.path + "/other.raw";
  std::ofstream(img) << std::string(16384, 'a');
  std::ofstream(other) << std::string(16384, 'b');
  struct stat st = {};
  sys::Fd examined = repair_detail::open_regular(img, st);
  // Someone renames another file over the image's name after it was examined.
  REQUIRE(::rename(other.c_str(), img.c_str()) == 0);
  sys::Fd rw = repair_detail::reopen(*examined, O_RDWR, st, img);
  struct stat now = {};
  REQUIRE(::fstat(*rw, &now) == 0);
  CHECK(now.st_ino == st.st_ino);
  char c = 0;
  REQUIRE(::pread(*rw, &c, 1, 0) == 1);
  CHECK(c == 'a');
  // A descriptor of another inode is refused, never written.
  struct stat path_now = {};
  REQUIRE(::stat(img.c_str(), &path_now) == 0);
  CHECK(path_now.st_ino != st.st_ino);
  CHECK_THROWS_AS(repair_detail::reopen(*examined, O_RDWR, path_now, img), WriteStop);
}

TEST_CASE("repair: the O_DIRECT read-back compares with the digests of what was written")
{
  TempDir d;
  const std::string img = d.path + "/vm.raw";
  std::string bytes(3 * 65536 + 1000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<char>(i * 7 + i / 4096);
  }
  std::ofstream(img, std::ios::binary) << bytes;
  std::vector<RewriteRange> ranges(2);
  ranges[0].offset = 4096;
  ranges[0].length = 8192;
  ranges[1].offset = 2 * 65536;
  ranges[1].length = bytes.size() - 2 * 65536; // the file's tail, not a whole sector
  repair_detail::Digests written(ranges.size());
  for (size_t i = 0; i < ranges.size(); ++i) {
    written.update(i, reinterpret_cast<const uint8_t*>(bytes.data()) + ranges[i].offset,
                   ranges[i].length);
  }
  struct stat st = {};
  sys::Fd fd = repair_detail::open_regular(img, st);
  RateLimiter unlimited(0);
  std::vector<std::string> notes;
  RepairVerify v =
    repair_detail::verify_ranges(*fd, st, img, ranges, written, bytes.size(), unlimited, notes);
  CHECK(v.method == "o_direct");
  CHECK(v.readable);
  CHECK(v.matches);
  CHECK(notes.empty());
  // One byte of the second range differs from what was written.
  {
    sys::Fd w(::open(img.c_str(), O_WRONLY | O_CLOEXEC));
    REQUIRE(::pwrite(*w, "?", 1, 2 * 65536 + 10) == 1);
  }
  v = repair_detail::verify_ranges(*fd, st, img, ranges, written, bytes.size(), unlimited, notes);
  CHECK(v.readable);
  CHECK_FALSE(v.matches);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("offset 131072") != std::string::npos);
}
