// SPDX-License-Identifier: GPL-2.0-or-later
// What scrub remembers (issue 19, "No self-inflicted alarms"): the state file, which confirmed
// sectors are skipped, which log events vmcsum's own reads caused, merged history, kmsg times,
// and audit's healed history.
#include <vmcsum/audit/audit.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/kernel_log_reader.hpp>
#include <vmcsum/scrub/scrub.hpp>
#include <vmcsum/scrub/scrub_state.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <unistd.h>

using namespace vmcsum::core;

namespace {

const char* k_fsid = "0123abcd-0000-4000-8000-00000000beef";

ScrubState sample()
{
  ScrubState s;
  s.fsid = k_fsid;
  KernelConfirmation c;
  c.subvolume = 5;
  c.inode = 257;
  c.offset = 8192;
  c.length = 4096;
  c.logical = 13631488;
  c.expected_csum = "aabbccdd";
  c.copy_csums = {"11111111", ""};
  c.kernel_eio = true;
  c.confirmed_at_us = 1764750000000000;
  s.confirmations.push_back(c);
  ImageOutcome o;
  o.subvolume = 5;
  o.inode = 257;
  o.path = "/mnt/vm.img";
  o.scrubbed_at_us = 1764750000000001;
  o.clean = false;
  s.outcomes.push_back(o);
  ReadWindow w;
  w.boot_id = "0123456789abcdef0123456789abcdef";
  w.pid = 4242;
  w.mono_start_us = 100000000;
  w.mono_end_us = 101000000;
  w.real_start_us = 1764750000000000;
  w.real_end_us = 1764750001000000;
  w.fsid = k_fsid;
  w.devices = {"loop3", "loop4"};
  w.subvolume = 5;
  w.inode = 257;
  w.ranges = {{0, 8192}, {12288, 1048576}};
  s.windows.push_back(w);
  return s;
}

EventWhen event_at(uint64_t offset, uint64_t mono_us)
{
  EventWhen e;
  e.device = "loop3";
  e.root = 5;
  e.ino = 257;
  e.offset = offset;
  e.boot_id = "0123456789abcdef0123456789abcdef";
  e.mono_us = mono_us;
  return e;
}

} // namespace

TEST_CASE("scrub state: dump and parse round-trip")
{
  const ScrubState s = sample();
  const ScrubState t = parse_scrub_state(dump_scrub_state(s));
  CHECK(t.fsid == s.fsid);
  REQUIRE(t.confirmations.size() == 1);
  CHECK(t.confirmations[0].copy_csums == s.confirmations[0].copy_csums);
  CHECK(t.confirmations[0].kernel_eio);
  CHECK(t.confirmations[0].confirmed_at_us == 1764750000000000);
  REQUIRE(t.outcomes.size() == 1);
  CHECK(t.outcomes[0].scrubbed_at_us == 1764750000000001);
  CHECK_FALSE(t.outcomes[0].repaired_at_us);
  REQUIRE(t.windows.size() == 1);
  CHECK(t.windows[0].ranges == s.windows[0].ranges);
  CHECK(t.windows[0].devices == s.windows[0].devices);
  CHECK(t.windows[0].pid == 4242);
}

TEST_CASE("scrub state: past its size limit the oldest windows go first, then confirmations")
{
  // The loader refuses a file past k_max_state_bytes and a merge then starts from nothing, so
  // the writer must stay under it; nothing else bounds confirmations or a window's ranges.
  ScrubState s = sample();
  s.windows.clear();
  s.confirmations.clear();
  for (uint64_t i = 0; i < 40; ++i) {
    ReadWindow w = sample().windows[0];
    w.pid = static_cast<int64_t>(i);
    w.ranges.clear();
    for (uint64_t r = 0; r < 30; ++r) {
      w.ranges.emplace_back(r << 20, 4096);
    }
    s.windows.push_back(w);
    KernelConfirmation c = sample().confirmations[0];
    c.offset = i * 4096;
    s.confirmations.push_back(c);
  }
  const size_t whole = dump_scrub_state(s).size();
  StateTrim none;
  ScrubState same = s;
  CHECK(dump_scrub_state_within(same, whole, none).size() == whole);
  CHECK(none.windows + none.confirmations + none.outcomes == 0);

  // Half the size: only windows go, the oldest, and what is left parses.
  ScrubState half = s;
  StateTrim trim;
  const std::string text = dump_scrub_state_within(half, whole / 2, trim);
  CHECK(text.size() <= whole / 2);
  CHECK(trim.windows > 0);
  CHECK(trim.confirmations == 0);
  const ScrubState back = parse_scrub_state(text);
  REQUIRE_FALSE(back.windows.empty());
  CHECK(back.windows.back().pid == 39);
  CHECK(back.windows.front().pid == static_cast<int64_t>(trim.windows));
  CHECK(back.confirmations.size() == 40);

  // Room for less than the confirmations: every window gone, the oldest confirmations too.
  ScrubState small = s;
  StateTrim more;
  small.windows.clear();
  const size_t confirmations_only = dump_scrub_state(small).size();
  small = s;
  const std::string t2 = dump_scrub_state_within(small, confirmations_only / 2, more);
  CHECK(t2.size() <= confirmations_only / 2);
  CHECK(more.windows == 40);
  CHECK(more.confirmations > 0);
  CHECK(more.outcomes == 0);
  const ScrubState b2 = parse_scrub_state(t2);
  REQUIRE_FALSE(b2.confirmations.empty());
  CHECK(b2.confirmations.back().offset == 39 * 4096);
  CHECK(b2.outcomes.size() == 1);

  // Outcomes go last, by their last scrub or repair, not by where they sit in the file: the
  // first one was repaired after the others were scrubbed.
  ScrubState o;
  o.fsid = k_fsid;
  for (uint64_t i = 0; i < 4; ++i) {
    ImageOutcome x = sample().outcomes[0];
    x.inode = 300 + i;
    x.path = "/mnt/image-" + std::to_string(i) + std::string(200, 'x');
    x.scrubbed_at_us = 1000 + i;
    o.outcomes.push_back(x);
  }
  o.outcomes[0].repaired_at_us = 5000;
  const size_t four = dump_scrub_state(o).size();
  StateTrim out;
  const ScrubState b3 = parse_scrub_state(dump_scrub_state_within(o, four - 10, out));
  CHECK(out.outcomes == 1);
  REQUIRE(b3.outcomes.size() == 3);
  for (const auto& x : b3.outcomes) {
    CHECK(x.inode != 301); // scrubbed at 1001, the oldest last time
  }
}

TEST_CASE("scrub state: a path that is not UTF-8 or holds a backslash reads back as it was")
{
  // Each scrub or repair merges into the file: parse, update, dump. A path read back still
  // escaped was escaped once more on every rewrite (fuzz_state_files: "\\xff" grew backslashes).
  ScrubState s = sample();
  s.outcomes[0].path = "/mnt/vm\xff\\x41\\.img";
  s.outcomes.push_back(s.outcomes[0]);
  s.outcomes[1].inode = 258;
  s.outcomes[1].path = "/mnt/plain.img";
  const std::string once = dump_scrub_state(s);
  const ScrubState t = parse_scrub_state(once);
  REQUIRE(t.outcomes.size() == 2);
  CHECK(t.outcomes[0].path == s.outcomes[0].path);
  CHECK(t.outcomes[1].path == "/mnt/plain.img");
  CHECK(dump_scrub_state(t) == once);
}

TEST_CASE("scrub state: bad input is an error, never half-trusted")
{
  const std::string good = dump_scrub_state(sample());
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    return s;
  };
  CHECK_THROWS_AS(parse_scrub_state(""), vmcsum::Error);
  CHECK_THROWS_AS(parse_scrub_state("{"), vmcsum::Error);
  CHECK_THROWS_AS(parse_scrub_state("[]"), vmcsum::Error);
  CHECK_THROWS_AS(parse_scrub_state(good.substr(0, good.size() / 2)), vmcsum::Error);
  CHECK_THROWS_AS(parse_scrub_state(replaced("vmcsum.scrub-state/1", "vmcsum.scrub-state/9")),
                  vmcsum::Error);
  CHECK_THROWS_AS(parse_scrub_state(replaced("\"inode\": 257", "\"inode\": -1")), vmcsum::Error);
  // A pid past 2^63 was read back as a negative one.
  CHECK_THROWS_AS(parse_scrub_state(replaced("\"pid\": 4242", "\"pid\": 9223372036854775808")),
                  vmcsum::Error);
  CHECK(
    parse_scrub_state(replaced("\"pid\": 4242", "\"pid\": 9223372036854775807")).windows[0].pid ==
    INT64_MAX);
  CHECK_THROWS_AS(parse_scrub_state(replaced("\"inode\": 257", "\"inode\": \"257\"")),
                  vmcsum::Error);
  CHECK_THROWS_AS(parse_scrub_state(replaced("\"kernel_eio\": true", "\"kernel_eio\": 1")),
                  vmcsum::Error);
  CHECK_THROWS_AS(parse_scrub_state(replaced("\"kernel_eio\": true,", "")), vmcsum::Error);
  CHECK_THROWS_AS(parse_scrub_state(replaced(k_fsid, "../../etc")), vmcsum::Error);
  CHECK_THROWS_AS(parse_scrub_state(replaced("\"mono_end_us\": 101000000", "\"mono_end_us\": 1")),
                  vmcsum::Error);
  CHECK_THROWS_AS(parse_scrub_state(replaced("\"ranges\": [", "\"ranges\": [[0],")), vmcsum::Error);
}

TEST_CASE("scrub state: load, merge under the lock, size limit")
{
  const auto dir =
    std::filesystem::temp_directory_path() / ("vmcsum-unit-state-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const std::string sd = dir.string();
  CHECK(load_scrub_state(sd, k_fsid).confirmations.empty());
  ScrubState s = sample();
  merge_scrub_state(sd, s, {});
  merge_scrub_state(sd, s, {{5, 257}}); // replaces the inode's confirmations, appends a window
  auto t = load_scrub_state(sd, k_fsid);
  CHECK(t.confirmations.size() == 1);
  CHECK(t.windows.size() == 2);
  record_repair(sd, k_fsid, 5, 257, "/mnt/vm.img", 1764750009000000);
  t = load_scrub_state(sd, k_fsid);
  REQUIRE(t.outcomes.size() == 1);
  CHECK(t.outcomes[0].repaired_at_us == 1764750009000000);
  CHECK(t.outcomes[0].scrubbed_at_us == 1764750000000001); // kept
  std::vector<std::string> notes;
  CHECK(load_all_scrub_states(sd, notes).size() == 1);
  CHECK(notes.empty());
  // A damaged file: load says so; the next merge replaces it.
  {
    FILE* f = std::fopen((sd + "/scrub/" + k_fsid + ".json").c_str(), "w");
    REQUIRE(f);
    std::fputs("{\"schema\":", f);
    std::fclose(f);
  }
  CHECK_THROWS_AS(load_scrub_state(sd, k_fsid), vmcsum::Error);
  CHECK(load_all_scrub_states(sd, notes).empty());
  CHECK(notes.size() == 1);
  merge_scrub_state(sd, s, {});
  CHECK(load_scrub_state(sd, k_fsid).windows.size() == 1);
  CHECK_THROWS_AS(load_scrub_state(sd, "../x"), vmcsum::Error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a confirmation holds only while the per-copy facts are the same and no copy is good")
{
  const auto c = sample().confirmations[0];
  const std::vector<std::string> same = {"11111111", ""};
  CHECK(confirmation_holds(c, 13631488, "aabbccdd", same, false));
  CHECK_FALSE(confirmation_holds(c, 13631488, "aabbccdd", same, true));  // a copy matches now
  CHECK_FALSE(confirmation_holds(c, 13635584, "aabbccdd", same, false)); // moved (rewritten)
  CHECK_FALSE(confirmation_holds(c, 13631488, "aabbccde", same, false)); // new checksum
  CHECK_FALSE(confirmation_holds(c, 13631488, "aabbccdd", {"11111111", "22222222"}, false));
  CHECK_FALSE(confirmation_holds(c, 13631488, "aabbccdd", {"11111111"}, false));
}

TEST_CASE("subtract_ranges: the kernel pass reads around confirmed sectors")
{
  using R = std::vector<std::pair<uint64_t, uint64_t>>;
  CHECK(subtract_ranges({{0, 65536}}, {}) == R{{0, 65536}});
  CHECK(subtract_ranges({{0, 65536}}, {{8192, 4096}}) == R{{0, 8192}, {12288, 53248}});
  CHECK(subtract_ranges({{0, 65536}}, {{12288, 4096}, {0, 4096}, {4096, 4096}}) ==
        R{{8192, 4096}, {16384, 49152}});
  CHECK(subtract_ranges({{0, 16384}}, {{0, 65536}}).empty());
  CHECK(subtract_ranges({{0, 8192}, {65536, 8192}}, {{4096, 65536}}) ==
        R{{0, 4096}, {69632, 4096}});
  CHECK(subtract_ranges({{4096, 4096}}, {{8192, 4096}, {0, 0}}) == R{{4096, 4096}});
}

TEST_CASE("event_in_window: same inode and offset, time inside the window")
{
  const auto w = sample().windows[0];
  CHECK(event_in_window(event_at(12288, 100500000), w));
  CHECK(event_in_window(event_at(4096, 100000000), w));
  CHECK(event_in_window(event_at(4096, 101000000 + k_window_slack_us), w)); // slack
  CHECK_FALSE(event_in_window(event_at(4096, 101000001 + k_window_slack_us), w));
  CHECK_FALSE(event_in_window(event_at(4096, 50000000), w));
  CHECK_FALSE(event_in_window(event_at(8192, 100500000), w)); // not read (skipped)
  // Times near 2^64 (a corrupt state or log) match nothing, never by wrapping the slack.
  auto open_end = w;
  open_end.mono_start_us = 0;
  open_end.mono_end_us = UINT64_MAX - 5;
  CHECK_FALSE(event_in_window(event_at(4096, 100500000), open_end));
  CHECK_FALSE(event_in_window(event_at(4096, 500000), open_end)); // the wrapped end's range
  auto from_zero = w;
  from_zero.mono_start_us = 0;
  CHECK_FALSE(event_in_window(event_at(4096, UINT64_MAX - 2), from_zero));
  auto e = event_at(4096, 100500000);
  e.ino = 258;
  CHECK_FALSE(event_in_window(e, w));
  e = event_at(4096, 100500000);
  e.root = 256;
  CHECK_FALSE(event_in_window(e, w));
  e.root = -9;
  CHECK_FALSE(event_in_window(e, w));
  e = event_at(4096, 100500000);
  e.device = "sda";
  CHECK_FALSE(event_in_window(e, w));
  e = event_at(4096, 100500000);
  e.offset.reset();
  CHECK_FALSE(event_in_window(e, w));
  // Another boot: realtime decides, and the boot ids must agree.
  e = event_at(4096, 0);
  e.mono_us.reset();
  e.real_us = 1764750000500000;
  CHECK(event_in_window(e, w));
  e.boot_id = "ffffffffffffffffffffffffffffffff";
  CHECK_FALSE(event_in_window(e, w));
  e.boot_id.reset();
  CHECK(event_in_window(e, w));
  e.real_us = 1764760000000000;
  CHECK_FALSE(event_in_window(e, w));
}

TEST_CASE("history: repeated events merge with count, first and last time")
{
  auto ev = [](uint64_t off, unsigned mirror, uint64_t t) {
    HistoryEvent h;
    h.event.kind = CsumLogEvent::Kind::read_csum_failed;
    h.event.device = "loop3";
    h.event.root = 5;
    h.event.ino = 257;
    h.event.offset = off;
    h.event.mirror = mirror;
    h.event.csum = "11111111";
    h.event.expected_csum = "aabbccdd";
    h.source = "kmsg";
    h.timestamp = t;
    return h;
  };
  std::vector<HistoryEvent> in = {ev(8192, 1, 30), ev(8192, 2, 31), ev(8192, 1, 10),
                                  ev(8192, 1, 50), ev(12288, 1, 20)};
  in[3].caused_by_vmcsum = true;
  auto out = merge_history(in);
  REQUIRE(out.size() == 4);
  CHECK(out[0].event.offset == 8192u);
  CHECK(out[0].event.mirror == 1u);
  CHECK(out[0].count == 2);
  CHECK(out[0].timestamp == 10u);
  CHECK(out[0].last_timestamp == 30u);
  CHECK(out[1].count == 1);
  CHECK(out[1].last_timestamp == 31u);
  CHECK(out[2].caused_by_vmcsum); // ours stay apart from the others
  CHECK(out[2].count == 1);
  CHECK(out[3].event.offset == 12288u);
  // Merging again changes nothing; a timeless event merges without losing the times.
  auto again = merge_history(out);
  CHECK(again.size() == 4);
  CHECK(again[0].count == 2);
  auto timeless = ev(8192, 1, 0);
  timeless.timestamp.reset();
  out.push_back(timeless);
  again = merge_history(out);
  CHECK(again[0].count == 3);
  CHECK(again[0].timestamp == 10u);
  CHECK(again[0].last_timestamp == 30u);
}

TEST_CASE("history: events inside vmcsum's read windows are marked")
{
  const auto w = sample().windows[0];
  HistoryEvent h;
  h.event.kind = CsumLogEvent::Kind::read_csum_failed;
  h.event.device = "/dev/loop3";
  h.event.root = 5;
  h.event.ino = 257;
  h.event.offset = 4096;
  h.boot = w.boot_id;
  h.since_boot_us = 100200000;
  HistoryEvent scrub_line = h;
  scrub_line.event.kind = CsumLogEvent::Kind::scrub_error; // btrfs scrub's, never ours
  HistoryEvent later = h;
  later.since_boot_us = 200000000;
  std::vector<HistoryEvent> v = {h, scrub_line, later};
  mark_own_reads(v, {w});
  CHECK(v[0].caused_by_vmcsum);
  CHECK_FALSE(v[1].caused_by_vmcsum);
  CHECK_FALSE(v[2].caused_by_vmcsum);
}

TEST_CASE("kmsg times: raw records and dmesg lines, converted to the epoch")
{
  CHECK(kernel_log_line_time_us("4,1234,5678901,-;BTRFS warning (device loop3): csum failed") ==
        5678901u);
  CHECK(kernel_log_line_time_us("4,1234,5678901,-,caller=T12;BTRFS ...") == 5678901u);
  CHECK(kernel_log_line_time_us("[    5.678901] BTRFS warning (device loop3): x") == 5678901u);
  CHECK(kernel_log_line_time_us("[12345.000001] [  T123] BTRFS x") == 12345000001u);
  CHECK_FALSE(kernel_log_line_time_us("BTRFS warning (device loop3): csum failed"));
  CHECK_FALSE(kernel_log_line_time_us("[5.6789] BTRFS")); // not dmesg's six decimals
  CHECK_FALSE(kernel_log_line_time_us("[ abc.123456] BTRFS"));
  CHECK_FALSE(kernel_log_line_time_us("4,x,5,-;BTRFS"));
  CHECK_FALSE(kernel_log_line_time_us("4,1;BTRFS"));
  CHECK_FALSE(kernel_log_line_time_us("[ 5.678901 BTRFS"));
  // Past 2^64 is refused, not wrapped: as seconds times 10^6, or as the number itself.
  CHECK(kernel_log_line_time_us("[18446744073709.551615] x") == UINT64_MAX);
  CHECK_FALSE(kernel_log_line_time_us("[18446744073709.551616] x"));
  CHECK_FALSE(kernel_log_line_time_us("[9999999999999999999.000000] x"));
  CHECK(kernel_log_line_time_us("4,1,18446744073709551615,-;x") == UINT64_MAX);
  CHECK_FALSE(kernel_log_line_time_us("4,1,18446744073709551616,-;x"));
  CHECK_FALSE(kernel_log_line_time_us("4,1,+5,-;x"));
  CHECK(kmsg_time_to_epoch_us(5678901, 1764700000000000) == 1764700005678901u);
  CHECK(kmsg_time_to_epoch_us(UINT64_MAX, 5) == UINT64_MAX);
  // The offset is this boot's start: now minus the monotonic clock, before now.
  const uint64_t off = printk_epoch_offset_us();
  CHECK(off > 0);
  CHECK(off <= realtime_now_us());
  CHECK(kmsg_time_to_epoch_us(monotonic_now_us(), off) <= realtime_now_us() + 1000000);
}

TEST_CASE("audit: checksum history healed by a later repair or clean scrub is no critical")
{
  RiskInputs in;
  in.logged_csum_errors = 3;
  in.last_logged_us = 1000;
  auto codes = [](const std::vector<Finding>& f) {
    std::vector<std::string> c;
    for (const auto& x : f) {
      c.push_back(x.code);
    }
    return c;
  };
  auto has = [&](const std::vector<Finding>& f, const char* code) {
    auto c = codes(f);
    return std::find(c.begin(), c.end(), code) != c.end();
  };
  CHECK(has(assess(in), "csum-errors-logged"));
  CHECK(worst(assess(in)) == Severity::critical);
  in.healed_at_us = 2000;
  in.healed_by = "repair";
  auto f = assess(in);
  CHECK(has(f, "csum-errors-healed"));
  CHECK_FALSE(has(f, "csum-errors-logged"));
  CHECK(worst(f) < Severity::critical);
  in.healed_by = "scrub";
  CHECK(has(assess(in), "csum-errors-healed"));
  in.healed_at_us = 500; // an event after the repair: an alarm again
  CHECK(has(assess(in), "csum-errors-logged"));
  in.healed_at_us = 2000;
  in.last_logged_us.reset(); // an event of unknown time
  CHECK(has(assess(in), "csum-errors-logged"));
}

TEST_CASE("scrub state: a name that is not UTF-8 keeps the state file valid JSON")
{
  ScrubState s;
  s.fsid = "c12d28f5-abbd-4469-99f9-c9ab02495738";
  ImageOutcome o;
  o.subvolume = 5;
  o.inode = 257;
  o.path = std::string("/images/bad\xff.raw");
  o.scrubbed_at_us = 1;
  o.clean = true;
  s.outcomes.push_back(o);
  std::string text;
  REQUIRE_NOTHROW(text = dump_scrub_state(s));
  CHECK(text.find("bad\\\\xff.raw") != std::string::npos);
  auto back = parse_scrub_state(text);
  REQUIRE(back.outcomes.size() == 1);
  CHECK(back.outcomes[0].inode == 257);
}
