// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/measure/probe.hpp>
#include <vmcsum/sys/signals.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include <signal.h>

using namespace vmcsum::core;

namespace {
// Captured on 6.18.44 (tracefs instance, btrfs_ordered_extent_add): a checksummed file (ino 272)
// and a NOCOW file (ino 273) on a single-profile filesystem, a NOCOW file (ino 260) on a dup
// one, then an overwrite of ino 273 (NOCOW|DIRECT), each written with dd oflag=direct.
std::vector<std::string> fixture_lines()
{
  std::ifstream in(VMCSUM_TEST_DATA "/trace_ordered_extent_6.18.txt");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
  }
  return lines;
}

std::vector<OrderedExtentEvent> events_of(uint64_t ino, const std::string& fsid)
{
  std::vector<OrderedExtentEvent> out;
  for (const auto& l : fixture_lines()) {
    if (auto e = parse_ordered_extent_line(l); e && e->ino == ino && e->fsid == fsid) {
      out.push_back(*e);
    }
  }
  return out;
}

const std::string k_single = "ea24046d-6daa-4ebb-a0fa-cf2791bf0383";
const std::string k_dup = "de46881e-ef4f-46e6-b027-704c514ede3c";

OrderedExtentEvent event(std::vector<std::string> flags)
{
  OrderedExtentEvent e;
  e.ino = 257;
  e.flags = std::move(flags);
  return e;
}
} // namespace

TEST_CASE("trace lines: the captured 6.18 trace")
{
  auto lines = fixture_lines();
  REQUIRE(lines.size() == 18);
  size_t parsed = 0;
  for (const auto& l : lines) {
    parsed += parse_ordered_extent_line(l) ? 1 : 0;
  }
  CHECK(parsed == 6); // the 12 header lines are comments

  auto e = parse_ordered_extent_line(lines[12]);
  REQUIRE(e);
  CHECK(e->fsid == k_single);
  CHECK(e->root == 5);
  CHECK(e->ino == 272);
  CHECK(e->file_offset == 0);
  CHECK(e->len == 65536);
  CHECK(e->flags == std::vector<std::string>{"REGULAR"});
  CHECK_FALSE(e->has_flag("DIRECT"));

  auto last = parse_ordered_extent_line(lines.back());
  REQUIRE(last);
  CHECK(last->ino == 273);
  CHECK(last->flags == std::vector<std::string>{"NOCOW", "DIRECT"});
  CHECK(last->has_flag("DIRECT"));
}

TEST_CASE("trace lines: other events, comments and damage")
{
  CHECK_FALSE(parse_ordered_extent_line(""));
  CHECK_FALSE(parse_ordered_extent_line("# tracer: nop"));
  CHECK_FALSE(parse_ordered_extent_line(
    " dd-1 [001] ..... 1.0: btrfs_ordered_extent_remove: ea24046d-6daa-4ebb-a0fa-cf2791bf0383: "
    "root=5(FS_TREE) ino=272 file_offset=0 flags=REGULAR"));
  // No ino, or a damaged one.
  CHECK_FALSE(parse_ordered_extent_line(" x-1 [0] 1.0: btrfs_ordered_extent_add: root=5 flags=R"));
  CHECK_FALSE(parse_ordered_extent_line(" x-1 [0] 1.0: btrfs_ordered_extent_add: ino=27x2"));
  CHECK_FALSE(parse_ordered_extent_line(
    " x-1 [0] 1.0: btrfs_ordered_extent_add: ino=99999999999999999999999"));
  // Truncated after the inode: still an event, without flags.
  auto t = parse_ordered_extent_line(" x-1 [0] 1.0: btrfs_ordered_extent_add: root=5(FS_TREE) "
                                     "ino=300 file_offset=4096");
  REQUIRE(t);
  CHECK(t->fsid.empty());
  CHECK(t->ino == 300);
  CHECK(t->file_offset == 4096);
  CHECK(t->flags.empty());
  // An upper-case fsid is lowered, so it compares with FS_INFO's text.
  auto u = parse_ordered_extent_line(" x-1 [0] 1.0: btrfs_ordered_extent_add: "
                                     "EA24046D-6DAA-4EBB-A0FA-CF2791BF0383: ino=1 flags=DIRECT");
  REQUIRE(u);
  CHECK(u->fsid == k_single);
  CHECK(u->has_flag("DIRECT"));
  // Empty flags, and an older field order with root last.
  auto o = parse_ordered_extent_line(" x-1 [0] 1.0: btrfs_ordered_extent_add: ino=258 "
                                     "file_offset=0 len=4096 flags= compress_type=0 root=256(-)");
  REQUIRE(o);
  CHECK(o->root == 256);
  CHECK(o->flags.empty());
}

TEST_CASE("judge_trace on the captured events")
{
  Verdict csum = judge_trace(events_of(272, k_single), "csum", 2, 65536);
  CHECK(csum.write == DioWrite::buffered_fallback);
  CHECK(csum.evidence.find("2 ordered extent(s) with flags REGULAR") != std::string::npos);

  Verdict nocow = judge_trace(events_of(273, k_single), "nocow", 3, 65536);
  CHECK(nocow.write == DioWrite::direct);
  CHECK(nocow.evidence.find("NOCOW|DIRECT, REGULAR|DIRECT") != std::string::npos);

  Verdict dup = judge_trace(events_of(260, k_dup), "nocow on dup", 1, 65536);
  CHECK(dup.write == DioWrite::buffered_fallback);
  // Inode numbers repeat across filesystems: the fsid keeps them apart.
  CHECK(events_of(260, k_single).empty());
}

TEST_CASE("judge_trace decisions")
{
  CHECK(judge_trace({}, "f", 4, 65536).write == DioWrite::unknown);
  CHECK(
    judge_trace({event({"REGULAR", "DIRECT"}), event({"NOCOW", "DIRECT"})}, "f", 2, 4096).write ==
    DioWrite::direct);
  CHECK(judge_trace({event({"REGULAR"}), event({})}, "f", 2, 4096).write ==
        DioWrite::buffered_fallback);
  Verdict mixed = judge_trace({event({"REGULAR", "DIRECT"}), event({"REGULAR"})}, "f", 2, 4096);
  CHECK(mixed.write == DioWrite::unknown);
  CHECK(mixed.evidence.find("1 of 2 DIRECT") != std::string::npos);
}

TEST_CASE("judge_race decisions")
{
  RaceObservation o;
  o.writes = 8;
  o.write_size = 1 << 20;
  o.raced_writes = 8;
  o.bytes_read = 8 << 20;
  Verdict copied = judge_race(o);
  CHECK(copied.write == DioWrite::buffered_fallback);
  CHECK(copied.evidence.find("8 of them while another thread changed the buffer") !=
        std::string::npos);

  o.eio_offset = 3 << 20;
  o.bytes_read = 3 << 20;
  Verdict direct = judge_race(o);
  CHECK(direct.write == DioWrite::direct);
  CHECK(direct.evidence.find("EIO at offset 3145728") != std::string::npos);

  // An EIO proves it even if the counter missed the changes.
  o.raced_writes = 0;
  CHECK(judge_race(o).write == DioWrite::direct);

  o.eio_offset.reset();
  CHECK(judge_race(o).write == DioWrite::unknown); // nothing raced: proves nothing
  o.raced_writes = 3;
  CHECK(judge_race(o).write == DioWrite::unknown); // too few of 8 raced
  o.raced_writes = 4;
  CHECK(judge_race(o).write == DioWrite::buffered_fallback);

  // Written over three times (a busy machine): what counts is half of one pass having raced.
  o.per_pass = 8;
  o.writes = 24;
  o.raced_writes = 3;
  CHECK(judge_race(o).write == DioWrite::unknown);
  o.raced_writes = 4;
  CHECK(judge_race(o).write == DioWrite::buffered_fallback);
}

TEST_CASE("version table answer for NOCOW follows the profile")
{
  DioPolicy p;
  p.nodatasum_single = DioWrite::direct;
  p.nodatasum_duplicated = DioWrite::buffered_fallback;
  CHECK(table_nocow_answer(p, {"single"}) == DioWrite::direct);
  CHECK(table_nocow_answer(p, {"raid0"}) == DioWrite::direct);
  CHECK(table_nocow_answer(p, {"dup"}) == DioWrite::buffered_fallback);
  CHECK(table_nocow_answer(p, {"single", "raid1"}) == DioWrite::buffered_fallback);
  CHECK(table_nocow_answer(p, {}) == DioWrite::unknown);
}

TEST_CASE("version table answer for checksummed files follows the profile too")
{
  // 6.12.75/76: the profile rule came before 968f19c5b1b7.
  DioPolicy p = dio_policy_for(KernelVersion{6, 12, 76});
  CHECK(table_answer(p, false, {"single"}) == DioWrite::direct);
  CHECK(table_answer(p, false, {"raid0"}) == DioWrite::direct);
  CHECK(table_answer(p, false, {"dup"}) == DioWrite::buffered_fallback);
  CHECK(table_answer(p, false, {"raid1c3"}) == DioWrite::buffered_fallback);
  CHECK(table_answer(p, true, {"raid10"}) == DioWrite::buffered_fallback);
  CHECK(table_answer(p, true, {"single"}) == DioWrite::direct);
  // No profile known: the answer only where both profiles agree.
  CHECK(table_answer(p, false, {}) == DioWrite::unknown);
  CHECK(table_answer(dio_policy_for(KernelVersion{6, 18, 44}), false, {}) ==
        DioWrite::buffered_fallback);
  CHECK(table_answer(dio_policy_for(KernelVersion{7, 3, 0}), false, {}) == DioWrite::bounce);
  CHECK(table_answer(dio_policy_for(KernelVersion{7, 3, 0}), true, {"dup"}) == DioWrite::bounce);
  CHECK(table_answer(dio_policy_for(KernelVersion{7, 3, 0}), true, {"single"}) == DioWrite::direct);
}

TEST_CASE("a traced DIRECT where the table says bounce is bounce, from both together")
{
  const Verdict direct{DioWrite::direct, "4 writes gave 4 ordered extent(s) with flags "
                                         "REGULAR|DIRECT: every one DIRECT"};
  Verdict v = combine_with_table(direct, DioWrite::bounce, true, "7.3.1");
  CHECK(v.write == DioWrite::bounce);
  CHECK(v.table_decided);
  CHECK(v.evidence.find(direct.evidence) == 0); // what was traced stays in the sentence
  CHECK(v.evidence.find("cannot tell bounce from zero-copy") != std::string::npos);
  CHECK(v.evidence.find("Linux 7.3.1 copies these writes into bounce buffers") !=
        std::string::npos);

  // Where the table says direct, DIRECT stays direct, and the sentence says why it is not bounce.
  v = combine_with_table(direct, DioWrite::direct, true, "6.18.44");
  CHECK(v.write == DioWrite::direct);
  CHECK_FALSE(v.table_decided);
  CHECK(v.evidence.find("the version table says Linux 6.18.44 has none") != std::string::npos);

  // A trace without DIRECT where the table says bounce: the measurement stands (and differs).
  const Verdict copied{DioWrite::buffered_fallback, "none DIRECT"};
  v = combine_with_table(copied, DioWrite::bounce, true, "7.3");
  CHECK(v.write == DioWrite::buffered_fallback);
  CHECK_FALSE(v.table_decided);
  CHECK(v.evidence.find("either this kernel lacks them") != std::string::npos);

  // Unknown stays unknown; a fallback the table expects stays as it is.
  const Verdict none{DioWrite::unknown, "no event"};
  CHECK(combine_with_table(none, DioWrite::bounce, true, "7.3").write == DioWrite::unknown);
  v = combine_with_table(copied, DioWrite::buffered_fallback, true, "7.0");
  CHECK(v.write == DioWrite::buffered_fallback);
  CHECK(v.evidence == copied.evidence);
}

TEST_CASE("a race that finds a copy where the table says bounce is bounce")
{
  RaceObservation o;
  o.writes = 8;
  o.write_size = 1 << 20;
  o.raced_writes = 8;
  o.bytes_read = 8 << 20;
  Verdict raced = judge_race(o);
  REQUIRE(raced.write == DioWrite::buffered_fallback);
  CHECK(raced.evidence.find("bounce buffers on 7.3+") != std::string::npos);
  Verdict v = combine_with_table(raced, DioWrite::bounce, false, "7.3");
  CHECK(v.write == DioWrite::bounce);
  CHECK(v.table_decided);
  CHECK(v.evidence.find("the race cannot tell bounce buffers from the buffered fallback") !=
        std::string::npos);
  // An EIO is proof of zero-copy whatever the table says.
  o.eio_offset = 0;
  o.bytes_read = 0;
  v = combine_with_table(judge_race(o), DioWrite::bounce, false, "7.3");
  CHECK(v.write == DioWrite::direct);
  CHECK_FALSE(v.table_decided);
  // Before 7.3 a copy is the buffered fallback.
  o.eio_offset.reset();
  o.bytes_read = 8 << 20;
  CHECK(combine_with_table(judge_race(o), DioWrite::buffered_fallback, false, "7.0").write ==
        DioWrite::buffered_fallback);
}

TEST_CASE("apply_probe puts measurements over the table, in the cells of the profile")
{
  DioPolicy p;
  p.checksummed = DioWrite::direct;
  p.checksummed_duplicated = DioWrite::direct;
  p.nodatasum_single = DioWrite::direct;
  p.nodatasum_duplicated = DioWrite::direct;
  p.reason = "table";

  FsProbe none;
  none.data_profiles = {"dup"};
  CHECK_FALSE(apply_probe(p, none));
  CHECK(p.reason == "table");

  FsProbe dup;
  dup.method = "tracefs";
  dup.mount = "/mnt";
  dup.data_profiles = {"dup"};
  dup.checksummed = DioWrite::buffered_fallback;
  dup.nocow = DioWrite::buffered_fallback;
  CHECK(apply_probe(p, dup));
  CHECK(p.checksummed_duplicated == DioWrite::buffered_fallback);
  CHECK(p.nodatasum_duplicated == DioWrite::buffered_fallback);
  CHECK(p.checksummed == DioWrite::direct);      // single: not measured, still the table's
  CHECK(p.nodatasum_single == DioWrite::direct); // likewise
  CHECK(p.reason.find("measured by vmcsum probe (tracefs) on /mnt") == 0);
  CHECK(p.reason.find("checksummed files on dup is buffered-fallback") != std::string::npos);
  CHECK(p.reason.find("otherwise the version table: table") != std::string::npos);

  FsProbe single;
  single.method = "tracefs+version-table";
  single.mount = "/srv";
  single.data_profiles = {"single"};
  single.checksummed = DioWrite::bounce;
  single.nocow = DioWrite::direct;
  CHECK(apply_probe(p, single));
  CHECK(p.checksummed == DioWrite::bounce);
  CHECK(p.checksummed_duplicated == DioWrite::buffered_fallback); // from the dup probe
  CHECK(p.reason.find("(tracefs+version-table) on /srv") != std::string::npos);

  // Answers without a known profile cannot be placed.
  DioPolicy q;
  FsProbe unplaced;
  unplaced.nocow = DioWrite::direct;
  unplaced.checksummed = DioWrite::direct;
  CHECK_FALSE(apply_probe(q, unplaced));
  CHECK(q.checksummed == DioWrite::unknown);

  FsProbe race;
  race.method = "race";
  race.data_profiles = {"raid0"};
  race.checksummed = DioWrite::direct;
  race.unknown["nocow"] = "no checksums";
  CHECK(apply_probe(q, race));
  CHECK(q.checksummed == DioWrite::direct);
  CHECK(q.checksummed_duplicated == DioWrite::unknown);
  CHECK(probe_summary(race).find("nocow unknown: no checksums") != std::string::npos);
}

TEST_CASE("DeferSignals holds a signal back until it ends")
{
  struct sigaction old
  {
  };
  struct sigaction ign
  {
  };
  ign.sa_handler = [](int) {};
  ::sigemptyset(&ign.sa_mask);
  ::sigaction(SIGHUP, &ign, &old);
  {
    vmcsum::sys::DeferSignals d;
    CHECK(d.pending() == 0);
    ::raise(SIGHUP);
    CHECK(d.pending() == SIGHUP);
    CHECK(d.pending() == SIGHUP); // not consumed by looking
  }
  // Delivered (to the no-op handler) when the mask was restored.
  sigset_t set;
  ::sigpending(&set);
  CHECK(::sigismember(&set, SIGHUP) == 0);
  ::sigaction(SIGHUP, &old, nullptr);
}
