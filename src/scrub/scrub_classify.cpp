// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The scrub decision table (issue 19). It replaces the rule set of issue 5, which came from one
// sample of the real race and called media damage a false mismatch whenever only a later copy
// failed: which mirror fails is no evidence either way, since each device transfers the buffer
// on its own schedule (docs/kernel-facts.md "Evidence for and against the race": on a two-device
// raid1 the real race left mirror-1-only failures in 8 of 8 trials). Evidence that excludes the
// race wins; a kernel that may have written zero-copy is necessary, never sufficient; the race
// itself must show (its signature, or an O_DIRECT writer); otherwise the verdict stays with the
// disk (media) or says it cannot tell (undetermined).
#include <vmcsum/scrub/scrub.hpp>

#include <algorithm>
#include <cstdio>
#include <set>

namespace vmcsum::core {

std::string bad_class_name(BadClass c)
{
  switch (c) {
  case BadClass::false_mismatch:
    return "false-mismatch";
  case BadClass::media:
    return "media";
  case BadClass::undetermined:
    return "undetermined";
  }
  return "undetermined";
}

void apply_configured(const std::vector<ConfiguredDisk>& configured, ClassifyContext& ctx)
{
  ctx.configured_by.clear();
  ctx.configured_o_direct.reset();
  for (const auto& c : configured) {
    ctx.configured_o_direct = ctx.configured_o_direct.value_or(false) || c.o_direct;
    ctx.configured_by.push_back(c.source + " cache=" + (c.cache.empty() ? "default" : c.cache));
  }
}

bool race_signature(const BadSector& bad)
{
  if (bad.copies.size() < 2 || bad.copies_identical) {
    return false;
  }
  return std::none_of(bad.copies.begin(), bad.copies.end(), [](const SectorCopy& c) {
    return c.matches || c.read_error || c.fill.has_value();
  });
}

bool race_signature(const DivergentRange& d)
{
  return d.groups.size() >= 3 &&
         std::all_of(d.groups.begin(), d.groups.end(), [](const auto& g) { return g.size() == 1; });
}

namespace {

// The kernel record dates the write to a kernel whose O_DIRECT writes to this kind of inode on
// this profile are buffered or bounced: the race cannot have written it.
bool race_excluded(const WriteFacts& w)
{
  return w.window_known && w.kernel && !race_possible(w.dio_write);
}

} // namespace

// Only signatures the race may have made: one the record excludes is media (classify), and
// is no evidence for the other findings of its window (a NODATASUM range may be written where
// the same kernel zero-copies).
void collect_signature_windows(const std::vector<BadSector>& bad,
                               const std::vector<DivergentRange>& divergent, ClassifyContext& ctx)
{
  ctx.signature_windows.clear();
  for (const auto& b : bad) {
    if (race_signature(b) && !b.compressed && !race_excluded(b.written)) {
      ctx.signature_windows.insert(b.written.window);
    }
  }
  for (const auto& d : divergent) {
    if (race_signature(d) && !race_excluded(d.written)) {
      ctx.signature_windows.insert(d.written.window);
    }
  }
}

namespace {

std::string joined(const std::vector<std::string>& v)
{
  std::string out;
  for (const auto& s : v) {
    out += (out.empty() ? "" : ", ") + s;
  }
  return out;
}

std::string generation_text(const WriteFacts& w)
{
  return w.generation ? "written at generation " + std::to_string(*w.generation) : "written";
}

// What the kernel record says of the extent's write: excluded, possible (known) or unknown.
// Returns true when the race is excluded.
bool add_write_evidence(const WriteFacts& w, const char* inode_kind, std::vector<Evidence>& ev)
{
  if (race_excluded(w)) {
    ev.push_back(
      {"written-with-fallback", generation_text(w) + " while this host ran " + *w.kernel +
                                  ", whose O_DIRECT "
                                  "writes to " +
                                  inode_kind + " on this profile are " +
                                  (w.dio_write == DioWrite::bounce ? "bounced" : "buffered") +
                                  " (kernel record): the race cannot have written it"});
    return true;
  }
  if (w.window_known && w.kernel) {
    ev.push_back({"written-without-fallback", generation_text(w) + " while this host ran " +
                                                *w.kernel +
                                                ", which writes O_DIRECT zero-copy to " +
                                                inode_kind + " on this profile (kernel record)"});
  } else {
    ev.push_back({"write-kernel-unknown",
                  generation_text(w) + " in a gap of this host's kernel record: the kernel that "
                                       "wrote it is unknown, so the race is possible"});
  }
  return false;
}

// Race evidence other than the finding's own signature. Returns whether there is any.
bool add_writer_evidence(const WriteFacts& w, const ClassifyContext& ctx, bool own_signature,
                         std::vector<Evidence>& ev)
{
  bool any = false;
  if (!own_signature && ctx.signature_windows.count(w.window)) {
    ev.push_back({"same-window-as-signature",
                  "another bad sector of this file written in the same window carries the race's "
                  "signature"});
    any = true;
  }
  if (ctx.o_direct == true) {
    ev.push_back({"o-direct-open", "the image is open for writing with O_DIRECT now"});
    any = true;
  }
  if (ctx.configured_o_direct == true) {
    ev.push_back({"o-direct-configured",
                  "the image is configured with O_DIRECT (" + joined(ctx.configured_by) + ")"});
    any = true;
  } else if (ctx.configured_o_direct == false) {
    ev.push_back({"configured-without-o-direct",
                  "the image is configured without O_DIRECT (" + joined(ctx.configured_by) + ")"});
  }
  return any;
}

void add_open_for_writing(const ClassifyContext& ctx, std::vector<Evidence>& ev)
{
  if (ctx.open_for_writing) {
    ev.push_back({"open-for-writing", "the file was open for writing while scrubbed"});
  }
}

} // namespace

void classify(BadSector& bad, const ClassifyContext& ctx)
{
  auto& ev = bad.evidence;
  const size_t n = bad.copies.size();
  size_t matching = 0;
  bool unreadable = false;
  bool failing_device_errors = false;
  for (const auto& c : bad.copies) {
    if (c.matches) {
      ++matching;
      continue;
    }
    unreadable = unreadable || c.read_error;
    auto it = ctx.device_io_errors.find(c.devid);
    failing_device_errors =
      failing_device_errors || (it != ctx.device_io_errors.end() && it->second);
  }
  bad.repairable = matching > 0;
  const bool signature = race_signature(bad);

  // Facts first, in a fixed order.
  if (n < 2) {
    ev.push_back({"single-copy", "the profile keeps one copy of this sector"});
  } else if (matching > 0) {
    ev.push_back({"copy-matches", std::to_string(matching) + " of " + std::to_string(n) +
                                    " copies match: btrfs repairs it on read or scrub"});
  } else if (signature) {
    ev.push_back({"race-signature", "no copy matches its checksum and the " + std::to_string(n) +
                                      " copies differ from each other: two wrong versions of one "
                                      "sector, as the race leaves them"});
  } else if (bad.copies_identical) {
    ev.push_back({"identical-bad-copies", "no copy matches its checksum, and all " +
                                            std::to_string(n) + " hold the same bytes"});
  }
  const auto uniform = std::find_if(bad.copies.begin(), bad.copies.end(),
                                    [](const SectorCopy& c) { return c.fill.has_value(); });
  if (uniform != bad.copies.end()) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned>(*uniform->fill));
    ev.push_back({"uniform-copy", "copy " + std::to_string(uniform->mirror) + " holds " + byte +
                                    " in every byte: what a lost or unwritten sector, a "
                                    "device's fill or deliberate damage leaves, not a version "
                                    "of data that was written"});
  }
  if (unreadable) {
    ev.push_back({"copy-unreadable", "a device read of a copy failed"});
  }
  if (failing_device_errors) {
    ev.push_back({"device-errors",
                  "the device stats show read/write/flush errors on a device of a failing copy"});
  }

  // Row 1: evidence that excludes the race.
  bool excluded = false;
  if (bad.compressed) {
    ev.push_back({"compressed-extent",
                  "the sector is in a compressed extent, which an O_DIRECT write never produces"});
    excluded = true;
  }
  excluded = add_write_evidence(bad.written, "checksummed files", ev) || excluded;
  const bool writer = add_writer_evidence(bad.written, ctx, signature, ev);
  add_open_for_writing(ctx, ev);
  if (excluded || unreadable || failing_device_errors) {
    bad.cls = BadClass::media; // rows 1 and 2
    return;
  }
  // A copy that is one byte repeated is no version of a guest's write: whatever else points to
  // the race, the disk is not shown fine (row 3 needs the race to show; this shows otherwise).
  if ((signature || writer) && uniform == bad.copies.end()) {
    bad.cls = BadClass::false_mismatch; // row 3
    return;
  }
  bad.cls = matching > 0 ? BadClass::media : BadClass::undetermined; // row 4
}

void classify(DivergentRange& d, const ClassifyContext& ctx)
{
  auto& ev = d.evidence;
  std::string groups;
  for (const auto& g : d.groups) {
    std::string one;
    for (unsigned m : g) {
      one += (one.empty() ? "" : "+") + std::to_string(m);
    }
    groups += (groups.empty() ? "" : " / ") + one;
  }
  const bool signature = race_signature(d);
  ev.push_back({"copies-differ", "the copies hold " + std::to_string(d.groups.size()) +
                                   " different versions (mirrors " + groups +
                                   "); without a checksum nothing tells which is right"});
  if (signature) {
    ev.push_back({"race-signature", "every copy differs from every other"});
  }
  const bool excluded = add_write_evidence(d.written, "NODATASUM files", ev);
  const bool writer = add_writer_evidence(d.written, ctx, signature, ev);
  add_open_for_writing(ctx, ev);
  if (excluded) {
    d.cls = BadClass::media;
  } else if (signature || writer) {
    d.cls = BadClass::false_mismatch;
  } else {
    d.cls = BadClass::undetermined;
  }
}

} // namespace vmcsum::core
