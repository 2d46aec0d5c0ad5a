// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The scrub decision table. The rules come from the real O_DIRECT race on a dup btrfs under
// user-mode-linux 6.1 (issue 5, reproducing-the-bug.md): 1255 bad sectors of 8 MiB, no copy
// matching on 814 (copies differing on 99 of 100 sampled), only the second copy failing on 441.
#include <vmcsum/core/scrub.hpp>

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

void count_patterns(const std::vector<BadSector>& bad, ClassifyContext& ctx)
{
  ctx.no_copy_matches = ctx.later_copy_only = ctx.first_copy_only = 0;
  for (const auto& b : bad) {
    if (b.copies.size() < 2) {
      continue;
    }
    size_t matching = 0;
    for (const auto& c : b.copies) {
      matching += c.matches ? 1 : 0;
    }
    if (matching == 0) {
      ++ctx.no_copy_matches;
    } else if (b.copies.front().matches) {
      ++ctx.later_copy_only;
    } else if (matching == b.copies.size() - 1) {
      ++ctx.first_copy_only;
    }
  }
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

namespace {

// A writer that may have used O_DIRECT: open with it now, or configured to.
bool direct_writer(const ClassifyContext& ctx)
{
  return ctx.o_direct == true || ctx.configured_o_direct == true;
}

std::string joined(const std::vector<std::string>& v)
{
  std::string out;
  for (const auto& s : v) {
    out += (out.empty() ? "" : ", ") + s;
  }
  return out;
}

void add_context_evidence(BadSector& bad, const ClassifyContext& ctx, bool io_errors)
{
  if (ctx.o_direct == true) {
    bad.evidence.emplace_back("the image is open with O_DIRECT now");
  }
  if (ctx.configured_o_direct == true) {
    bad.evidence.emplace_back("the image is configured with O_DIRECT (" +
                              joined(ctx.configured_by) + ")");
  } else if (ctx.configured_o_direct == false) {
    bad.evidence.emplace_back("the image is configured without O_DIRECT (" +
                              joined(ctx.configured_by) + ")");
  }
  if (ctx.kernel_direct == true) {
    bad.evidence.emplace_back(
      "this kernel writes O_DIRECT to checksummed files without the buffered fallback");
  } else if (ctx.kernel_direct == false) {
    bad.evidence.emplace_back("this kernel has the buffered fallback; an earlier kernel may have "
                              "written the sector");
  }
  if (!io_errors) {
    bad.evidence.emplace_back("no read/write errors in the device stats");
  }
}

} // namespace

void classify(BadSector& bad, const ClassifyContext& ctx)
{
  const size_t n = bad.copies.size();
  size_t matching = 0;
  std::set<uint64_t> failing_devs;
  bool failing_have_io_errors = false;
  bool any_io_errors = false;
  bool first_matches = n > 0 && bad.copies.front().matches;
  for (const auto& c : bad.copies) {
    auto it = ctx.device_io_errors.find(c.devid);
    const bool io = it != ctx.device_io_errors.end() && it->second;
    any_io_errors = any_io_errors || io || c.read_error;
    if (c.matches) {
      ++matching;
    } else {
      failing_devs.insert(c.devid);
      failing_have_io_errors = failing_have_io_errors || io || c.read_error;
    }
  }
  bad.repairable = matching > 0;

  if (n >= 2 && matching == 0) {
    // Row 1: the race signature. Media faults hitting every copy of one sector are improbable.
    bad.cls = BadClass::false_mismatch;
    bad.evidence.emplace_back("no copy matches its checksum (" + std::to_string(n) + " copies, " +
                              (bad.copies_identical ? "identical" : "differing") + ")");
    if (any_io_errors) {
      bad.evidence.emplace_back("the device stats show read/write errors on a device of a copy");
    }
    add_context_evidence(bad, ctx, any_io_errors);
    return;
  }
  if (n >= 2) {
    bad.evidence.emplace_back(std::to_string(matching) + " of " + std::to_string(n) +
                              " copies match: btrfs repairs it on read or scrub");
    if (failing_devs.size() == 1 && failing_have_io_errors) {
      // Row 2a: isolated on one device that reports I/O errors.
      bad.cls = BadClass::media;
      bad.evidence.emplace_back("the bad copies sit on one device, which has read/write errors");
      return;
    }
    if (ctx.no_copy_matches > 0) {
      // Row 2b: the same file has race-signature sectors.
      bad.cls = BadClass::false_mismatch;
      bad.evidence.emplace_back("the file also has " + std::to_string(ctx.no_copy_matches) +
                                " sector(s) where no copy matches");
      add_context_evidence(bad, ctx, any_io_errors);
      return;
    }
    if (first_matches && ctx.later_copy_only >= k_later_copy_many && ctx.first_copy_only == 0) {
      // Row 2c: the kernel submits mirror 1 first; the buffer changed before the later copies.
      bad.cls = BadClass::false_mismatch;
      bad.evidence.emplace_back("only a later copy fails, on " +
                                std::to_string(ctx.later_copy_only) +
                                " sectors of the file, and never mirror 1 alone");
      add_context_evidence(bad, ctx, any_io_errors);
      return;
    }
    // Row 2d.
    bad.cls = BadClass::media;
    bad.evidence.emplace_back("isolated damage of some copies, not the race's pattern");
    return;
  }

  // Rows 3: one copy only (profile single, raid0).
  if (failing_have_io_errors) {
    bad.cls = BadClass::media; // Row 3a
    bad.evidence.emplace_back("the only copy fails and its device has read/write errors");
    return;
  }
  if (direct_writer(ctx) && ctx.kernel_direct == true) {
    bad.cls = BadClass::false_mismatch; // Row 3b
    bad.evidence.emplace_back("the only copy fails");
    add_context_evidence(bad, ctx, false);
    return;
  }
  bad.cls = BadClass::undetermined; // Row 3c
  bad.evidence.emplace_back("the only copy fails; a second copy (dup/raid1), an O_DIRECT writer on "
                            "a kernel without the fallback, or device I/O errors would settle it");
  add_context_evidence(bad, ctx, false);
}

} // namespace vmcsum::core
