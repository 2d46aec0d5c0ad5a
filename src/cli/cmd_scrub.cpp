// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum scrub PATH...: every copy of every sector, false mismatches told from media faults.
#include "app.hpp"
#include "interactive.hpp"
#include "metrics.hpp"
#include <vmcsum/report/json.hpp>

#include <vmcsum/report/text.hpp>
#include <vmcsum/scrub/scrub.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string_view>

#include <unistd.h>

namespace vmcsum::cli {

namespace {

std::string mirrors_text(const std::vector<unsigned>& g)
{
  std::string out;
  for (unsigned m : g) {
    out += (out.empty() ? "m" : "+m") + std::to_string(m);
  }
  return out;
}

// Each bad sector of `f` (the first 20 unless -v), with its copies and, with -v, the evidence.
void bad_details(const core::FileScrub& f, const Output& out, std::string& details)
{
  size_t shown = 0;
  for (const auto& b : f.bad) {
    if (out.options().verbose == 0 && shown++ >= 20) {
      details += "  ... " + std::to_string(f.bad.size() - 20) + " more (-v or --json)\n";
      break;
    }
    std::string copies;
    for (const auto& c : b.copies) {
      copies += " m" + std::to_string(c.mirror) + (c.rebuilt.empty() ? "" : "(" + c.rebuilt + ")") +
                ":" +
                (c.read_error ? "read-error"
                 : c.matches  ? "ok"
                              : "bad");
    }
    details += "  " + core::escape_name(f.path) + " offset " + std::to_string(b.offset) +
               " logical " + std::to_string(b.logical) + ": " + core::bad_class_name(b.cls) +
               (b.repairable ? " (repairable)" : "") + copies +
               (b.kernel_eio == true ? " EIO" : "") +
               (b.kernel_confirmed_at_us
                  ? " (confirmed by the kernel " + core::utc_time_us(*b.kernel_confirmed_at_us) +
                      ", not read through btrfs again)"
                  : "") +
               "\n";
    if (out.options().verbose > 0) {
      for (const auto& e : b.evidence) {
        details += "      [" + e.code + "] " + core::printable(e.text) + "\n";
      }
    }
  }
}

// The ranges of a file without checksums whose copies differ (the first 20 unless -v).
void divergent_details(const core::FileScrub& f, const Output& out, std::string& details)
{
  details += "  " + core::escape_name(f.path) + ": the copies differ in " +
             std::to_string(f.divergent.size()) +
             " range(s); this file has no checksums, so nothing tells which copy is right\n";
  size_t shown = 0;
  for (const auto& d : f.divergent) {
    if (out.options().verbose == 0 && shown++ >= 20) {
      details += "  ... " + std::to_string(f.divergent.size() - 20) + " more (-v or --json)\n";
      break;
    }
    std::string groups;
    for (const auto& g : d.groups) {
      groups += (groups.empty() ? "" : " | ") + mirrors_text(g);
    }
    details += "  " + core::escape_name(f.path) + " offset " + std::to_string(d.offset) +
               " length " + std::to_string(d.length) + ": copies differ (" + groups + "), " +
               core::bad_class_name(d.cls) + "\n";
    if (out.options().verbose > 0) {
      for (const auto& e : d.evidence) {
        details += "      [" + e.code + "] " + core::printable(e.text) + "\n";
      }
    }
  }
}

std::string history_line(const core::HistoryEvent& h)
{
  const auto& e = h.event;
  std::string line = "  " + std::string(core::kind_name(e.kind)) + " " + e.device;
  if (e.root) {
    line += " root " + std::to_string(*e.root);
  }
  if (e.ino) {
    line += " ino " + std::to_string(*e.ino);
  }
  if (e.offset) {
    line += " off " + std::to_string(*e.offset);
  }
  if (e.logical) {
    line += " logical " + std::to_string(*e.logical);
  }
  if (e.mirror) {
    line += " mirror " + std::to_string(*e.mirror);
  }
  if (h.path) {
    line += " " + core::escape_name(*h.path);
  }
  if (h.count > 1) {
    line += " (" + std::to_string(h.count) + " times)";
  }
  if (h.caused_by_vmcsum) {
    line += " [caused by vmcsum's own read]";
  }
  if (h.healed) {
    line += std::string(" [since ") + (h.healed->by == "repair" ? "repaired" : "scrubbed clean") +
            ", " + core::utc_time_us(h.healed->at_us) + "]";
  }
  return line;
}

const std::vector<std::string> columns = {"PATH",  "CHECKED", "COPIES",       "BAD",
                                          "FALSE", "MEDIA",   "UNDETERMINED", "REPAIRED"};

// A NODATASUM file has no checksums, so CHECKED is 0: say so, and what was done instead.
void nodatasum_details(const core::FileScrub& f, const Output& out, std::string& details)
{
  if (f.checked_bytes != 0 || f.no_csum_bytes == 0) {
    return;
  }
  std::string text =
    "  " + table_path(f.canonical_path, f.path) + ": NODATASUM, no checksums to verify";
  if (f.compared_bytes > 0) {
    text += "; " + std::to_string(f.copies) + " copies compared instead (" +
            out.size(f.compared_bytes) + ", " +
            (f.divergent.empty() ? std::string("no range differs")
                                 : std::to_string(f.divergent.size()) + " range(s) differ") +
            ")";
  } else if (f.copies < 2) {
    text += "; one copy, nothing to compare";
  }
  details += text + "\n";
}

void render_text(const core::ScrubResult& r, Output& out)
{
  Table table(columns);
  std::string details;
  for (const auto& f : r.files) {
    if (!f.examined) {
      continue;
    }
    size_t counts[3] = {0, 0, 0};
    for (const auto& b : f.bad) {
      ++counts[static_cast<int>(b.cls)];
    }
    auto n = [&](size_t v, Style s) { return v ? out.paint(std::to_string(v), s) : "0"; };
    table.add({table_path(f.canonical_path, f.path), out.size(f.checked_bytes),
               std::to_string(f.copies), n(f.bad.size(), Style::red), n(counts[0], Style::yellow),
               n(counts[1], Style::red), n(counts[2], Style::plain),
               f.kernel_pass ? std::to_string(f.kernel_read_repairs) : "-"});
    bad_details(f, out, details);
    nodatasum_details(f, out, details);
  }
  for (const auto& f : r.files) {
    if (!f.divergent.empty()) {
      divergent_details(f, out, details);
    }
    for (const auto& m : f.parity) {
      details += "  " + core::escape_name(f.path) + ": full stripe at logical " +
                 std::to_string(m.logical) + ": " + (m.parity == "p" ? "P" : "Q") + " on " +
                 core::escape_name(m.device) + " does not match its data in " +
                 std::to_string(m.sectors) + " sector(s), " + std::to_string(m.stale_sectors) +
                 " not explained by a bad data sector (stale parity: btrfs scrub rewrites it)\n";
    }
  }
  if (!table.empty()) {
    out.print(table.render(out));
  }
  if (!details.empty()) {
    out.print_legend("\n" + details);
  }
  if (!r.history.empty()) {
    out.print_legend("\nkernel log: " + std::to_string(r.history.size()) + " checksum event(s)\n");
    for (const auto& h : r.history) {
      out.print(history_line(h) + "\n");
    }
  }
}

struct ScrubCli
{
  core::ScrubOptions opts;
  std::string limit_rate;
  bool no_kernel_pass = false;
  std::string kernel_pass = "findings";
  bool history = false;
  bool no_progress = false;
  bool no_history = false;
  std::string prometheus;
};

// An event that is an alarm: a failure nobody explains (not a repair, not vmcsum's own read)
// and not mended since (a verified repair or a clean whole-file scrub of its file after it).
bool history_alarm(const core::HistoryEvent& h)
{
  return !h.caused_by_vmcsum && !h.healed && h.event.kind != core::CsumLogEvent::Kind::dev_stats &&
         h.event.kind != core::CsumLogEvent::Kind::scrub_fixed &&
         h.event.kind != core::CsumLogEvent::Kind::read_repaired;
}

// The engine: the kernel log alone for --history, else a scrub of the paths.
core::ScrubResult run_engine(ScrubCli& cli, const Output& out)
{
  cli.opts.state_dir = out.options().state_dir;
  if (cli.history) {
    core::HistoryOptions ho;
    ho.kernel_log = cli.opts.kernel_log;
    ho.journal = cli.opts.journal;
    ho.journal_dir = cli.opts.journal_dir;
    ho.state_dir = cli.opts.state_dir;
    return core::scrub_history(cli.opts.paths, ho);
  }
  // The same stop handling as set and repair: a signal stops the scrub between reads and
  // the report says interrupted (exit 128 + the signal).
  ProgressBar bar(!cli.no_progress && progress_wanted(out.options().quiet));
  sys::Cancel cancel;
  cancel.flag = &sys::stop_flag();
  return core::scrub(
    cli.opts,
    [&bar](uint64_t d, uint64_t t, const std::string& p, const char* phase) {
      bar.update(p, phase, d, t);
    },
    cancel);
}

// Before --prometheus: incomplete for a file not scrubbed, else each file's severity (the
// document's): critical for any mismatch, EIO or unexplained logged failure, warnings for stale
// RAID5/6 parity and for the run's notes; 128 + the signal when interrupted.
int exit_status(const ScrubCli& cli, const core::ScrubResult& r)
{
  int status = exit_code::clean;
  for (const auto& f : r.files) {
    const std::string_view severity = core::scrub_severity(f);
    if (!f.examined) {
      status = std::max(status, exit_code::incomplete);
    } else if (severity == "critical") {
      status = std::max(status, exit_code::critical);
    } else if (severity == "warning") {
      status = std::max(status, exit_code::warnings);
    }
  }
  // The run's own notes are warnings on stderr (a state directory that cannot be used, a
  // kernel log not read, a path below a directory not walked): exit 1 says so, as elsewhere.
  if (!r.notes.empty()) {
    status = std::max(status, exit_code::warnings);
  }
  if (r.interrupted && sys::stop_signal() != 0) {
    status = exit_code::interrupted + sys::stop_signal();
  }
  if (cli.history && !r.history.empty()) {
    for (const auto& h : r.history) {
      if (history_alarm(h)) {
        status = std::max(status, exit_code::critical);
      }
    }
  }
  return status;
}

nlohmann::ordered_json scrub_document(const core::ScrubResult& r, int status)
{
  nlohmann::ordered_json doc = {{"schema", schema_id::scrub}};
  auto& files = doc["files"] = nlohmann::ordered_json::array();
  std::map<std::string, size_t> by_severity{{"critical", 0}, {"warning", 0}, {"info", 0}};
  size_t bad = 0, examined = 0;
  for (const auto& f : r.files) {
    files.push_back(f);
    ++by_severity[core::scrub_severity(f)];
    bad += f.bad.size();
    examined += f.examined ? 1 : 0;
  }
  doc["summary"] = {{"files", r.files.size()},
                    {"examined", examined},
                    {"critical", by_severity["critical"]},
                    {"warning", by_severity["warning"]},
                    {"info", by_severity["info"]},
                    {"bad_sectors", bad}};
  auto& hist = doc["history"] = nlohmann::ordered_json::array();
  for (const auto& h : r.history) {
    hist.push_back(h);
  }
  doc["notes"] = r.notes;
  document_tail(doc, status, r.interrupted);
  return doc;
}

// Why a file was not scrubbed, without the path the message may already start with (it is
// printed once, before it), and as "needs root (CAP_SYS_ADMIN) for ..." when the kernel
// refused a btrfs ioctl with EPERM: the checksum and chunk trees are root's to read.
std::string error_text(const core::FileScrub& f)
{
  std::string msg = f.error.value_or("cannot scrub");
  while (msg.rfind(f.path + ": ", 0) == 0) {
    msg.erase(0, f.path.size() + 2);
  }
  const size_t ioc = msg.find("BTRFS_IOC_");
  if (ioc != std::string::npos && msg.find(std::strerror(EPERM)) != std::string::npos) {
    const std::string name = msg.substr(ioc, msg.find_first_of(": ", ioc) - ioc);
    return "needs root (CAP_SYS_ADMIN) for " + name +
           " (reading the checksum and chunk trees); run it as root";
  }
  return core::escape_name(msg);
}

// What went wrong or deserves a word, on stderr after the report.
void report_problems(const core::ScrubResult& r, Output& out)
{
  for (const auto& f : r.files) {
    if (!f.examined) {
      out.error(core::escape_name(f.path) + ": " + error_text(f));
    }
    for (const auto& n : f.notes) {
      out.warn(core::escape_name(f.path) + ": " + n);
    }
    for (uint64_t off : f.kernel_only_eio) {
      out.warn(core::escape_name(f.path) + ": the kernel returned EIO at offset " +
               std::to_string(off) + " where every copy matched");
    }
    // What the exit status counts and the table has no column for (-o, --no-headings).
    if (!f.divergent.empty()) {
      out.warn(core::escape_name(f.path) + ": " + std::to_string(f.divergent.size()) +
               " range(s) where the copies differ and no checksum says which is right");
    }
    const auto stale = std::count_if(f.parity.begin(), f.parity.end(),
                                     [](const auto& m) { return m.stale_sectors > 0; });
    if (stale > 0) {
      out.warn(core::escape_name(f.path) + ": stale parity in " + std::to_string(stale) +
               " parity unit(s), no data lost (btrfs scrub rewrites it)");
    }
  }
  for (const auto& n : r.notes) {
    out.warn(n);
  }
  if (r.interrupted) {
    out.error(
      "interrupted" +
      (sys::stop_signal() ? " by signal " + std::to_string(sys::stop_signal()) : std::string()) +
      ": the files after the one being scrubbed were not scrubbed");
  }
}

int run_scrub(ScrubCli& cli, Output& out)
{
  const double started = epoch_seconds_now();
  core::ScrubResult r = run_engine(cli, out);
  int status = exit_status(cli, r);
  std::optional<std::string> failed;
  status = export_metrics(
    out, cli.prometheus, status, [&](const RunFacts& run) { return scrub_metrics(r, run); },
    {"scrub", started}, failed);
  if (failed && out.options().json) { // the text run said it on stderr already
    r.notes.push_back(*failed);
  }
  if (out.options().json) {
    out.emit_json(scrub_document(r, status));
  } else {
    render_text(r, out);
  }
  report_problems(r, out);
  return status;
}

} // namespace

void register_scrub(CLI::App& app, Runner& runner)
{
  auto cli = std::make_shared<ScrubCli>();
  CLI::App* cmd = app.add_subcommand(
    "scrub",
    "Verify every copy of every sector of images; tell false mismatches from media faults");
  cmd->add_option("paths", cli->opts.paths, "Image files or directories of images");
  cmd->add_option("--limit-rate", cli->limit_rate,
                  "Read at most this many bytes per second (suffix k, m or g: powers of 1024)");
  cmd
    ->add_option("--kernel-pass", cli->kernel_pass,
                 "Read through the filesystem: the findings, the full files, or none")
    ->check(CLI::IsMember({"findings", "full", "none"}))
    ->capture_default_str();
  cmd->add_flag("--no-kernel-pass", cli->no_kernel_pass, "Same as --kernel-pass=none");
  cmd->add_flag("--history", cli->history,
                "Only report checksum failures from the kernel log (this and earlier boots)");
  cmd->add_flag("--no-progress", cli->no_progress, "Never draw the progress bar");
  cmd->add_flag("--reconfirm", cli->opts.reconfirm,
                "Read bad sectors without a good copy through btrfs again even when an earlier "
                "scrub confirmed them (adds corruption errors to the device stats)");
  cmd->add_flag("--no-history", cli->no_history, "Do not read the kernel log");
  cmd
    ->add_option("--kernel-log", cli->opts.kernel_log,
                 "Kernel log of this boot: /dev/kmsg or a text file of log lines ('' to skip)")
    ->capture_default_str();
  cmd->add_option("--journal-dir", cli->opts.journal_dir,
                  "Read earlier boots from this journal directory or file (default: the system "
                  "journal)");
  add_vm_config_options(*cmd, cli->opts.vm_configs);
  add_kernel_release_option(
    *cmd, cli->opts.kernel_release,
    "Record this run in the kernel record as this release (default: uname -r; "
    "tests)");
  cmd
    ->add_option("--prometheus", cli->prometheus,
                 "Also write node_exporter textfile metrics to this file (atomically)")
    ->type_name("FILE");
  cmd->callback([cli, cmd, &runner] {
    if (!cli->history && cli->opts.paths.empty()) {
      throw CLI::RequiredError("paths (or --history)");
    }
    if (!cli->limit_rate.empty()) {
      cli->opts.limit_rate = parse_rate(cli->limit_rate, "--limit-rate");
    }
    (void)cmd;
    cli->opts.kernel_pass_mode = cli->no_kernel_pass
                                   ? core::KernelPassMode::none
                                   : core::parse_kernel_pass_mode(cli->kernel_pass).value();
    if (cli->no_history) {
      cli->opts.kernel_log.clear();
      cli->opts.journal = false;
    }
    runner = [cli](Output& out) {
      check_columns(out, {columns});
      return run_scrub(*cli, out);
    };
  });
}

} // namespace vmcsum::cli
