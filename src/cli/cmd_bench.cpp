// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum bench [PATH]: O_DIRECT write throughput and CPU, checksummed against NOCOW.
#include "app.hpp"
#include "interactive.hpp"

#include <vmcsum/measure/bench.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>

namespace vmcsum::cli {

namespace {

// One name per column (-o picks them): checksummed vs NOCOW rate and CPU, then their ratios.
const std::vector<std::string> columns = {"CASE",       "SIZE",       "CSUM-RATE",
                                          "CSUM-CPU",   "NOCOW-RATE", "NOCOW-CPU",
                                          "RATE-RATIO", "CPU-RATIO",  "SPREAD"};

std::string rate(double bytes_per_second)
{
  return core::human_bytes(static_cast<uint64_t>(bytes_per_second)) + "/s";
}

std::string cpu_text(double seconds_per_gib)
{
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fs/GiB", seconds_per_gib);
  return buf;
}

// The largest of a case's spreads as a percentage, "-" when there is none (one run).
std::string worst_spread(const core::BenchCase& c)
{
  std::optional<double> worst;
  for (const auto* v : {&c.checksummed.throughput_spread, &c.checksummed.cpu_spread,
                        &c.nocow.throughput_spread, &c.nocow.cpu_spread}) {
    if (*v && (!worst || **v > *worst)) {
      worst = **v;
    }
  }
  if (!worst) {
    return "-";
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0f%%", *worst * 100);
  return buf;
}

void render_text(const core::BenchResult& r, Output& out)
{
  Table table(columns);
  for (const auto& c : r.cases) {
    std::string spread = worst_spread(c);
    table.add({c.name, out.size(c.bytes), rate(c.checksummed.throughput),
               cpu_text(c.checksummed.cpu_per_gib), rate(c.nocow.throughput),
               cpu_text(c.nocow.cpu_per_gib),
               c.throughput_ratio ? core::format_ratio(*c.throughput_ratio) : "-",
               c.cpu_ratio ? core::format_ratio(*c.cpu_ratio) : "-",
               out.paint(spread, c.stable && !*c.stable ? Style::yellow : Style::plain)});
  }
  out.print_legend("O_DIRECT writes on " + core::escape_name(r.mount) + " (" +
                   (r.data_profiles.empty() ? std::string("?") : r.data_profiles.front()) + "), " +
                   std::to_string(r.runs) +
                   " run(s) per case; RATE-RATIO and CPU-RATIO are checksummed / NOCOW.\n");
  if (!table.empty()) {
    out.print(table.render(out));
  }
  std::string text;
  if (!r.meaning.empty()) {
    text += "\n" + out.paint(r.meaning, Style::bold) + "\n";
  }
  for (const auto& c : r.cases) {
    text += "  " + c.meaning + ".\n";
  }
  for (const auto& n : r.notes) {
    text += "note: " + core::printable(n) + "\n";
  }
  out.print_legend(text);
}

int status_of(const core::BenchResult& r)
{
  if (r.interrupted) {
    return exit_code::interrupted + r.interrupted;
  }
  return r.stable && !*r.stable ? exit_code::warnings : exit_code::clean;
}

nlohmann::ordered_json bench_document(const core::BenchResult& r, int status)
{
  nlohmann::ordered_json doc;
  doc["schema"] = schema_id::bench;
  doc["path"] = core::escape_name(r.path);
  doc["mount"] = core::escape_name(r.mount);
  doc["fsid"] = r.fsid;
  doc["data_profile"] = r.data_profiles.empty() ? nlohmann::ordered_json(nullptr)
                                                : nlohmann::ordered_json(r.data_profiles[0]);
  doc["data_profiles"] = r.data_profiles;
  // The table's cells for this filesystem's data profile.
  doc["kernel"] = {{"release", r.kernel_release},
                   {"version_table",
                    {{"checksummed", core::dio_write_name(r.table_checksummed)},
                     {"nocow", core::dio_write_name(r.table_nocow)}}}};
  doc["seconds"] = r.seconds;
  doc["runs"] = r.runs;
  doc["spread_limit"] = r.spread_limit;
  doc["file_size"] = r.file_size;
  doc["cases"] = r.cases;
  doc["stable"] = json_or_null(r.stable);
  doc["meaning"] = r.meaning;
  doc["notes"] = r.notes;
  document_tail(doc, status, r.interrupted != 0);
  return doc;
}

int run_bench(const core::BenchOptions& opts, Output& out)
{
  check_columns(out, {columns});
  core::BenchResult r;
  {
    // Cleared when the scope ends, interrupted or not, before the result is printed.
    ProgressBar bar(progress_wanted(out.options().quiet));
    r = core::bench(opts, [&bar](const core::MeasureProgress& p) {
      bar.update(p.path, p.phase, p.done, p.total);
    });
  }
  const int status = status_of(r);
  if (out.options().json) {
    out.emit_json(bench_document(r, status));
  } else {
    render_text(r, out);
  }
  if (r.stable && !*r.stable) {
    out.warn("consecutive runs differ by more than 15%: the results do not repeat");
  }
  report_interrupted(out, r.interrupted);
  return status;
}

} // namespace

void register_bench(CLI::App& app, Runner& runner)
{
  auto opts = std::make_shared<core::BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
    "bench", "Measure O_DIRECT write throughput and CPU for checksummed and NOCOW files");
  cmd->add_option("path", opts->path,
                  "File or directory on the btrfs to measure (default: the current directory)");
  cmd
    ->add_option("--seconds", opts->seconds, "Time budget of the whole benchmark, 0.01 to 86400")
    // Not CLI::Range: its message prints the bounds with %f ("0.010000 to 86400.000000").
    ->check(CLI::Validator(
      [](std::string& s) -> std::string {
        size_t used = 0;
        double v = 0;
        try {
          v = std::stod(s, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        return used == s.size() && v >= 0.01 && v <= 86400 ? "" : "must be 0.01 to 86400 (seconds)";
      },
      ""))
    ->capture_default_str();
  cmd
    ->add_option("--runs", opts->runs, "Runs of each case, to check that results repeat (1 to 100)")
    ->check(CLI::Range(1, 100).description(""))
    ->capture_default_str();
  cmd->callback(
    [opts, &runner] { runner = [opts](Output& out) { return run_bench(*opts, out); }; });
}

} // namespace vmcsum::cli
