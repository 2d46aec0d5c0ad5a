// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The scrub decision table, one case per row (src/core/scrub_classify.cpp).
#include <vmcsum/core/scrub.hpp>

#include <doctest/doctest.h>

using namespace vmcsum::core;

namespace {

BadSector sector(std::vector<bool> matches, std::vector<uint64_t> devids = {},
                 bool identical = false)
{
  BadSector b;
  for (size_t i = 0; i < matches.size(); ++i) {
    SectorCopy c;
    c.mirror = static_cast<unsigned>(i + 1);
    c.devid = devids.empty() ? 1 : devids[i];
    c.matches = matches[i];
    b.copies.push_back(c);
  }
  b.copies_identical = identical;
  return b;
}

bool has_evidence(const BadSector& b, const std::string& part)
{
  for (const auto& e : b.evidence) {
    if (e.find(part) != std::string::npos) {
      return true;
    }
  }
  return false;
}

} // namespace

TEST_CASE("scrub classify row 1: no copy matches is a false mismatch, copies identical or not")
{
  ClassifyContext ctx;
  auto same = sector({false, false}, {}, true);
  classify(same, ctx);
  CHECK(same.cls == BadClass::false_mismatch);
  CHECK_FALSE(same.repairable);
  CHECK(has_evidence(same, "identical"));
  CHECK(has_evidence(same, "no read/write errors"));

  auto differ = sector({false, false, false}, {1, 2, 3});
  ctx.o_direct = true;
  ctx.kernel_direct = true;
  classify(differ, ctx);
  CHECK(differ.cls == BadClass::false_mismatch);
  CHECK(has_evidence(differ, "differing"));
  CHECK(has_evidence(differ, "O_DIRECT"));
  CHECK(has_evidence(differ, "without the buffered fallback"));

  // I/O errors are noted, the verdict stays
  ctx.device_io_errors[1] = true;
  auto io = sector({false, false}, {1, 2});
  classify(io, ctx);
  CHECK(io.cls == BadClass::false_mismatch);
  CHECK(has_evidence(io, "read/write errors on a device"));
}

TEST_CASE("scrub classify row 2a: isolated on one device with I/O errors is media")
{
  ClassifyContext ctx;
  ctx.device_io_errors = {{1, false}, {2, true}};
  ctx.no_copy_matches = 5; // even in a file with race sectors
  auto b = sector({true, false}, {1, 2});
  classify(b, ctx);
  CHECK(b.cls == BadClass::media);
  CHECK(b.repairable);
}

TEST_CASE("scrub classify row 2b: some copies match in a file with no-copy-matches sectors")
{
  ClassifyContext ctx;
  ctx.no_copy_matches = 3;
  auto b = sector({true, false});
  classify(b, ctx);
  CHECK(b.cls == BadClass::false_mismatch);
  CHECK(b.repairable);
  CHECK(has_evidence(b, "3 sector(s) where no copy matches"));
}

TEST_CASE("scrub classify row 2c: later copy fails across many sectors")
{
  ClassifyContext ctx;
  ctx.later_copy_only = k_later_copy_many;
  auto b = sector({true, false});
  classify(b, ctx);
  CHECK(b.cls == BadClass::false_mismatch);

  // below the threshold, or with mirror 1 failing alone somewhere: media
  ctx.later_copy_only = k_later_copy_many - 1;
  auto few = sector({true, false});
  classify(few, ctx);
  CHECK(few.cls == BadClass::media);
  ctx.later_copy_only = 100;
  ctx.first_copy_only = 1;
  auto mixed = sector({true, false});
  classify(mixed, ctx);
  CHECK(mixed.cls == BadClass::media);
}

TEST_CASE("scrub classify row 2d: one copy damaged in a file without the race's pattern is media")
{
  ClassifyContext ctx;
  auto first = sector({false, true});
  classify(first, ctx);
  CHECK(first.cls == BadClass::media);
  CHECK(first.repairable);
  auto later = sector({true, false});
  classify(later, ctx);
  CHECK(later.cls == BadClass::media);
}

TEST_CASE("scrub classify rows 3: one copy only")
{
  ClassifyContext ctx;
  auto plain = sector({false});
  classify(plain, ctx);
  CHECK(plain.cls == BadClass::undetermined); // 3c
  CHECK_FALSE(plain.repairable);
  CHECK(has_evidence(plain, "would settle it"));

  ctx.device_io_errors[1] = true;
  auto io = sector({false});
  classify(io, ctx);
  CHECK(io.cls == BadClass::media); // 3a

  ctx.device_io_errors[1] = false;
  ctx.o_direct = true;
  ctx.kernel_direct = true;
  auto race = sector({false});
  classify(race, ctx);
  CHECK(race.cls == BadClass::false_mismatch); // 3b

  ctx.kernel_direct = false;
  auto fallback = sector({false});
  classify(fallback, ctx);
  CHECK(fallback.cls == BadClass::undetermined);

  auto unreadable = sector({false});
  unreadable.copies[0].read_error = true;
  ctx = {};
  classify(unreadable, ctx);
  CHECK(unreadable.cls == BadClass::media);
}

TEST_CASE("scrub count_patterns")
{
  std::vector<BadSector> bad = {sector({false, false}), sector({true, false}),
                                sector({true, false}), sector({false, true}), sector({false})};
  ClassifyContext ctx;
  count_patterns(bad, ctx);
  CHECK(ctx.no_copy_matches == 1);
  CHECK(ctx.later_copy_only == 2);
  CHECK(ctx.first_copy_only == 1);
}

TEST_CASE("scrub class names")
{
  CHECK(bad_class_name(BadClass::false_mismatch) == "false-mismatch");
  CHECK(bad_class_name(BadClass::media) == "media");
  CHECK(bad_class_name(BadClass::undetermined) == "undetermined");
}

TEST_CASE("scrub classify: the configured cache mode is evidence and decides row 3b")
{
  ConfiguredDisk none;
  none.source = "libvirt:vm1";
  none.cache = "none";
  none.o_direct = true;
  ConfiguredDisk wb;
  wb.source = "proxmox:100";
  wb.cache = "writeback";
  ConfiguredDisk dflt;
  dflt.source = "libvirt:vm2";

  ClassifyContext ctx;
  apply_configured({}, ctx);
  CHECK_FALSE(ctx.configured_o_direct.has_value());
  apply_configured({wb, dflt}, ctx);
  CHECK(ctx.configured_o_direct == false);
  CHECK(ctx.configured_by ==
        std::vector<std::string>{"proxmox:100 cache=writeback", "libvirt:vm2 cache=default"});
  apply_configured({wb, none}, ctx);
  CHECK(ctx.configured_o_direct == true);

  // One copy, a kernel without the fallback: configured O_DIRECT alone makes it the race.
  ctx.kernel_direct = true;
  auto race = sector({false});
  classify(race, ctx);
  CHECK(race.cls == BadClass::false_mismatch);
  CHECK(has_evidence(race, "configured with O_DIRECT (proxmox:100 cache=writeback, libvirt:vm1 "
                           "cache=none)"));
  CHECK_FALSE(has_evidence(race, "open with O_DIRECT now"));

  // Configured without O_DIRECT: said so, and the verdict stays undetermined.
  apply_configured({wb}, ctx);
  auto plain = sector({false});
  classify(plain, ctx);
  CHECK(plain.cls == BadClass::undetermined);
  CHECK(has_evidence(plain, "configured without O_DIRECT (proxmox:100 cache=writeback)"));

  // Open with O_DIRECT now and configured so: both said.
  apply_configured({none}, ctx);
  ctx.o_direct = true;
  auto both = sector({false, false}, {}, true);
  classify(both, ctx);
  CHECK(both.cls == BadClass::false_mismatch);
  CHECK(has_evidence(both, "open with O_DIRECT now"));
  CHECK(has_evidence(both, "configured with O_DIRECT (libvirt:vm1 cache=none)"));

  // The kernel has the fallback: configured O_DIRECT does not decide a single copy.
  ctx = {};
  apply_configured({none}, ctx);
  ctx.kernel_direct = false;
  auto fallback = sector({false});
  classify(fallback, ctx);
  CHECK(fallback.cls == BadClass::undetermined);
}
