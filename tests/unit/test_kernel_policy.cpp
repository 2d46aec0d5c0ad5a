// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/core/kernel_policy.hpp>

#include <doctest/doctest.h>

using namespace vmcsum::core;

namespace {
DioPolicy policy(std::string_view release)
{
  auto v = parse_kernel_release(release);
  REQUIRE_MESSAGE(v, release);
  return dio_policy_for(*v);
}

constexpr auto direct = DioWrite::direct;
constexpr auto fallback = DioWrite::buffered_fallback;
constexpr auto unknown = DioWrite::unknown;
} // namespace

TEST_CASE("kernel release strings")
{
  auto v = parse_kernel_release("6.12.77-amd64");
  REQUIRE(v);
  CHECK(*v == KernelVersion{6, 12, 77});
  // Debian's ABI name: the third number is not the upstream sublevel.
  CHECK(parse_kernel_release("6.1.0-28-amd64") == KernelVersion{6, 1, 0});
  CHECK(parse_kernel_release("6.1.0-28-cloud-amd64") == KernelVersion{6, 1, 0});
  CHECK(parse_kernel_release("6.12.73+deb13-amd64") == KernelVersion{6, 12, 73});
  CHECK(parse_kernel_release("7.0-rc3") == KernelVersion{7, 0, 0});
  CHECK(parse_kernel_release("6.18.44-fc-v782") == KernelVersion{6, 18, 44});
  CHECK(parse_kernel_release("6.18.44\n") == KernelVersion{6, 18, 44});
  CHECK(parse_kernel_release("5.15") == KernelVersion{5, 15, 0});
  CHECK(parse_kernel_release("6.6.") == KernelVersion{6, 6, 0});
  CHECK(parse_kernel_release("6.8.0-45-generic") == KernelVersion{6, 8, 0});

  CHECK_FALSE(parse_kernel_release(""));
  CHECK_FALSE(parse_kernel_release("6"));
  CHECK_FALSE(parse_kernel_release("6."));
  CHECK_FALSE(parse_kernel_release("v6.1"));
  CHECK_FALSE(parse_kernel_release(" 6.1"));
  CHECK_FALSE(parse_kernel_release("linux-6.1"));
  CHECK_FALSE(parse_kernel_release("99999999999.1"));
}

TEST_CASE("versions order by major, minor, patch")
{
  CHECK(KernelVersion{6, 6, 130} > KernelVersion{6, 6, 129});
  CHECK(KernelVersion{6, 15, 0} > KernelVersion{6, 14, 11});
  CHECK(KernelVersion{7, 0, 0} > KernelVersion{6, 19, 99});
}

TEST_CASE("O_DIRECT to checksummed files: the 968f19c5b1b7 table")
{
  struct Row
  {
    const char* release;
    DioWrite checksummed;
  };
  const Row rows[] = {
    {"5.10.0-30-amd64", direct}, {"5.15.0-91-generic", direct},
    {"6.1.0-28-amd64", direct},  {"6.1.176", direct},
    {"6.5.13", direct},          {"6.6.0", direct},
    {"6.6.129", direct},         {"6.6.130", fallback},
    {"6.6.131-lts", fallback},   {"6.11.11", direct},
    {"6.12.0", direct},          {"6.12.76", direct},
    {"6.12.77", fallback},       {"6.12.80+deb13-amd64", fallback},
    {"6.13.0", direct},          {"6.13.12", direct},
    {"6.14.6", direct},          {"6.14.11", direct},
    {"6.15-rc1", fallback},      {"6.15.0", fallback},
    {"6.16.3", fallback},        {"6.18.43", fallback},
    {"6.18.44", fallback},       {"6.19.2", fallback},
    {"7.0.0", fallback},         {"7.2.4", fallback},
  };
  for (const auto& row : rows) {
    CAPTURE(row.release);
    auto p = policy(row.release);
    CHECK(p.checksummed == row.checksummed);
    CHECK(p.nodatasum_single == direct);
    CHECK_FALSE(p.reason.empty());
  }
}

TEST_CASE("O_DIRECT to NODATASUM files on duplicated profiles")
{
  struct Row
  {
    const char* release;
    DioWrite dup;
  };
  const Row rows[] = {
    {"5.15.0", direct},    {"6.1.0-28-amd64", direct}, {"6.6.130", direct}, {"6.12.74", direct},
    {"6.12.75", unknown},  {"6.12.77", unknown},       {"6.13.5", direct},  {"6.14.11", direct},
    {"6.15.0", direct},    {"6.17.9", direct},         {"6.18.0", unknown}, {"6.18.43", unknown},
    {"6.18.44", fallback}, {"6.18.50", fallback},      {"6.19.0", unknown}, {"6.19.8", unknown},
    {"7.0-rc1", fallback}, {"7.0.0", fallback},        {"7.2.4", fallback},
  };
  for (const auto& row : rows) {
    CAPTURE(row.release);
    CHECK(policy(row.release).nodatasum_duplicated == row.dup);
  }
}

TEST_CASE("the reason names the rule that decided")
{
  CHECK(policy("6.12.77").reason.find("6.12.77 backport") != std::string::npos);
  CHECK(policy("6.6.129").reason.find("predates the 6.6.130 backport") != std::string::npos);
  CHECK(policy("6.14.11").reason.find("no version of 968f19c5b1b7") != std::string::npos);
  CHECK(policy("6.18.43").reason.find("unconfirmed") != std::string::npos);
  CHECK(policy("6.18.44").reason.find("verified on 6.18.44") != std::string::npos);
}

TEST_CASE("dio write names")
{
  CHECK(dio_write_name(direct) == "direct");
  CHECK(dio_write_name(fallback) == "buffered-fallback");
  CHECK(dio_write_name(unknown) == "unknown");
}
