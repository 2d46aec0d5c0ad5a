// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "metrics.hpp"

#include <vmcsum/error.hpp>
#include <vmcsum/report/finding.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/durable_file.hpp>
#include <vmcsum/sys/path.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>
#include <utility>

namespace vmcsum::cli {

namespace {

// A label value escaped as the exposition format asks: backslash, double quote and newline.
std::string label_value(const std::string& v)
{
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(double v)
{
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// One metric family: HELP and TYPE once, then its samples.
class Family
{
public:
  Family(std::string& out, const std::string& name, const std::string& type,
         const std::string& help)
    : m_out(out)
    , m_name(name)
  {
    m_out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void sample(const std::vector<std::pair<std::string, std::string>>& labels, double v)
  {
    m_out += m_name;
    if (!labels.empty()) {
      m_out += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        m_out += (i ? "," : "") + labels[i].first + "=\"" + label_value(labels[i].second) + '"';
      }
      m_out += '}';
    }
    m_out += ' ' + number(v) + '\n';
  }

private:
  std::string& m_out;
  std::string m_name;
};

void run_metrics(std::string& out, const RunFacts& run)
{
  Family(out, "vmcsum_last_run_timestamp_seconds", "gauge",
         "When the last run of a vmcsum command started.")
    .sample({{"command", run.command}}, run.started_at);
  Family(out, "vmcsum_last_run_duration_seconds", "gauge",
         "How long the last run of a vmcsum command took.")
    .sample({{"command", run.command}}, run.duration);
  Family(out, "vmcsum_last_run_exit_code", "gauge",
         "Exit status of the last run (0 clean, 1 warnings, 2 critical, 3 incomplete; an "
         "interrupted run writes no metrics).")
    .sample({{"command", run.command}}, run.exit_code);
}

bool duplicated_profile(const std::string& p)
{
  return p == "dup" || p.rfind("raid1", 0) == 0 || p == "raid10" || p == "raid5" || p == "raid6";
}

} // namespace

double epoch_seconds_now()
{
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string audit_metrics(const core::AuditResult& r, const RunFacts& run)
{
  std::string out;
  run_metrics(out, run);
  std::map<std::string, uint64_t> by_severity = {
    {"ok", 0}, {"info", 0}, {"warning", 0}, {"critical", 0}};
  std::map<std::pair<std::string, std::string>, uint64_t> by_code;
  uint64_t nocow_redundant = 0;
  for (const auto& img : r.images) {
    by_severity[img.findings.empty() ? "ok" : core::severity_name(core::worst(img.findings))]++;
    std::set<std::pair<std::string, std::string>> codes;
    for (const auto& f : img.findings) {
      codes.insert({f.code, core::severity_name(f.severity)});
    }
    for (const auto& c : codes) {
      by_code[c]++;
    }
    bool dup = false;
    for (const auto& p : img.facts.data_profiles) {
      dup = dup || duplicated_profile(p);
    }
    if (img.facts.nocow.value_or(false) && dup) {
      ++nocow_redundant;
    }
  }
  Family sev(out, "vmcsum_audit_images", "gauge", "VM images found, by their worst finding.");
  for (const auto& [s, n] : by_severity) {
    sev.sample({{"severity", s}}, static_cast<double>(n));
  }
  Family code(out, "vmcsum_audit_findings_images", "gauge",
              "VM images with a finding, by finding code and severity.");
  for (const auto& [c, n] : by_code) {
    code.sample({{"code", c.first}, {"severity", c.second}}, static_cast<double>(n));
  }
  Family(out, "vmcsum_audit_nocow_redundant_images", "gauge",
         "NOCOW images on a data profile with copies (DUP, RAID1*, RAID10, RAID5/6).")
    .sample({}, static_cast<double>(nocow_redundant));
  Family(out, "vmcsum_audit_problems", "gauge", "Paths the audit could not examine.")
    .sample({}, static_cast<double>(r.problems.size()));
  Family dio(out, "vmcsum_kernel_dio_write", "gauge",
             "What the running kernel does with an O_DIRECT write, per kind of file (1 = this "
             "mode).");
  // Each cell's own source: a probe measures the cells of its filesystem's profile only.
  const auto& p = r.kernel.policy;
  const std::tuple<const char*, core::DioWrite, bool> cells[] = {
    {"checksummed-single", p.checksummed, p.measured.checksummed},
    {"checksummed-duplicated", p.checksummed_duplicated, p.measured.checksummed_duplicated},
    {"nodatasum-single", p.nodatasum_single, p.measured.nodatasum_single},
    {"nodatasum-duplicated", p.nodatasum_duplicated, p.measured.nodatasum_duplicated},
  };
  for (const auto& [file, mode, measured] : cells) {
    dio.sample({{"file", file},
                {"mode", core::dio_write_name(mode)},
                {"source", measured ? "probe" : "version-table"}},
               1);
  }
  return out;
}

std::string scrub_metrics(const core::ScrubResult& r, const RunFacts& run)
{
  std::string out;
  run_metrics(out, run);
  uint64_t checked = 0, compared = 0, unreadable = 0;
  std::map<std::string, uint64_t> bad = {{"false-mismatch", 0}, {"media", 0}, {"undetermined", 0}};
  std::map<std::string, uint64_t> divergent = bad;
  for (const auto& f : r.files) {
    checked += f.checked_bytes;
    compared += f.compared_bytes;
    unreadable += f.examined ? 0 : 1;
    for (const auto& b : f.bad) {
      bad[core::bad_class_name(b.cls)]++;
    }
    for (const auto& d : f.divergent) {
      divergent[core::bad_class_name(d.cls)]++;
    }
  }
  Family(out, "vmcsum_scrub_files", "gauge", "Files the last scrub was asked to verify.")
    .sample({}, static_cast<double>(r.files.size()));
  Family(out, "vmcsum_scrub_files_failed", "gauge", "Files the last scrub could not read.")
    .sample({}, static_cast<double>(unreadable));
  Family(out, "vmcsum_scrub_verified_bytes", "gauge",
         "Bytes of checksummed sectors the last scrub verified (every copy read).")
    .sample({}, static_cast<double>(checked));
  Family(out, "vmcsum_scrub_compared_bytes", "gauge",
         "NODATASUM bytes whose copies the last scrub compared.")
    .sample({}, static_cast<double>(compared));
  Family bs(out, "vmcsum_scrub_bad_sectors", "gauge",
            "Sectors failing their checksum in the last scrub, by class.");
  for (const auto& [c, n] : bad) {
    bs.sample({{"class", c}}, static_cast<double>(n));
  }
  Family dv(out, "vmcsum_scrub_divergent_ranges", "gauge",
            "NODATASUM ranges whose copies differ in the last scrub, by class.");
  for (const auto& [c, n] : divergent) {
    dv.sample({{"class", c}}, static_cast<double>(n));
  }
  return out;
}

int export_metrics(Output& out, const std::string& file, int status,
                   const std::function<std::string(const RunFacts&)>& text, RunFacts run,
                   std::optional<std::string>& failure)
{
  if (file.empty()) {
    return status;
  }
  // An interrupted run (128 + signal) saw part of what it was asked: its counts (no bad sector
  // in the files it did not reach) would replace the last complete run's and clear the alerts
  // they raise. The file keeps that run's; its timestamp says how old it is.
  if (status >= exit_code::interrupted) {
    out.warn(core::escape_name(file) + ": metrics not written: the run was interrupted (the file "
                                       "keeps the last complete run's)");
    return status;
  }
  run.duration = epoch_seconds_now() - run.started_at;
  run.exit_code = status;
  try {
    write_metrics_file(file, text(run));
  } catch (const Error& e) {
    failure = "cannot write the metrics (--prometheus): " + std::string(e.what());
    out.error(core::escape_name(file) + ": " + *failure);
    return std::max(status, exit_code::incomplete);
  }
  return status;
}

void write_metrics_file(const std::string& path, const std::string& text)
{
  sys::replace_file_atomically(sys::parent_dir(path), sys::base_name(path), text, 0644);
}

} // namespace vmcsum::cli
