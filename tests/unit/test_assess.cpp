// SPDX-License-Identifier: GPL-2.0-or-later
// The audit's decision table, row by row.
#include <vmcsum/core/audit.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <optional>

using namespace vmcsum::core;

namespace {

DioPolicy policy(DioWrite checksummed, DioWrite dup)
{
  DioPolicy p;
  p.checksummed = checksummed;
  p.nodatasum_duplicated = dup;
  p.nodatasum_single = DioWrite::direct;
  return p;
}

const DioPolicy old_kernel = policy(DioWrite::direct, DioWrite::direct);              // 6.1
const DioPolicy fixed_kernel = policy(DioWrite::buffered_fallback, DioWrite::direct); // 6.15
const DioPolicy new_kernel =
  policy(DioWrite::buffered_fallback, DioWrite::buffered_fallback); // 7.0

RiskInputs base(const DioPolicy& p, const char* profile = "single")
{
  RiskInputs in;
  in.policy = p;
  in.kernel_release = "test";
  in.data_profiles = {profile};
  in.nodatasum = false;
  return in;
}

// A copy, not a pointer: callers often pass assess()'s temporary straight in.
std::optional<Finding> find(const std::vector<Finding>& fs, const std::string& code)
{
  auto it = std::find_if(fs.begin(), fs.end(), [&](const Finding& f) { return f.code == code; });
  return it == fs.end() ? std::nullopt : std::optional<Finding>(*it);
}

} // namespace

TEST_CASE("checksummed image without O_DIRECT: nothing to say")
{
  for (const auto& p : {old_kernel, fixed_kernel, new_kernel}) {
    CHECK(assess(base(p)).empty());
  }
}

TEST_CASE("checksummed + O_DIRECT on a kernel without the fallback is critical")
{
  auto in = base(old_kernel);
  in.o_direct_configured = true;
  auto fs = assess(in);
  std::optional<Finding> f = find(fs, "false-mismatch-risk");
  REQUIRE(f);
  CHECK(f->severity == Severity::critical);
  CHECK(worst(fs) == Severity::critical);

  // Open with O_DIRECT now counts as much as configured.
  in.o_direct_configured = false;
  in.o_direct_open = true;
  CHECK(find(assess(in), "false-mismatch-risk"));
}

TEST_CASE("checksummed + O_DIRECT on a kernel with the fallback is a warning, with NOCOW advice")
{
  auto in = base(fixed_kernel, "single");
  in.o_direct_open = true;
  auto fs = assess(in);
  std::optional<Finding> f = find(fs, "dio-buffered-fallback");
  REQUIRE(f);
  CHECK(f->severity == Severity::warning);
  CHECK(f->message.find("NOCOW would give zero-copy back") != std::string::npos);
  CHECK_FALSE(find(fs, "false-mismatch-risk"));

  // On dup with the 7.0 rule NOCOW buys nothing.
  auto dup = base(new_kernel, "dup");
  dup.o_direct_configured = true;
  f = find(assess(dup), "dio-buffered-fallback");
  REQUIRE(f);
  CHECK(f->message.find("NOCOW would not help") != std::string::npos);

  auto unknown = base(policy(DioWrite::buffered_fallback, DioWrite::unknown), "raid1");
  unknown.o_direct_configured = true;
  f = find(assess(unknown), "dio-buffered-fallback");
  REQUIRE(f);
  CHECK(f->message.find("unknown for this kernel") != std::string::npos);
}

TEST_CASE("an unknown kernel policy asks for a probe")
{
  auto in = base(policy(DioWrite::unknown, DioWrite::unknown));
  in.o_direct_open = true;
  CHECK(find(assess(in), "dio-policy-unknown"));
}

TEST_CASE("NOCOW on a redundant profile: no self-healing")
{
  for (const char* p : {"dup", "raid1", "raid1c3", "raid10", "raid5", "raid6"}) {
    CAPTURE(p);
    auto in = base(fixed_kernel, p);
    in.nocow = true;
    in.nodatasum = true;
    auto fs = assess(in);
    std::optional<Finding> f = find(fs, "nocow-redundant-profile");
    REQUIRE(f);
    CHECK(f->severity == Severity::warning);
    CHECK(f->message.find("falls back") == std::string::npos);
  }
  auto in = base(new_kernel, "dup");
  in.nocow = true;
  in.nodatasum = true;
  std::optional<Finding> f = find(assess(in), "nocow-redundant-profile");
  REQUIRE(f);
  CHECK(f->message.find("no zero-copy") != std::string::npos);
}

TEST_CASE("NOCOW on single with O_DIRECT is the fast path (info)")
{
  for (const char* p : {"single", "raid0"}) {
    auto in = base(new_kernel, p);
    in.nocow = true;
    in.nodatasum = true;
    in.o_direct_open = true;
    auto fs = assess(in);
    REQUIRE(find(fs, "nocow-direct-fast-path"));
    CHECK(worst(fs) == Severity::info);
  }
}

TEST_CASE("NODATASUM without NOCOW (nodatasum mount) is judged like NOCOW")
{
  auto in = base(old_kernel, "single");
  in.nodatasum = true;
  in.o_direct_configured = true;
  auto fs = assess(in);
  CHECK_FALSE(find(fs, "false-mismatch-risk"));
  CHECK(find(fs, "nocow-direct-fast-path"));
}

TEST_CASE("NOCOW with shared extents")
{
  auto in = base(fixed_kernel);
  in.nocow = true;
  in.nodatasum = true;
  in.shared_bytes = 4096;
  std::optional<Finding> f = find(assess(in), "nocow-shared-extents");
  REQUIRE(f);
  CHECK(f->severity == Severity::warning);
  in.nocow = false;
  in.nodatasum = false;
  CHECK_FALSE(find(assess(in), "nocow-shared-extents")); // COW images share by design
}

TEST_CASE("directory attribute differs from the image's")
{
  auto in = base(fixed_kernel);
  in.nocow = true;
  in.nodatasum = true;
  in.dir_nocow = false;
  std::optional<Finding> f = find(assess(in), "dir-nocow-mismatch");
  REQUIRE(f);
  CHECK(f->message.find("new images") != std::string::npos);
  in.nocow = false;
  in.nodatasum = false;
  in.dir_nocow = true;
  f = find(assess(in), "dir-nocow-mismatch");
  REQUIRE(f);
  CHECK(f->message.find("directory is NOCOW") != std::string::npos);
  in.dir_nocow = std::nullopt;
  CHECK_FALSE(find(assess(in), "dir-nocow-mismatch"));
  in.dir_nocow = false;
  CHECK_FALSE(find(assess(in), "dir-nocow-mismatch"));
}

TEST_CASE("unknown NODATASUM (not root)")
{
  auto in = base(old_kernel);
  in.nodatasum = std::nullopt;
  in.o_direct_open = true;
  auto fs = assess(in);
  CHECK(find(fs, "nodatasum-unknown"));
  CHECK_FALSE(find(fs, "false-mismatch-risk"));
  // NOCOW settles it: NOCOW implies NODATASUM.
  in.nocow = true;
  fs = assess(in);
  CHECK_FALSE(find(fs, "nodatasum-unknown"));
  CHECK(find(fs, "nocow-direct-fast-path"));
}

TEST_CASE("checksum failures in the kernel log are critical whatever else holds")
{
  auto in = base(new_kernel);
  in.logged_csum_errors = 3;
  auto fs = assess(in);
  std::optional<Finding> f = find(fs, "csum-errors-logged");
  REQUIRE(f);
  CHECK(f->severity == Severity::critical);
  CHECK(f->message.find("3 checksum") != std::string::npos);
}

TEST_CASE("a measured policy says so")
{
  auto in = base(fixed_kernel);
  in.o_direct_open = true;
  in.policy_source = "probe";
  std::optional<Finding> f = find(assess(in), "dio-buffered-fallback");
  REQUIRE(f);
  CHECK(f->message.find("(measured)") != std::string::npos);
}
