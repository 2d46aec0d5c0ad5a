// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum show PATH...: what btrfs does with each file's data (NOCOW, NODATASUM, compression,
// checksums, profile, extents, sharing).
#include "app.hpp"

#include <vmcsum/image/file_facts.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/signals.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>

namespace vmcsum::cli {

namespace {

struct ShowOptions
{
  std::vector<std::string> paths;
};

std::string yes_no(const std::optional<bool>& v, const Output& out, bool yes_is_notable)
{
  if (!v) {
    return out.paint("?", Style::dim);
  }
  if (*v) {
    return out.paint("yes", yes_is_notable ? Style::yellow : Style::plain);
  }
  return "no";
}

std::string num(const std::optional<uint64_t>& v, const Output& out)
{
  return v ? std::to_string(*v) : out.paint("?", Style::dim);
}

std::string bytes(const std::optional<uint64_t>& v, const Output& out)
{
  return v ? out.size(*v) : out.paint("?", Style::dim);
}

// A regular file or a directory: the only kinds whose btrfs facts are looked up.
bool examinable(const core::FileFacts& f)
{
  return f.kind == "file" || f.kind == "directory";
}

int status_of(const core::FileFacts& f)
{
  if (!f.examined) {
    return exit_code::incomplete;
  }
  if (!f.on_btrfs || !f.unknown.empty() || !examinable(f)) {
    return exit_code::warnings;
  }
  return exit_code::clean;
}

// DATASUM (yes: checksummed), as audit says it: one name for the same fact in every table.
const std::vector<std::string> columns = {"PATH",    "NOCOW",   "DATASUM", "COMPRESS",
                                          "CSUM",    "PROFILE", "SIZE",    "ALLOC",
                                          "EXTENTS", "SHARED",  "SUBVOL"};

void render_text(const std::vector<core::FileFacts>& files, Output& out)
{
  Table table(columns);
  std::string details;
  for (const auto& f : files) {
    std::string name = table_path(f.canonical_path, f.path);
    if (!f.examined) {
      continue;
    }
    if (!f.on_btrfs || !examinable(f)) {
      table.add({name, "-", "-", "-", "-", f.fs.empty() ? "-" : f.fs, out.size(f.size),
                 out.size(f.allocated), "-", "-", "-"});
      continue;
    }
    std::string profile = f.data_profiles.empty()       ? out.paint("?", Style::dim)
                          : f.data_profiles.size() == 1 ? f.data_profiles.front()
                                                        : "mixed";
    std::string subvol = f.subvolume_path
                           ? "/" + core::escape_name(*f.subvolume_path)
                           : (f.subvolume_id ? "id " + std::to_string(*f.subvolume_id) : "?");
    const bool regular = f.kind == "file";
    std::optional<bool> datasum;
    if (f.nodatasum) {
      datasum = !*f.nodatasum;
    }
    table.add({name, yes_no(f.nocow, out, false), yes_no(datasum, out, false),
               f.compression.value_or("?"), f.csum_type.value_or("?"), profile, out.size(f.size),
               out.size(f.allocated), regular ? num(f.extents, out) : "-",
               regular ? bytes(f.shared_bytes, out) : "-", subvol});
    if (out.options().verbose > 0) {
      details += out.paint(name, Style::bold) + "\n";
      details += "  kind: " + f.kind + ", inode " + std::to_string(f.inode) + ", links " +
                 std::to_string(f.nlink) + "\n";
      details += "  mount: " + core::escape_name(f.mount_point) + " (" + f.mount_options + ")\n";
      if (f.fsid) {
        details += "  fsid: " + *f.fsid + ", sector size " +
                   (f.sector_size ? std::to_string(*f.sector_size) : "?") + "\n";
      }
      if (f.compression_source) {
        details += "  compression from: " + *f.compression_source + "\n";
      }
      if (f.compressed_bytes && *f.compressed_bytes) {
        details += "  compressed extents: " + core::human_bytes(*f.compressed_bytes) + "\n";
      }
      if (f.unwritten_bytes && *f.unwritten_bytes) {
        details += "  preallocated, unwritten: " + core::human_bytes(*f.unwritten_bytes) + "\n";
      }
    }
  }
  if (!table.empty()) {
    out.print(table.render(out));
  }
  if (!details.empty()) {
    out.print_legend("\n" + details);
  }
}

// Errors, notes and unknown facts go to stderr whatever the output format.
void report_diagnostics(const std::vector<core::FileFacts>& files, const Output& out)
{
  std::map<std::string, std::set<std::string>> unknown_by_reason;
  for (const auto& f : files) {
    std::string name = core::escape_name(f.path);
    if (!f.examined) {
      out.error(name + ": " + f.error.value_or("cannot examine"));
      continue;
    }
    for (const auto& note : f.notes) {
      if (!f.on_btrfs || !examinable(f) || out.options().verbose > 0) {
        out.warn(name + ": " + note);
      }
    }
    for (const auto& [fact, reason] : f.unknown) {
      unknown_by_reason[reason].insert(fact);
    }
  }
  for (const auto& [reason, facts] : unknown_by_reason) {
    std::string list;
    for (const auto& fact : facts) {
      list += (list.empty() ? "" : ", ") + fact;
    }
    out.warn("unknown " + list + ": " + reason);
  }
}

} // namespace

void register_show(CLI::App& app, Runner& runner)
{
  auto opts = std::make_shared<ShowOptions>();
  CLI::App* cmd = app.add_subcommand(
    "show", "Show NOCOW, NODATASUM, compression, checksum type, profile and extents of files");
  cmd->add_option("paths", opts->paths, "Files or directories to show")->required();
  cmd->callback([opts, &runner] {
    runner = [opts](Output& out) {
      check_columns(out, {columns});
      core::FactCollector collector;
      std::vector<core::FileFacts> files;
      int status = exit_code::clean;
      for (const auto& p : opts->paths) {
        if (sys::stop_requested()) {
          break; // the safe point: between two files
        }
        files.push_back(collector.collect_named(p));
        status = std::max(status, status_of(files.back()));
      }
      status = interrupted_status(status);
      if (out.options().json) {
        nlohmann::ordered_json doc = {{"schema", schema_id::show}, {"files", files}};
        document_tail(doc, status);
        out.emit_json(std::move(doc));
      } else {
        render_text(files, out);
      }
      report_diagnostics(files, out);
      report_interrupted(out);
      return status;
    };
  });
}

} // namespace vmcsum::cli
