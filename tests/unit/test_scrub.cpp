// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The scrub decision table, one case per row (src/scrub/scrub_classify.cpp; issue 19). Cases are
// asserted by evidence code, never by the English sentences.
#include <vmcsum/report/json.hpp>
#include <vmcsum/scrub/scrub.hpp>

#include <doctest/doctest.h>

#include <algorithm>

using namespace vmcsum::core;

namespace {

// A bad sector with one copy per entry of `matches`; `identical`: the bad copies hold the same
// bytes. Written in window `window` by `kernel` (dio: what O_DIRECT did then), or in a gap.
BadSector sector(std::vector<bool> matches, bool identical = false,
                 std::vector<uint64_t> devids = {})
{
  BadSector b;
  for (size_t i = 0; i < matches.size(); ++i) {
    SectorCopy c;
    c.mirror = static_cast<unsigned>(i + 1);
    c.devid = devids.empty() ? i + 1 : devids[i];
    c.matches = matches[i];
    b.copies.push_back(c);
  }
  b.copies_identical = identical;
  b.written.generation = 100;
  b.written.window = "gap:start";
  return b;
}

void written_by(BadSector& b, const std::string& kernel, DioWrite dio,
                const std::string& window = "boot:a")
{
  b.written.window = window;
  b.written.window_known = true;
  b.written.kernel = kernel;
  b.written.dio_write = dio;
}

bool has(const std::vector<Evidence>& ev, const std::string& code)
{
  return std::any_of(ev.begin(), ev.end(), [&](const Evidence& e) { return e.code == code; });
}

ConfiguredDisk disk(const std::string& source, const std::string& cache, bool o_direct)
{
  ConfiguredDisk d;
  d.source = source;
  d.cache = cache;
  d.o_direct = o_direct;
  return d;
}

BadClass verdict(BadSector b, const ClassifyContext& ctx = {})
{
  classify(b, ctx);
  return b.cls;
}

} // namespace

TEST_CASE("scrub class names")
{
  CHECK(bad_class_name(BadClass::false_mismatch) == "false-mismatch");
  CHECK(bad_class_name(BadClass::media) == "media");
  CHECK(bad_class_name(BadClass::undetermined) == "undetermined");
}

TEST_CASE("race signature: copies that differ with none matching")
{
  CHECK(race_signature(sector({false, false})));
  CHECK(race_signature(sector({false, false, false})));
  CHECK_FALSE(race_signature(sector({false, false}, true))); // the same wrong bytes
  CHECK_FALSE(race_signature(sector({true, false})));
  CHECK_FALSE(race_signature(sector({false})));
  auto unreadable = sector({false, false});
  unreadable.copies[1].read_error = true;
  CHECK_FALSE(race_signature(unreadable));

  DivergentRange d;
  d.groups = {{1}, {2}};
  CHECK_FALSE(race_signature(d));
  d.groups = {{1}, {2}, {3}};
  CHECK(race_signature(d));
  d.groups = {{1, 3}, {2}};
  CHECK_FALSE(race_signature(d));
}

TEST_CASE("row 1: evidence that excludes the race wins over everything")
{
  ClassifyContext writer;
  writer.o_direct = true;
  writer.configured_o_direct = true;
  writer.signature_windows = {"gap:start", "boot:a"};

  // A compressed extent: O_DIRECT never writes one, even with every copy bad and differing.
  auto compressed = sector({false, false});
  compressed.compressed = true;
  classify(compressed, writer);
  CHECK(compressed.cls == BadClass::media);
  CHECK(has(compressed.evidence, "compressed-extent"));

  // Written while the kernel fell back for checksummed files on this profile.
  for (DioWrite safe : {DioWrite::buffered_fallback, DioWrite::bounce}) {
    auto b = sector({false, false});
    written_by(b, "6.18.44", safe);
    classify(b, writer);
    CHECK(b.cls == BadClass::media);
    CHECK(has(b.evidence, "written-with-fallback"));
    CHECK(has(b.evidence, "race-signature"));
    CHECK_FALSE(has(b.evidence, "write-kernel-unknown"));
  }
}

TEST_CASE("row 2: an unreadable copy or device errors on a failing copy's device")
{
  ClassifyContext ctx;
  ctx.o_direct = true;
  auto unreadable = sector({false, false});
  unreadable.copies[0].read_error = true;
  classify(unreadable, ctx);
  CHECK(unreadable.cls == BadClass::media);
  CHECK(has(unreadable.evidence, "copy-unreadable"));

  ctx.device_io_errors[2] = true;
  auto on_bad_dev = sector({true, false});
  classify(on_bad_dev, ctx);
  CHECK(on_bad_dev.cls == BadClass::media);
  CHECK(has(on_bad_dev.evidence, "device-errors"));

  // Errors on the device of the good copy say nothing about the bad one.
  ctx.device_io_errors = {{1, true}};
  auto elsewhere = sector({true, false});
  classify(elsewhere, ctx);
  CHECK_FALSE(has(elsewhere.evidence, "device-errors"));
}

TEST_CASE("row 3: a possible kernel and race evidence make a false mismatch")
{
  ClassifyContext none;
  // The signature, kernel unknown (a gap of the record).
  auto sig = sector({false, false});
  classify(sig, none);
  CHECK(sig.cls == BadClass::false_mismatch);
  CHECK(has(sig.evidence, "race-signature"));
  CHECK(has(sig.evidence, "write-kernel-unknown"));

  // The signature, kernel known to write zero-copy.
  auto known = sector({false, false, false});
  written_by(known, "6.1.0-28-amd64", DioWrite::direct);
  classify(known, none);
  CHECK(known.cls == BadClass::false_mismatch);
  CHECK(has(known.evidence, "written-without-fallback"));

  // Spread from a signature sector of the same window: one bad copy (either mirror), or every
  // copy bad with the same bytes.
  ClassifyContext spread;
  spread.signature_windows = {"boot:a"};
  for (auto b : {sector({false, true}), sector({true, false}), sector({false, false}, true)}) {
    written_by(b, "6.1.0", DioWrite::direct, "boot:a");
    classify(b, spread);
    CHECK(b.cls == BadClass::false_mismatch);
    CHECK(has(b.evidence, "same-window-as-signature"));
  }
  // ... but not to sectors written in another window.
  auto other = sector({true, false});
  written_by(other, "6.1.0", DioWrite::direct, "boot:b");
  classify(other, spread);
  CHECK(other.cls == BadClass::media);
  CHECK_FALSE(has(other.evidence, "same-window-as-signature"));
  // A gap counts as one window: a signature in the gap spreads within the gap.
  ClassifyContext gap;
  gap.signature_windows = {"gap:start"};
  CHECK(verdict(sector({false, false}, true), gap) == BadClass::false_mismatch);

  // An O_DIRECT writer, open now or configured, with a possible kernel.
  ClassifyContext open;
  open.o_direct = true;
  auto one = sector({false});
  classify(one, open);
  CHECK(one.cls == BadClass::false_mismatch);
  CHECK(has(one.evidence, "o-direct-open"));
  CHECK(has(one.evidence, "single-copy"));
  ClassifyContext conf;
  apply_configured({disk("libvirt:vm1", "none", true)}, conf);
  auto c = sector({true, false});
  classify(c, conf);
  CHECK(c.cls == BadClass::false_mismatch);
  CHECK(has(c.evidence, "o-direct-configured"));
}

TEST_CASE("row 3: a failing copy that is one byte repeated is never a false mismatch")
{
  // Zeros on one copy and other wrong bytes on the other: two kinds of damage, not the
  // signature (a fill is no version of a guest's data).
  auto zeros = sector({false, false});
  zeros.copies[0].fill = 0x00;
  CHECK_FALSE(race_signature(zeros));
  classify(zeros, {});
  CHECK(zeros.cls == BadClass::undetermined);
  CHECK(has(zeros.evidence, "uniform-copy"));
  CHECK_FALSE(has(zeros.evidence, "race-signature"));
  // fstests' fills (0xb1, 0xb2, 0xb3 on the three copies of raid1c3).
  auto fills = sector({false, false, false});
  for (size_t i = 0; i < 3; ++i) {
    fills.copies[i].fill = static_cast<uint8_t>(0xb1 + i);
  }
  CHECK(verdict(fills) == BadClass::undetermined);
  // Neither an O_DIRECT writer nor a signature sector of the same window makes it one.
  ClassifyContext writer;
  writer.o_direct = true;
  writer.configured_o_direct = true;
  writer.signature_windows = {"gap:start"};
  CHECK(verdict(zeros, writer) == BadClass::undetermined);
  // With a copy that matches: the disk lost a copy (media), which btrfs repairs.
  auto lost = sector({true, false});
  lost.copies[1].fill = 0x00;
  CHECK(verdict(lost, writer) == BadClass::media);
  // Excluding evidence still says media.
  auto comp = zeros;
  comp.compressed = true;
  CHECK(verdict(comp) == BadClass::media);
  // Without a fill the same sector is the signature.
  CHECK(verdict(sector({false, false})) == BadClass::false_mismatch);
}

TEST_CASE("row 4: without race evidence, media where a copy matches, else undetermined")
{
  ClassifyContext none;
  // Which mirror fails is no evidence: mirror 1 alone and mirror 2 alone get the same verdict.
  CHECK(verdict(sector({false, true})) == BadClass::media);
  CHECK(verdict(sector({true, false})) == BadClass::media);
  // raid1c3 interleaved damage: two copies bad, one good.
  CHECK(verdict(sector({false, false, true})) == BadClass::media);
  CHECK(verdict(sector({true, false, false})) == BadClass::media);
  // Every copy holds the same wrong bytes (fstests btrfs/268 writes 0xba to both mirrors).
  auto same = sector({false, false}, true);
  classify(same, none);
  CHECK(same.cls == BadClass::undetermined);
  CHECK(has(same.evidence, "identical-bad-copies"));
  // A single copy on a kernel that writes zero-copy, no O_DIRECT writer seen.
  auto single = sector({false});
  written_by(single, "6.1.0", DioWrite::direct);
  CHECK(verdict(single) == BadClass::undetermined);
  // Configured without O_DIRECT is said, and decides nothing.
  ClassifyContext wb;
  apply_configured({disk("proxmox:100", "writeback", false)}, wb);
  auto plain = sector({false});
  classify(plain, wb);
  CHECK(plain.cls == BadClass::undetermined);
  CHECK(has(plain.evidence, "configured-without-o-direct"));
}

TEST_CASE("repairable: some copy matches")
{
  auto b = sector({false, true});
  classify(b, {});
  CHECK(b.repairable);
  auto n = sector({false, false});
  classify(n, {});
  CHECK_FALSE(n.repairable);
}

TEST_CASE("signature windows are collected from signature sectors only, never compressed ones")
{
  auto sig = sector({false, false});
  written_by(sig, "6.1.0", DioWrite::direct, "boot:x");
  auto one = sector({true, false});
  written_by(one, "6.1.0", DioWrite::direct, "boot:y");
  auto comp = sector({false, false});
  comp.compressed = true;
  comp.written.window = "gap:start";
  DivergentRange d;
  d.groups = {{1}, {2}, {3}};
  d.written.window = "gap:7";
  // A signature the record excludes (written where O_DIRECT to checksummed files falls back)
  // is media, and says nothing of its window's other findings.
  auto fell_back = sector({false, false});
  written_by(fell_back, "6.18.44", DioWrite::buffered_fallback, "boot:z");
  ClassifyContext ctx;
  collect_signature_windows({sig, one, comp, fell_back}, {d}, ctx);
  CHECK(ctx.signature_windows == std::set<std::string>{"boot:x", "gap:7"});
}

TEST_CASE("divergent ranges: excluded, the race, or undetermined")
{
  DivergentRange d;
  d.groups = {{1}, {2}};
  d.written.window = "gap:start";
  DivergentRange two = d;
  classify(two, {});
  CHECK(two.cls == BadClass::undetermined);
  CHECK(has(two.evidence, "copies-differ"));

  DivergentRange fallback = d;
  fallback.written.window = "boot:a";
  fallback.written.window_known = true;
  fallback.written.kernel = "7.0.1";
  fallback.written.dio_write = DioWrite::buffered_fallback;
  ClassifyContext open;
  open.o_direct = true;
  classify(fallback, open);
  CHECK(fallback.cls == BadClass::media);
  CHECK(has(fallback.evidence, "written-with-fallback"));

  DivergentRange raced = d;
  classify(raced, open);
  CHECK(raced.cls == BadClass::false_mismatch);

  DivergentRange three = d;
  three.groups = {{1}, {2}, {3}};
  classify(three, {});
  CHECK(three.cls == BadClass::false_mismatch);
  CHECK(has(three.evidence, "race-signature"));
}

TEST_CASE("the configured cache mode: cache=none/directsync count, others are said")
{
  auto none = disk("libvirt:vm1", "none", true);
  auto wb = disk("proxmox:100", "writeback", false);
  auto dflt = disk("libvirt:vm2", "", false);
  ClassifyContext ctx;
  apply_configured({}, ctx);
  CHECK_FALSE(ctx.configured_o_direct.has_value());
  apply_configured({wb, dflt}, ctx);
  CHECK(ctx.configured_o_direct == false);
  CHECK(ctx.configured_by ==
        std::vector<std::string>{"proxmox:100 cache=writeback", "libvirt:vm2 cache=default"});
  apply_configured({wb, none}, ctx);
  CHECK(ctx.configured_o_direct == true);
}

TEST_CASE("scrub severity: findings and unreadable metadata are critical")
{
  FileScrub f;
  f.examined = true;
  CHECK(std::string(scrub_severity(f)) == "info");
  ParityMismatch stale;
  stale.stale_sectors = 1;
  f.parity.push_back(stale);
  CHECK(std::string(scrub_severity(f)) == "warning");
  FileScrub refused;
  refused.error = "not on btrfs";
  CHECK(std::string(scrub_severity(refused)) == "warning");
  FileScrub meta = refused;
  meta.error = "BTRFS_IOC_TREE_SEARCH_V2: Input/output error";
  meta.metadata_unreadable = true;
  CHECK(std::string(scrub_severity(meta)) == "critical");
  FileScrub bad;
  bad.examined = true;
  bad.bad.emplace_back();
  CHECK(std::string(scrub_severity(bad)) == "critical");
}
