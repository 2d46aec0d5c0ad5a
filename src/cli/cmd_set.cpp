// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum set --nocow|--cow PATH...: make the attribute real, existing data included (a verified
// rewrite for non-empty files), or say why not.
#include "app.hpp"
#include "interactive.hpp"
#include <vmcsum/report/json.hpp>

#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/set/rewrite.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>

#include <unistd.h>

namespace vmcsum::cli {

namespace {

struct SetCliOptions
{
  bool nocow = false;
  bool cow = false;
  bool recursive = false;
  bool dry_run = false;
  std::string proc_dir = "/proc";
  std::vector<std::string> paths;
};

bool is_failure(const core::SetEntry& e)
{
  return core::is_stop(e.action) || (e.action == core::Outcome::skipped && e.code == "interrupted");
}

std::string state_text(const std::optional<core::SetState>& s)
{
  return s ? s->state : "-";
}

const std::vector<std::string> columns = {"PATH", "ACTION", "BEFORE", "AFTER", "COPIED", "TIME"};

// What makes two dry-run plans the same: their action, kind and steps with the file's name and
// every number (its size) left out.
std::string plan_shape(const core::SetEntry& e)
{
  std::string shape = std::string(core::outcome_name(e.action)) + "/" + e.kind;
  const std::string name = core::escape_name(e.acted_on);
  for (std::string step : e.steps) {
    for (size_t at; !name.empty() && (at = step.find(name)) != std::string::npos;) {
      step.erase(at, name.size());
    }
    std::erase_if(step, [](char c) { return c >= '0' && c <= '9'; });
    shape += "\n" + step;
  }
  return shape;
}

void render_text(const core::SetResult& r, const SetCliOptions& o, const Output& out)
{
  const std::string want = o.nocow ? "nocow" : "cow";
  if (o.dry_run) {
    std::string text = out.paint("dry run", Style::bold) + ": nothing is changed; vmcsum set --" +
                       want + " would:\n";
    // Each plan once: the same seven lines for each of a directory's fifty images bury the list
    // of what would change. Plans are the same when their steps are, but for the file's name
    // and numbers (its size); -v lists them all.
    const bool every_plan = out.options().verbose > 0;
    std::map<std::string, std::string> listed; // plan_shape() -> the path listed with it
    for (const auto& e : r.files) {
      std::string name = core::escape_name(e.path);
      if (e.action == core::Outcome::refused) {
        text += name + ": " + out.paint("refuse", Style::red) + " (" + e.code +
                "): " + core::printable(e.reason) + "\n";
        continue;
      }
      if (e.action == core::Outcome::unchanged) {
        text += name + ": leave it unchanged (already " + state_text(e.before) + ")\n";
      } else if (e.action == core::Outcome::skipped) {
        text += name + ": skip it (" + core::printable(e.reason) + ")\n";
      } else {
        text += name + ": " +
                (e.action == core::Outcome::rewritten ? "rewrite it" : "set the attribute") + " (" +
                state_text(e.before) + " -> " + want + ")\n";
        const auto [first, fresh] = listed.try_emplace(plan_shape(e), name);
        if (every_plan || fresh) {
          int n = 0;
          for (const auto& s : e.steps) {
            text += "  " + std::to_string(++n) + ". " + s + "\n";
          }
        } else {
          text += "  (the same steps as for " + first->second + "; -v lists them here)\n";
        }
      }
      for (const auto& note : e.notes) {
        text += "  note: " + core::printable(note) + "\n";
      }
    }
    for (const auto& l : r.leftovers) {
      text += "remove leftover temp file " + core::escape_name(l.path) + "\n";
    }
    out.print(text);
    return;
  }
  Table table(columns);
  std::string notes;
  for (const auto& e : r.files) {
    Style st = is_failure(e)                          ? Style::red
               : e.action == core::Outcome::unchanged ? Style::plain
               : e.action == core::Outcome::skipped   ? Style::dim
                                                      : Style::green;
    char secs[32] = "-";
    if (e.seconds.total > 0) {
      std::snprintf(secs, sizeof secs, "%.1fs", e.seconds.total);
    }
    table.add({table_path(e.acted_on, e.path),
               out.paint(std::string(core::outcome_name(e.action)), st), state_text(e.before),
               state_text(e.after), e.bytes_copied ? out.size(e.bytes_copied) : "-", secs});
    for (const auto& n : e.notes) {
      notes += "note: " + core::escape_name(e.path) + ": " + core::printable(n) + "\n";
    }
  }
  if (!table.empty()) {
    out.print(table.render(out));
  }
  if (!notes.empty()) {
    out.print_legend(notes);
  }
}

int run_set(const SetCliOptions& o, Output& out)
{
  core::SetOptions opts;
  opts.paths = o.paths;
  opts.target = o.nocow ? core::CowTarget::nocow : core::CowTarget::cow;
  opts.recursive = o.recursive;
  opts.dry_run = o.dry_run;
  opts.proc_dir = o.proc_dir;

  core::SetResult r;
  {
    ProgressBar bar(progress_wanted(out.options().quiet));
    r = core::set_cow_attribute(
      opts, [&](const core::SetProgress& p) { bar.update(p.path, p.phase, p.done, p.total); },
      sys::stop_flag());
  }

  int status = exit_code::clean;
  if (!r.leftovers.empty()) {
    status = exit_code::warnings;
  }
  for (const auto& e : r.files) {
    if (is_failure(e)) {
      status = exit_code::incomplete;
    } else if ((e.code == "too-deep" || e.code == "not-walked") && status == exit_code::clean) {
      status = exit_code::warnings; // a -r walk did not reach everything
    }
  }
  if (r.interrupted && sys::stop_signal() != 0) {
    status = exit_code::interrupted + sys::stop_signal();
  }

  if (out.options().json) {
    nlohmann::ordered_json doc;
    doc["schema"] = schema_id::set;
    doc["requested"] = o.nocow ? "nocow" : "cow";
    doc["dry_run"] = o.dry_run;
    doc["recursive"] = o.recursive;
    auto& files = doc["files"] = nlohmann::ordered_json::array();
    for (const auto& e : r.files) {
      files.push_back(e);
    }
    auto& left = doc["leftovers"] = nlohmann::ordered_json::array();
    for (const auto& l : r.leftovers) {
      left.push_back({{"path", core::escape_name(l.path)},
                      {"removed", l.removed},
                      {"error", core::string_or_null(l.error)}});
    }
    document_tail(doc, status, r.interrupted);
    out.emit_json(std::move(doc));
  } else {
    render_text(r, o, out);
  }

  for (const auto& l : r.leftovers) {
    if (l.removed) {
      out.warn("removed " + core::escape_name(l.path) + ", the temp file of an interrupted run");
    } else {
      out.warn("leftover temp file " + core::escape_name(l.path) + ": " + l.error);
    }
  }
  for (const auto& e : r.files) {
    if (is_failure(e) && !(o.dry_run && !out.options().json)) {
      out.error(core::escape_name(e.path) + ": " + std::string(core::outcome_name(e.action)) +
                " (" + e.code + "): " + e.reason);
    }
  }
  if (r.interrupted) {
    out.error(
      "interrupted" +
      (sys::stop_signal() ? " by signal " + std::to_string(sys::stop_signal()) : std::string()) +
      ": the file being rewritten was left as it was");
  }
  return status;
}

} // namespace

void register_set(CLI::App& app, Runner& runner)
{
  auto opts = std::make_shared<SetCliOptions>();
  CLI::App* cmd = app.add_subcommand(
    "set", "Make files NOCOW or checksummed (COW) for real, existing data included: a verified "
           "rewrite when needed");
  auto* nocow = cmd->add_flag("--nocow", opts->nocow,
                              "NOCOW: no copy-on-write, no data checksums (chattr +C, done right)");
  auto* cow =
    cmd->add_flag("--cow", opts->cow, "Copy-on-write with data checksums (the btrfs default)");
  nocow->excludes(cow);
  cmd->add_flag("-r,--recursive", opts->recursive,
                "Also convert everything inside directories (symlinks are never followed)");
  cmd->add_flag("-n,--dry-run", opts->dry_run, "Print the plan and change nothing");
  add_proc_option(*cmd, opts->proc_dir);
  cmd->add_option("paths", opts->paths, "Files or directories")->required();
  cmd->callback([opts, &runner] {
    if (opts->nocow == opts->cow) {
      throw CLI::RequiredError("exactly one of --nocow and --cow");
    }
    runner = [opts](Output& out) {
      check_columns(out, {columns});
      return run_set(*opts, out);
    };
  });
}

} // namespace vmcsum::cli
