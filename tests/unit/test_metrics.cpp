// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// --prometheus output against the rules of the Prometheus text exposition format 0.0.4: every
// line a HELP, a TYPE or a sample; names [a-zA-Z_:][a-zA-Z0-9_:]*; HELP and TYPE once per family
// and before its samples; label values escaped; no sample (name + labels) twice.
#include "cli/metrics.hpp"

#include <vmcsum/report/text.hpp>

#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

using namespace vmcsum;

namespace {

// Checks `text` against the format; returns the samples as "name{labels}" -> value.
std::map<std::string, double> parse_exposition(const std::string& text)
{
  static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$)");
  static const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|untyped)$)");
  static const std::regex sample(
    R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")(,([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"))*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$)");
  std::map<std::string, double> samples;
  std::set<std::string> helped, typed;
  std::istringstream in(text);
  std::string line;
  REQUIRE(!text.empty());
  REQUIRE(text.back() == '\n');
  while (std::getline(in, line)) {
    CAPTURE(line);
    std::smatch m;
    if (std::regex_match(line, m, help)) {
      CHECK(helped.insert(m[1]).second);
    } else if (std::regex_match(line, m, type)) {
      CHECK(typed.insert(m[1]).second);
      CHECK(helped.count(m[1]) == 1);
    } else {
      REQUIRE(std::regex_match(line, m, sample));
      CHECK(typed.count(m[1]) == 1);
      const std::string key = line.substr(0, line.rfind(' '));
      CHECK(samples.emplace(key, std::stod(line.substr(line.rfind(' ') + 1))).second);
    }
  }
  return samples;
}

core::Finding finding(const std::string& code, core::Severity s)
{
  core::Finding f;
  f.code = code;
  f.severity = s;
  return f;
}

} // namespace

TEST_CASE("audit metrics follow the exposition format and count images by severity and code")
{
  core::AuditResult r;
  r.kernel.release = "6.1.0";
  r.kernel.policy.checksummed = core::DioWrite::direct;
  core::ImageReport a;
  a.facts.data_profiles = {"raid1"};
  a.facts.nocow = true;
  a.findings = {finding("nocow-redundant-profile", core::Severity::warning)};
  core::ImageReport b;
  b.findings = {finding("false-mismatch-risk", core::Severity::critical),
                finding("csum-errors-logged", core::Severity::critical)};
  core::ImageReport c;
  r.images = {a, b, c};
  r.problems.push_back({"/x\"y", "no"});
  cli::RunFacts run{"audit", 1700000000.5, 2.25, 2};
  auto s = parse_exposition(cli::audit_metrics(r, run));
  CHECK(s.at(R"(vmcsum_audit_images{severity="critical"})") == 1);
  CHECK(s.at(R"(vmcsum_audit_images{severity="warning"})") == 1);
  CHECK(s.at(R"(vmcsum_audit_images{severity="ok"})") == 1);
  CHECK(s.at(R"(vmcsum_audit_findings_images{code="false-mismatch-risk",severity="critical"})") ==
        1);
  CHECK(s.at(R"(vmcsum_audit_nocow_redundant_images)") == 1);
  CHECK(s.at(R"(vmcsum_audit_problems)") == 1);
  CHECK(s.at(R"(vmcsum_last_run_exit_code{command="audit"})") == 2);
  CHECK(s.at(R"(vmcsum_last_run_timestamp_seconds{command="audit"})") == 1700000000.5);
  CHECK(
    s.at(
      R"(vmcsum_kernel_dio_write{file="checksummed-single",mode="direct",source="version-table"})") ==
    1);
}

TEST_CASE("scrub metrics count bad sectors by class and verified bytes")
{
  core::ScrubResult r;
  core::FileScrub f;
  f.examined = true;
  f.checked_bytes = 4096 * 3;
  core::BadSector b1;
  b1.cls = core::BadClass::false_mismatch;
  core::BadSector b2;
  b2.cls = core::BadClass::media;
  f.bad = {b1, b2, b1};
  core::FileScrub g;
  g.examined = false;
  r.files = {f, g};
  auto s = parse_exposition(cli::scrub_metrics(r, {"scrub", 1.0, 1.0, 3}));
  CHECK(s.at(R"(vmcsum_scrub_bad_sectors{class="false-mismatch"})") == 2);
  CHECK(s.at(R"(vmcsum_scrub_bad_sectors{class="media"})") == 1);
  CHECK(s.at(R"(vmcsum_scrub_bad_sectors{class="undetermined"})") == 0);
  CHECK(s.at(R"(vmcsum_scrub_verified_bytes)") == 12288);
  CHECK(s.at(R"(vmcsum_scrub_files_failed)") == 1);
  CHECK(s.at(R"(vmcsum_scrub_files)") == 2);
}
