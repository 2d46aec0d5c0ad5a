// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// plan_repair() row by row, the backup binding (issue 12 #2), records outside a backup's ranges,
// the one selection compare and write share, and the exit severity.
#include "repair/repair_internal.hpp"

#include <vmcsum/error.hpp>
#include <vmcsum/repair/backup_binding.hpp>
#include <vmcsum/repair/repair.hpp>
#include <vmcsum/repair/repair_backup.hpp>
#include <vmcsum/repair/repair_plan.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

using namespace vmcsum;
using namespace vmcsum::core;

namespace {

constexpr uint64_t K = 1024;
constexpr uint64_t M = 1024 * 1024;

btrfs::FileExtent item(uint64_t off, uint64_t len, uint64_t bytenr, uint64_t extent_offset = 0,
                       uint64_t disk_len = 0)
{
  btrfs::FileExtent e;
  e.file_offset = off;
  e.num_bytes = len;
  e.disk_bytenr = bytenr;
  e.disk_num_bytes = disk_len ? disk_len : len;
  e.extent_offset = extent_offset;
  return e;
}

// repair.sh's image: extent A (1 MiB at 0) whose middle 256 KiB was overwritten later (B), so A
// backs [0,256K) and [512K,1M); C (512 KiB at 1 MiB); D (256 KiB at 1.5 MiB).
RepairPlanInput four_extents()
{
  RepairPlanInput in;
  in.extents = {item(0, 256 * K, 100 * M, 0, M), item(256 * K, 256 * K, 200 * M),
                item(512 * K, 512 * K, 100 * M, 512 * K, M), item(M, 512 * K, 300 * M),
                item(M + 512 * K, 256 * K, 400 * M)};
  in.size = M + 768 * K;
  in.free_bytes = 10ULL << 30;
  return in;
}

void bad_at(RepairPlanInput& in, uint64_t off, std::optional<unsigned> mirror, unsigned copies = 2)
{
  SectorToRewrite s;
  s.sector.offset = off;
  s.sector.length = 4096;
  s.sector.copies.resize(copies);
  s.mirror = mirror;
  in.rewrite[off] = s;
}

std::string ranges_of(const RepairPlan& p)
{
  std::string s;
  for (const auto& r : p.ranges) {
    s += (s.empty() ? "" : " ") + std::to_string(r.offset / K) + "K+" +
         std::to_string(r.length / K) + "K" + (r.resumed ? "r" : "");
  }
  return s;
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

BackupHeader header()
{
  BackupHeader h;
  h.path = "/srv/vm.raw";
  h.fsid = "0f0e0d0c-0b0a-0908-0706-050403020100";
  h.subvolume = 256;
  h.inode = 257;
  h.size = 1 << 20;
  h.ranges = {{0, 8192}};
  return h;
}

} // namespace

TEST_CASE("plan_repair: a bad sector rewrites every range of its extent, nothing else")
{
  auto in = four_extents();
  bad_at(in, 600 * K, 1); // in A, through its second reference
  const auto p = plan_repair(in);
  REQUIRE_FALSE(p.refusal);
  CHECK(ranges_of(p) == "0K+256K 512K+512K");
  CHECK(p.damaged == std::set<uint64_t>{100 * M});
  CHECK(p.rewrite_bytes == 768 * K);
  CHECK(p.device_sectors == 1);
  CHECK(p.ranges[0].old_logical == 100 * M);
  CHECK(p.ranges[1].old_logical == 100 * M + 512 * K);
  CHECK(p.ranges[1].extent_bytes == M);
}

TEST_CASE("plan_repair: two bad extents, a read-repaired sector counts no device copy")
{
  auto in = four_extents();
  bad_at(in, M + 4 * K, 2, 3);
  bad_at(in, M + 600 * K, std::nullopt);
  const auto p = plan_repair(in);
  CHECK(ranges_of(p) == "1024K+512K 1536K+256K");
  CHECK(p.device_sectors == 1);
  // Header page, every copy of the one device sector, record headers: two hashed stretches per
  // range (one chunk, and one more after a bad sector), the sector's copies and two more.
  CHECK(p.backup_estimate == 4096 + 3 * 4096 + (2 * 2 + 1 * 5) * 80);
  // Under --limit-rate the backup is read in shorter chunks, each a hashed record of its own.
  in.chunk = 64 * K;
  CHECK(plan_repair(in).backup_estimate == 4096 + 3 * 4096 + ((8 + 1) + (4 + 1) + 1 * 5) * 80);
  CHECK(p.needed_bytes == 768 * K + space_margin(768 * K));
}

TEST_CASE("plan_repair: the last range stops at the file's size")
{
  auto in = four_extents();
  in.size = M + 600 * K; // D's item reaches past the size (a truncate not yet reflected)
  bad_at(in, M + 520 * K, 1);
  CHECK(ranges_of(plan_repair(in)) == "1536K+88K");
}

TEST_CASE("plan_repair: a pending backup's ranges are resumed, overlaps trimmed")
{
  auto in = four_extents();
  bad_at(in, 4 * K, 1);
  in.resumed = {{0, 128 * K},       // inside A's first range: covered, not repeated
                {900 * K, 200 * K}, // straddles A's second range and C: trimmed to C's part
                {1600 * K, 64 * K}, // in D
                {4 * M, 4096}};     // past the end: dropped
  const auto p = plan_repair(in);
  CHECK(ranges_of(p) == "0K+256K 512K+512K 1024K+76Kr 1600K+64Kr");
  CHECK(p.ranges[2].resumed);
  CHECK(p.ranges[3].extent_bytenr == 400 * M);
  CHECK(p.ranges[3].old_logical == 400 * M + 64 * K);
}

TEST_CASE("plan_repair: only resumed ranges (the bad sectors are gone)")
{
  auto in = four_extents();
  in.resumed = {{M, 512 * K}};
  const auto p = plan_repair(in);
  CHECK(ranges_of(p) == "1024K+512Kr");
  CHECK(p.damaged.empty());
  CHECK(p.device_sectors == 0);
}

TEST_CASE("plan_repair: a sector no longer in a plain extent: failed, changed")
{
  for (int row = 0; row < 4; ++row) {
    CAPTURE(row);
    auto in = four_extents();
    bad_at(in, 300 * K, 1); // in B
    if (row == 0) {
      in.extents[1].compression = 3;
    } else if (row == 1) {
      in.extents[1].type = btrfs::FileExtentType::prealloc;
    } else if (row == 2) {
      in.extents[1].disk_bytenr = 0; // a hole now
    } else {
      in.extents.erase(in.extents.begin() + 1); // no item there any more
    }
    const auto p = plan_repair(in);
    REQUIRE(p.refusal);
    CHECK(p.refusal->action == RepairAction::failed);
    CHECK(p.refusal->code == "changed");
  }
}

TEST_CASE("plan_repair: not enough space is refused; unknown space is not")
{
  auto in = four_extents();
  bad_at(in, M + 4 * K, 1);
  in.free_bytes = 32 * M; // < 512K + 32M margin
  auto p = plan_repair(in);
  REQUIRE(p.refusal);
  CHECK(p.refusal->action == RepairAction::refused);
  CHECK(p.refusal->code == "no-space");
  in.free_bytes = std::nullopt;
  CHECK_FALSE(plan_repair(in).refusal);
}

TEST_CASE("backup binding: encoded and decoded, vouches only for its own header")
{
  const BackupHeader h = header();
  const std::string sha(64, 'a');
  const BackupBinding b = binding_of(h, sha, 42);
  const BackupBinding d = decode_backup_binding(encode_backup_binding(b));
  CHECK(d.sha256 == sha);
  CHECK(d.dev == 42);
  CHECK_FALSE(binding_mismatch(h, d));
  CHECK(binding_mismatch(h, std::nullopt));
  for (int row = 0; row < 5; ++row) {
    CAPTURE(row);
    BackupHeader other = h;
    if (row == 0) {
      other.path = "/etc/shadow";
    } else if (row == 1) {
      other.fsid = "ffffffff-0b0a-0908-0706-050403020100";
    } else if (row == 2) {
      other.subvolume = 5;
    } else if (row == 3) {
      other.inode = 258;
    } else {
      other.ranges = {{0, 1 << 20}};
    }
    CHECK(binding_mismatch(other, d));
  }
  CHECK_THROWS_AS(decode_backup_binding("{}"), Error);
}

TEST_CASE("backup header, binding and --from: a number that is no integer of the field's range "
          "is refused, never converted")
{
  // The header as repair writes it decodes; each variant puts one value where an integer of the
  // field's type belongs. fuzz_repair_inputs found the fraction: get<uint32_t>() converted it with
  // static_cast, undefined behaviour out of range.
  const std::string good = encode_backup_header(header());
  CHECK(decode_backup_header(good).sectorsize == 4096);
  const std::string sector = "\"sectorsize\":4096";
  REQUIRE(good.find(sector) != std::string::npos);
  for (const char* bad : {"4.02e104", "4096.0", "-4096", "4294967296", "\"4096\"", "null"}) {
    CAPTURE(bad);
    std::string text = good;
    text.replace(text.find(sector), sector.size(), std::string("\"sectorsize\":") + bad);
    CHECK_THROWS_WITH_AS(decode_backup_header(text), doctest::Contains("backup header"), Error);
  }
  // A signed field takes a negative number (a time before 1970), not a fraction.
  const auto with_mtime = [&](const std::string& value) {
    std::string text = good;
    const size_t at = text.find("\"mtime\":[");
    REQUIRE(at != std::string::npos);
    text.replace(at, text.find(']', at) + 1 - at, "\"mtime\":" + value);
    return text;
  };
  CHECK(decode_backup_header(with_mtime("[-1,5]")).mtime_sec == -1);
  CHECK(decode_backup_header(with_mtime("[-1,5]")).mtime_nsec == 5);
  CHECK_THROWS_AS(decode_backup_header(with_mtime("[0.5e30,5]")), Error);
  CHECK_THROWS_AS(decode_backup_header(with_mtime("[1e19,5]")), Error);

  const std::string binding = encode_backup_binding(binding_of(header(), std::string(64, 'a'), 42));
  CHECK(decode_backup_binding(binding).dev == 42);
  std::string dev = binding;
  dev.replace(dev.find("\"dev\":42"), 8, "\"dev\":-42");
  CHECK_THROWS_WITH_AS(decode_backup_binding(dev), doctest::Contains("backup record"), Error);

  CHECK_THROWS_WITH_AS(parse_scrub_report(R"({"schema":"vmcsum.scrub/2","files":[
    {"path":"/a","bad":[{"offset":1e300,"length":4096}]}]})"),
                       doctest::Contains("scrub report"), Error);
  CHECK_THROWS_AS(parse_scrub_report(R"({"schema":"vmcsum.scrub/2","files":[
    {"path":"/a","bad":[{"offset":0,"length":-4096}]}]})"),
                  Error);
  // Integers, but their end wraps past 2^64: the range would read as already done.
  CHECK_THROWS_WITH_AS(parse_scrub_report(R"({"schema":"vmcsum.scrub/2","files":[
    {"path":"/a","bad":[{"offset":4096,"length":18446744073709551615}]}]})"),
                       doctest::Contains("past 2^64"), Error);
  CHECK(parse_scrub_report(R"({"schema":"vmcsum.scrub/2","files":[
    {"path":"/a","bad":[{"offset":4096,"length":18446744073709547519}]}]})")
          .at("/a")
          .size() == 1);
  std::string wraps = good;
  const size_t ranges = wraps.find("\"ranges\":[[");
  REQUIRE(ranges != std::string::npos);
  wraps.replace(ranges, wraps.find(']', ranges) - ranges, "\"ranges\":[[4096,18446744073709551615");
  CHECK_THROWS_WITH_AS(decode_backup_header(wraps), doctest::Contains("past 2^64"), Error);
}

TEST_CASE("backup binding: recorded under the state directory, found by the file's SHA-256")
{
  TempDir dir;
  const std::string state = dir.path + "/state";
  BackupHeader h = header();
  std::vector<uint8_t> data(8192, 7);
  std::string p;
  std::string written_sha;
  {
    BackupWriter w(dir.path, h);
    w.add_hashed(0, data.data(), 8192);
    p = w.commit("b.vmcsum-backup");
    written_sha = w.sha256();
  }
  BackupReader r(p);
  CHECK(r.sha256() == written_sha);
  CHECK(r.owned_by_us());
  CHECK_FALSE(find_backup_binding(state, written_sha)); // nothing recorded yet
  record_backup_binding(state, binding_of(h, written_sha, 1));
  auto found = find_backup_binding(state, r.sha256());
  REQUIRE(found);
  CHECK_FALSE(binding_mismatch(r.header(), found));
  CHECK_FALSE(find_backup_binding(state, std::string(64, '0')));
  CHECK_FALSE(find_backup_binding(state, "../../etc/passwd")); // not a digest: never a path
  // A state directory others can write is not trusted.
  ::chmod(state.c_str(), 0777);
  CHECK_THROWS_AS(find_backup_binding(state, written_sha), Error);
  ::chmod(state.c_str(), 0700);
  // Group-writable backup: someone else could change it between the hash and the reads.
  ::chmod(p.c_str(), 0620);
  CHECK_FALSE(BackupReader(p).owned_by_us());
}

TEST_CASE("backup reader: a record outside the header's ranges refuses the whole file")
{
  TempDir dir;
  BackupHeader h = header(); // ranges {0, 8192}
  std::vector<uint8_t> data(4096, 1);
  auto make = [&](uint64_t off, uint32_t len, const std::string& name) {
    BackupWriter w(dir.path, h);
    w.add(0, 1 << 20, 1, BackupRecord::k_chosen, {}, data.data(), 4096);
    w.add(off, 1 << 20, 1, BackupRecord::k_chosen, {}, data.data(), len);
    return w.commit(name);
  };
  CHECK_NOTHROW(BackupReader(make(4096, 4096, "in")).verify_complete());
  CHECK_THROWS_AS(BackupReader(make(8192, 4096, "after")).verify_complete(), Error);
  CHECK_THROWS_AS(BackupReader(make(6144, 4096, "across")).verify_complete(), Error);
  // A device copy of the last sector of a file whose size is not sector-aligned: whole sector.
  h.ranges = {{0, 6000}};
  CHECK_NOTHROW(BackupReader(make(4096, 4096, "last")).verify_complete());
  h.ranges = {{1 << 20, 8192}};
  CHECK_THROWS_AS(BackupReader(make(4096, 4096, "before")).verify_complete(), Error);
}

TEST_CASE("undo: compare and write select the same bytes for a bad sector")
{
  std::vector<BackupRecord> group(2);
  group[0].mirror = 1;
  group[0].flags = BackupRecord::k_chosen;
  group[1].mirror = 2;
  CHECK(repair_detail::pick_record(group, std::nullopt).mirror == 1);
  CHECK(repair_detail::pick_record(group, 2u).mirror == 2);
  CHECK(repair_detail::pick_record(group, 3u).mirror == 1); // not in the backup: the chosen
}

TEST_CASE("repair: exit severity from the outcome, never from its wording")
{
  RepairEntry e;
  e.action = RepairAction::repaired;
  CHECK(repair_severity(e) == RepairSeverity::clean);
  e.ranges.resize(1);
  e.ranges[0].shared_with.resize(1);
  CHECK(repair_severity(e) == RepairSeverity::warnings);
  e = RepairEntry{};
  e.action = RepairAction::failed;
  e.code = "io-error";
  CHECK(repair_severity(e) == RepairSeverity::incomplete);
  e.code = k_code_verify_failed;
  CHECK(repair_severity(e) == RepairSeverity::critical);
  e = RepairEntry{};
  e.action = RepairAction::would_repair;
  CHECK(repair_severity(e) == RepairSeverity::critical);
  e.action = RepairAction::left;
  CHECK(repair_severity(e) == RepairSeverity::warnings);
  e.action = RepairAction::clean;
  e.nocow = NocowOutcome{"refused", "in-use", "x", false};
  CHECK(repair_severity(e) == RepairSeverity::incomplete);
  e.nocow = NocowOutcome{"rewritten", "", "", true};
  CHECK(repair_severity(e) == RepairSeverity::clean);
  CHECK(std::string(repair_action_name(RepairAction::would_restore)) == "would-restore");
}
