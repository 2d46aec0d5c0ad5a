// SPDX-License-Identifier: GPL-2.0-or-later
// The audit's decision table, row by row.
#include <vmcsum/audit/audit.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <optional>

using namespace vmcsum::core;

namespace {

DioPolicy policy(DioWrite checksummed, DioWrite dup)
{
  DioPolicy p;
  p.checksummed = p.checksummed_duplicated = checksummed;
  p.nodatasum_duplicated = dup;
  p.nodatasum_single = DioWrite::direct;
  return p;
}

// The version table's row for a release (also used by static initializers: no REQUIRE here,
// a release that does not parse gives an empty policy and fails the checks that use it).
DioPolicy table(const char* release)
{
  auto v = parse_kernel_release(release);
  return v ? dio_policy_for(*v) : DioPolicy{};
}

const DioPolicy old_kernel = table("6.1.0");    // no fallback at all
const DioPolicy fixed_kernel = table("6.15.0"); // checksummed files fall back
const DioPolicy new_kernel = table("7.0.0");    // and every file on a profile with copies
const DioPolicy bounce_kernel = table("7.3.0"); // bounce buffers instead of both fallbacks

RiskInputs base(const DioPolicy& p, const char* profile = "single", const char* release = "test")
{
  RiskInputs in;
  in.policy = p;
  in.kernel_release = release;
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

// The rows issue 19 names, with the image's inode kind and data profile: the cell decides, not
// the single-profile answer.
TEST_CASE("checksummed image with O_DIRECT: the finding follows the kernel and the profile")
{
  struct Row
  {
    const char* release;
    const char* profile;
    const char* code; // the O_DIRECT finding
  };
  const Row rows[] = {
    {"6.1.0", "single", "false-mismatch-risk"},
    {"6.1.0", "dup", "false-mismatch-risk"},
    {"6.6.129", "raid1", "false-mismatch-risk"},
    {"6.6.130", "raid1", "dio-buffered-fallback"},
    {"6.12.74", "single", "false-mismatch-risk"},
    {"6.12.74", "dup", "false-mismatch-risk"},
    // 7c2830f00c3e reached 6.12.75 before 968f19c5b1b7 reached 6.12.77.
    {"6.12.75", "single", "false-mismatch-risk"},
    {"6.12.75", "dup", "dio-buffered-fallback"},
    {"6.12.76", "single", "false-mismatch-risk"},
    {"6.12.76", "raid1", "dio-buffered-fallback"},
    {"6.12.76", "raid10", "dio-buffered-fallback"},
    {"6.12.76", "raid0", "false-mismatch-risk"},
    {"6.12.77", "single", "dio-buffered-fallback"},
    {"6.12.77", "dup", "dio-buffered-fallback"},
    {"6.14.11", "dup", "false-mismatch-risk"},
    {"6.18.15", "single", "dio-buffered-fallback"},
    {"6.18.16", "dup", "dio-buffered-fallback"},
    {"6.19.5", "raid1", "dio-buffered-fallback"},
    {"6.19.6", "single", "dio-buffered-fallback"},
    {"7.0", "dup", "dio-buffered-fallback"},
    {"7.2", "single", "dio-buffered-fallback"},
    {"7.3", "single", "dio-bounce"},
    {"7.3", "dup", "dio-bounce"},
    {"7.3", "raid1c3", "dio-bounce"},
  };
  const char* all[] = {"false-mismatch-risk", "dio-buffered-fallback", "dio-bounce",
                       "dio-policy-unknown"};
  for (const auto& row : rows) {
    CAPTURE(row.release);
    CAPTURE(row.profile);
    auto in = base(table(row.release), row.profile, row.release);
    in.o_direct_configured = true;
    auto fs = assess(in);
    for (const char* code : all) {
      CAPTURE(code);
      CHECK(find(fs, code).has_value() == (std::string(code) == row.code));
    }
  }
}

TEST_CASE("6.12.75/76 on dup: buffered fallback by the profile rule; NOCOW would not help")
{
  auto in = base(table("6.12.76"), "dup", "6.12.76");
  in.o_direct_open = true;
  auto f = find(assess(in), "dio-buffered-fallback");
  REQUIRE(f);
  CHECK(f->severity == Severity::warning);
  CHECK(f->message.find("for every file on a profile with copies (dup)") != std::string::npos);
  CHECK(f->message.find("NOCOW would not help on dup") != std::string::npos);
  CHECK(f->action.find("set --nocow") == std::string::npos);

  // The same kernel on single is still zero-copy: the critical finding, and the upgrade named
  // for single is 6.12.77.
  auto single = base(table("6.12.76"), "single", "6.12.76");
  single.o_direct_open = true;
  f = find(assess(single), "false-mismatch-risk");
  REQUIRE(f);
  CHECK(f->action.find("6.12.77+") != std::string::npos);
  auto dup_old = base(table("6.12.74"), "dup", "6.12.74");
  dup_old.o_direct_open = true;
  f = find(assess(dup_old), "false-mismatch-risk");
  REQUIRE(f);
  CHECK(f->action.find("6.12.75+") != std::string::npos);
}

TEST_CASE("7.3 bounce buffers: an info finding, and what NOCOW changes per profile")
{
  auto in = base(bounce_kernel, "single", "7.3.0");
  in.o_direct_configured = true;
  auto fs = assess(in);
  auto f = find(fs, "dio-bounce");
  REQUIRE(f);
  CHECK(f->severity == Severity::info);
  CHECK(worst(fs) == Severity::info);
  CHECK(f->message.find("bounce buffers") != std::string::npos);
  CHECK(f->message.find("no page cache") != std::string::npos);
  CHECK(f->message.find("(version table)") != std::string::npos);
  // On single NOCOW is still zero-copy.
  CHECK(f->message.find("NOCOW would give zero-copy back on single") != std::string::npos);
  CHECK(f->action.find("set --nocow") != std::string::npos);

  auto dup = base(bounce_kernel, "dup", "7.3.0");
  dup.o_direct_configured = true;
  f = find(assess(dup), "dio-bounce");
  REQUIRE(f);
  CHECK(f->message.find("NOCOW would buy nothing on dup") != std::string::npos);
  CHECK(f->action.find("set --nocow") == std::string::npos);

  // A NOCOW image on dup under 7.3: its writes are bounced too, so NOCOW buys nothing.
  auto nocow = base(bounce_kernel, "raid1", "7.3.0");
  nocow.nocow = true;
  nocow.nodatasum = true;
  nocow.o_direct_open = true;
  f = find(assess(nocow), "nocow-redundant-profile");
  REQUIRE(f);
  CHECK(f->message.find("bounce buffers anyway, so NOCOW buys no zero-copy") != std::string::npos);
  CHECK(f->message.find("may silently differ") == std::string::npos);

  // And on single it is the zero-copy fast path.
  auto fast = base(bounce_kernel, "single", "7.3.0");
  fast.nocow = true;
  fast.nodatasum = true;
  fast.o_direct_open = true;
  CHECK(find(assess(fast), "nocow-direct-fast-path"));
}

TEST_CASE("NOCOW on dup: copies may differ only where the kernel writes them zero-copy")
{
  for (const char* release : {"6.1.0", "6.12.74", "6.18.15", "6.19.5"}) {
    CAPTURE(release);
    auto in = base(table(release), "dup", release);
    in.nocow = true;
    in.nodatasum = true;
    auto f = find(assess(in), "nocow-redundant-profile");
    REQUIRE(f);
    CHECK(f->message.find("may silently differ") != std::string::npos);
  }
  for (const char* release : {"6.12.75", "6.18.16", "6.19.6", "7.0"}) {
    CAPTURE(release);
    auto in = base(table(release), "dup", release);
    in.nocow = true;
    in.nodatasum = true;
    auto f = find(assess(in), "nocow-redundant-profile");
    REQUIRE(f);
    CHECK(f->message.find("falls back to buffered IO for it anyway") != std::string::npos);
  }
}

TEST_CASE("an unknown data profile: the cell only when both profiles agree")
{
  auto in = base(table("6.12.76"));
  in.data_profiles.clear();
  in.o_direct_open = true;
  auto f = find(assess(in), "dio-policy-unknown");
  REQUIRE(f);
  CHECK(f->message.find("depends on the data profile") != std::string::npos);

  auto same = base(table("6.18.44"));
  same.data_profiles.clear();
  same.o_direct_open = true;
  CHECK(find(assess(same), "dio-buffered-fallback"));
}
