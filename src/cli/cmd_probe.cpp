// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum probe [PATH...]: what an O_DIRECT write really does on each btrfs filesystem, measured.
#include "app.hpp"
#include "interactive.hpp"

#include <vmcsum/measure/probe.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <map>

namespace vmcsum::cli {

namespace {

struct ProbeCliOptions
{
  std::vector<std::string> paths;
  std::string method = "auto";
};

Style style_of(core::DioWrite w)
{
  switch (w) {
  case core::DioWrite::direct:
    return Style::yellow; // zero-copy: fast, and for checksummed files the risky case
  case core::DioWrite::buffered_fallback:
  case core::DioWrite::bounce: // a copy first: safe
    return Style::plain;
  case core::DioWrite::unknown:
    return Style::dim;
  }
  return Style::plain;
}

const std::vector<std::string> columns = {"MOUNT", "PROFILE", "CHECKSUMMED",
                                          "NOCOW", "METHOD",  "VERSION-TABLE"};

void render_text(const core::ProbeResult& r, Output& out)
{
  Table table(columns);
  std::string details;
  for (const auto& fs : r.filesystems) {
    const auto agrees = core::agrees_with_version_table(fs);
    std::string table_word = !agrees ? "-" : (*agrees ? "agrees" : "differs");
    table.add({core::escape_name(fs.mount),
               fs.data_profiles.empty() ? "?" : core::profiles_text(fs.data_profiles),
               out.paint(core::dio_write_name(fs.checksummed), style_of(fs.checksummed)),
               out.paint(core::dio_write_name(fs.nocow), style_of(fs.nocow)), fs.method,
               out.paint(table_word, table_word == "differs" ? Style::yellow : Style::plain)});
    details += "\n" + out.paint(core::escape_name(fs.mount), Style::bold) + "\n";
    for (const auto& e : fs.evidence) {
      details += "  " + e + "\n";
    }
    for (const auto& [what, why] : fs.unknown) {
      details += "  " + out.paint(what + " unknown", Style::yellow) + ": " + why + "\n";
    }
    if (agrees == false) {
      details += "  the version table says, for " +
                 (fs.data_profiles.empty() ? std::string("this profile")
                                           : core::profiles_text(fs.data_profiles)) +
                 ": checksummed " + core::dio_write_name(fs.table_checksummed) + ", nocow " +
                 core::dio_write_name(fs.table_nocow) + "\n";
    }
    for (const auto& n : fs.notes) {
      details += "  note: " + core::printable(n) + "\n";
    }
  }
  if (!table.empty()) {
    out.print(table.render(out));
  }
  out.print_legend(details);
  if (!r.filesystems.empty()) {
    const auto& t = r.version_table;
    out.print_legend("\nversion table for Linux " + r.kernel_release + ": checksummed files " +
                     core::dio_write_name(t.checksummed) + " on single/raid0, " +
                     core::dio_write_name(t.checksummed_duplicated) +
                     " on profiles with copies; NODATASUM files " +
                     core::dio_write_name(t.nodatasum_single) + " on single/raid0, " +
                     core::dio_write_name(t.nodatasum_duplicated) + " on profiles with copies\n");
  }
  for (const auto& n : r.notes) {
    out.print_legend(n + "\n");
  }
}

int status_of(const core::ProbeResult& r)
{
  int status = exit_code::clean;
  for (const auto& fs : r.filesystems) {
    if (!fs.unknown.empty()) {
      status = std::max(status, exit_code::warnings);
    }
  }
  for (const auto& p : r.problems) {
    status = std::max(status, p.not_btrfs ? exit_code::warnings : exit_code::incomplete);
  }
  if (r.filesystems.empty() && r.problems.empty()) {
    status = std::max(status, exit_code::warnings); // nothing found to probe
  }
  if (r.interrupted) {
    status = exit_code::interrupted + r.interrupted;
  }
  return status;
}

nlohmann::ordered_json probe_document(const core::ProbeResult& r, int status)
{
  nlohmann::ordered_json doc;
  doc["schema"] = schema_id::probe;
  doc["kernel"] = {{"release", r.kernel_release},
                   {"version_table", core::dio_policy_json(r.version_table)}};
  doc["filesystems"] = r.filesystems;
  auto& problems = doc["problems"] = nlohmann::ordered_json::array();
  for (const auto& p : r.problems) {
    problems.push_back({{"path", core::escape_name(p.path)}, {"reason", p.reason}});
  }
  doc["notes"] = r.notes;
  document_tail(doc, status, r.interrupted != 0);
  return doc;
}

int run_probe(const ProbeCliOptions& opts, Output& out)
{
  check_columns(out, {columns});
  core::ProbeOptions po;
  po.paths = opts.paths;
  po.method = opts.method == "tracefs" ? core::ProbeMethod::tracefs
              : opts.method == "race"  ? core::ProbeMethod::race
                                       : core::ProbeMethod::automatic;
  core::ProbeResult r;
  {
    // Cleared when the scope ends, interrupted or not, before the result is printed.
    ProgressBar bar(progress_wanted(out.options().quiet));
    r = core::probe(
      po, [&bar](const core::MeasureProgress& p) { bar.update(p.path, p.phase, p.done, p.total); });
  }
  const int status = status_of(r);
  if (out.options().json) {
    out.emit_json(probe_document(r, status));
  } else {
    render_text(r, out);
  }
  for (const auto& p : r.problems) {
    if (p.not_btrfs) {
      out.warn(core::escape_name(p.path) + ": " + p.reason);
    } else {
      out.error(core::escape_name(p.path) + ": " + p.reason);
    }
  }
  report_interrupted(out, r.interrupted);
  return status;
}

} // namespace

void register_probe(CLI::App& app, Runner& runner)
{
  auto opts = std::make_shared<ProbeCliOptions>();
  CLI::App* cmd = app.add_subcommand(
    "probe", "Measure whether O_DIRECT writes are real direct IO or fall back to buffered IO");
  cmd->add_option("paths", opts->paths,
                  "Files or directories whose btrfs to probe (default: every btrfs holding VM "
                  "images)");
  cmd->add_option("--method", opts->method, "How to measure: auto, tracefs or race")
    ->check(CLI::IsMember({"auto", "tracefs", "race"}))
    ->capture_default_str();
  cmd->callback(
    [opts, &runner] { runner = [opts](Output& out) { return run_probe(*opts, out); }; });
}

} // namespace vmcsum::cli
