// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum repair PATH... | --undo BACKUP: make false checksum mismatches readable again.
#include "app.hpp"
#include "interactive.hpp"
#include <vmcsum/report/json.hpp>

#include <vmcsum/sys/durable_file.hpp>

#include <vmcsum/error.hpp>
#include <vmcsum/repair/repair.hpp>
#include <vmcsum/report/text.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

namespace vmcsum::cli {

namespace {

struct RepairCli
{
  std::vector<std::string> paths;
  std::string from;
  std::map<std::string, core::ReportIdentity> from_identity; // what --from says each file was
  unsigned prefer_mirror = 0;
  bool include_undetermined = false;
  bool then_nocow = false;
  std::string backup_dir = "/var/lib/vmcsum/backup";
  std::string undo;
  bool force = false;
  std::string limit_rate;
  bool no_progress = false;
  bool dry_run = false;
  std::string proc_dir = "/proc";
  core::VmConfigDirs vm_configs;
};

int entry_status(const core::RepairEntry& e)
{
  switch (core::repair_severity(e)) {
  case core::RepairSeverity::clean:
    return exit_code::clean;
  case core::RepairSeverity::warnings:
    return exit_code::warnings;
  case core::RepairSeverity::critical:
    return exit_code::critical;
  case core::RepairSeverity::incomplete:
    return exit_code::incomplete;
  }
  return exit_code::incomplete;
}

bool stopped(core::RepairAction a)
{
  return a == core::RepairAction::refused || a == core::RepairAction::failed;
}

Style action_style(core::RepairAction a)
{
  using A = core::RepairAction;
  if (a == A::repaired || a == A::restored || a == A::clean) {
    return Style::green;
  }
  return stopped(a) ? Style::red : Style::yellow;
}

const std::vector<std::string> columns = {"PATH",    "ACTION",    "BAD",   "REPAIRED",
                                          "SKIPPED", "REWRITTEN", "BACKUP"};

void render_text(const core::RepairResult& r, bool dry_run, Output& out)
{
  Table table(columns);
  std::string details;
  for (const auto& e : r.files) {
    table.add({table_path(e.acted_on, e.path),
               out.paint(core::repair_action_name(e.action), action_style(e.action)),
               std::to_string(e.bad_sectors), std::to_string(e.repaired.size()),
               std::to_string(e.skipped.size()), out.size(e.rewritten_bytes),
               e.backup ? core::escape_name(*e.backup) : "-"});
    const std::string name = core::escape_name(e.path);
    if (!e.reason.empty() && !stopped(e.action)) {
      details += "  " + name + ": " + core::printable(e.reason) + "\n";
    }
    if (dry_run || out.options().verbose > 0) {
      for (const auto& s : e.steps) {
        details += "  " + name + ": " + (dry_run ? "would " : "") + s + "\n";
      }
    }
    size_t shown = 0;
    for (const auto& s : e.skipped) {
      if (out.options().verbose == 0 && shown++ >= 10) {
        details += "  ... " + std::to_string(e.skipped.size() - 10) + " more (-v or --json)\n";
        break;
      }
      details += "  " + name + " offset " + std::to_string(s.offset) + ": left (" + s.code + ", " +
                 core::bad_class_name(s.cls) + "): " + core::printable(s.reason) + "\n";
      if (s.cls == core::BadClass::undetermined || out.options().verbose > 0) {
        for (const auto& ev : s.evidence) {
          details += "      [" + ev.code + "] " + core::printable(ev.text) + "\n";
        }
      }
    }
    size_t listed = 0;
    for (const auto& p : e.repaired) {
      // Undetermined sectors are only rewritten on request: show what the request rests on.
      if (out.options().verbose == 0 && p.cls != core::BadClass::undetermined) {
        continue;
      }
      if (out.options().verbose == 0 && listed++ >= 10) {
        details += "  ... more (-v or --json)\n";
        break;
      }
      details += "  " + name + " offset " + std::to_string(p.offset) + ": " +
                 (dry_run ? "would be " : "") + p.how +
                 (p.mirror ? " from copy " + std::to_string(*p.mirror) : std::string()) + " (" +
                 core::bad_class_name(p.cls) + ")\n";
      for (const auto& ev : p.evidence) {
        details += "      [" + ev.code + "] " + core::printable(ev.text) + "\n";
      }
    }
    for (const auto& rr : e.ranges) {
      for (const auto& s : rr.shared_with) {
        details += "  " + name + " range " + std::to_string(rr.offset) + "+" +
                   std::to_string(rr.length) + ": old extent kept by root " +
                   std::to_string(s.root) + " inode " + std::to_string(s.inode) +
                   (s.path ? " (" + core::escape_name(*s.path) + ")" : std::string()) + "\n";
      }
    }
    if (e.nocow) {
      details +=
        "  " + name + ": --then-nocow: " + e.nocow->action +
        (e.nocow->reason.empty() ? std::string() : " (" + core::printable(e.nocow->reason) + ")") +
        "\n";
    }
  }
  out.print(table.render(out));
  if (!details.empty()) {
    out.print_legend("\n" + details);
  }
}

// A scrub document: a regular file or standard input, at most 256 MiB (a document listing
// every sector of a large image as bad stays well below), never a FIFO or device by name.
std::string read_file_or_stdin(const std::string& path)
{
  constexpr size_t k_max = size_t{256} << 20;
  try {
    if (path == "-") {
      return sys::read_fd_limited(0, k_max, "standard input");
    }
    auto text = sys::read_small_file(path, k_max, true);
    if (!text) {
      throw Error(Errc::usage, "no such file", path, ENOENT);
    }
    return *text;
  } catch (const Error& e) {
    throw Error(Errc::usage, e.what());
  }
}

using Report = std::optional<std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>>>;

core::RepairResult run_engine(const RepairCli& cli, uint64_t rate, const Report& report,
                              Output& out)
{
  ProgressBar bar(!cli.no_progress && progress_wanted(out.options().quiet));
  auto progress = [&](const core::RepairProgress& p) {
    bar.update(p.path, p.phase, p.done, p.total);
  };
  if (!cli.undo.empty()) {
    core::UndoOptions uo;
    uo.backup = cli.undo;
    if (cli.prefer_mirror) {
      uo.prefer_mirror = cli.prefer_mirror;
    }
    uo.force = cli.force;
    uo.dry_run = cli.dry_run;
    uo.limit_rate = rate;
    uo.proc_dir = cli.proc_dir;
    uo.state_dir = out.options().state_dir;
    return core::undo_repair(uo, progress, sys::stop_flag());
  }
  core::RepairOptions ro;
  ro.paths = cli.paths;
  ro.from_report = report;
  ro.from_identity = cli.from_identity;
  if (cli.prefer_mirror) {
    ro.prefer_mirror = cli.prefer_mirror;
  }
  ro.include_undetermined = cli.include_undetermined;
  ro.then_nocow = cli.then_nocow;
  ro.backup_dir = cli.backup_dir;
  ro.dry_run = cli.dry_run;
  ro.limit_rate = rate;
  ro.proc_dir = cli.proc_dir;
  ro.vm_configs = cli.vm_configs;
  ro.state_dir = out.options().state_dir;
  return core::repair(ro, progress, sys::stop_flag());
}

int run_repair(const RepairCli& cli, uint64_t rate, const Report& report, Output& out)
{
  const core::RepairResult r = run_engine(cli, rate, report, out);
  int status = exit_code::clean;
  for (const auto& e : r.files) {
    status = std::max(status, entry_status(e));
  }
  // A signal that arrived during the verification still ends the command as interrupted.
  if (sys::stop_signal() != 0) {
    status = exit_code::interrupted + sys::stop_signal();
  }
  if (out.options().json) {
    nlohmann::ordered_json doc = {{"schema", schema_id::repair}};
    doc["dry_run"] = cli.dry_run;
    doc["undo"] = !cli.undo.empty();
    auto& files = doc["files"] = nlohmann::ordered_json::array();
    for (const auto& e : r.files) {
      files.push_back(e);
    }
    doc["notes"] = r.notes;
    document_tail(doc, status); // interrupted, exit_code: as every other document
    out.emit_json(std::move(doc));
  } else {
    render_text(r, cli.dry_run, out);
  }
  for (const auto& e : r.files) {
    if (stopped(e.action)) {
      out.error(core::escape_name(e.path) + ": " + e.reason);
    }
    // An entry's notes explain it; what makes it a warning is its action or code (exit 1).
    for (const auto& n : e.notes) {
      out.note(core::escape_name(e.path) + ": " + n);
    }
  }
  return status;
}

} // namespace

void register_repair(CLI::App& app, Runner& runner)
{
  auto cli = std::make_shared<RepairCli>();
  CLI::App* cmd = app.add_subcommand(
    "repair", "Make false checksum mismatches readable again, with a backup; or --undo one");
  cmd->add_option("paths", cli->paths, "Image files, or directories of images, to repair");
  cmd->add_option("--from", cli->from,
                  "Repair the bad sectors listed in a saved `vmcsum --json scrub` document "
                  "(re-verified first; - reads stdin)");
  cmd
    ->add_option(
      "--prefer-mirror", cli->prefer_mirror,
      "For sectors no copy matches, write back copy N, 1 to 4 (default: the lowest readable)")
    ->check(CLI::Range(1u, 4u).description(""));
  cmd->add_flag("--include-undetermined", cli->include_undetermined,
                "Also rewrite sectors the evidence cannot classify");
  cmd->add_flag("--then-nocow", cli->then_nocow,
                "Afterwards convert the image to NOCOW (as `set --nocow`) where the profile makes "
                "that worthwhile");
  cmd->add_option("--backup-dir", cli->backup_dir,
                  "Where backups go (default /var/lib/vmcsum/backup; best on another filesystem)");
  cmd->add_option("--undo", cli->undo, "Write the bytes saved in this backup back");
  cmd->add_flag("--force", cli->force,
                "With --undo: restore even if the file changed since the repair");
  cmd->add_option(
    "--limit-rate", cli->limit_rate,
    "Read and write at most this many bytes per second (suffix k, m or g: powers of 1024)");
  cmd->add_flag("--no-progress", cli->no_progress, "Never draw the progress bar");
  cmd->add_flag("-n,--dry-run", cli->dry_run, "Show what would be done; write nothing");
  add_vm_config_options(*cmd, cli->vm_configs);
  add_proc_option(*cmd, cli->proc_dir);
  cmd->callback([cli, &runner] {
    if (cli->undo.empty() && cli->paths.empty() && cli->from.empty()) {
      throw CLI::RequiredError("paths (or --from, or --undo BACKUP)");
    }
    if (!cli->undo.empty() && cli->undo.front() == '-') {
      // `--undo --force BACKUP`: CLI11 gave --undo the next word as its value.
      throw CLI::ValidationError("--undo", "takes the backup file right after it (got '" +
                                             cli->undo + "'): --undo BACKUP [--force]");
    }
    if (!cli->undo.empty() && (!cli->paths.empty() || !cli->from.empty())) {
      throw CLI::ValidationError("--undo", "takes the backup only: no paths and no --from");
    }
    if (cli->force && cli->undo.empty()) {
      throw CLI::ValidationError("--force", "only with --undo");
    }
    uint64_t rate = 0;
    if (!cli->limit_rate.empty()) {
      rate = parse_rate(cli->limit_rate, "--limit-rate");
    }
    Report report;
    if (!cli->from.empty()) {
      try {
        report = core::parse_scrub_report(read_file_or_stdin(cli->from), &cli->from_identity);
      } catch (const Error& e) {
        throw CLI::ValidationError("--from", e.what());
      }
    }
    runner = [cli, rate, report](Output& out) {
      check_columns(out, {columns});
      return run_repair(*cli, rate, report, out);
    };
  });
}

} // namespace vmcsum::cli
