// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum record [PATH...]: note which kernel is running at which generation of each btrfs, so
// scrub can later tell which kernel wrote an extent (vmcsum-record.service runs it at boot and
// shutdown).
#include "app.hpp"

#include <vmcsum/host/kernel_record.hpp>
#include <vmcsum/report/text.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace vmcsum::cli {

namespace {
const std::vector<std::string> columns = {"MOUNT", "FSID", "GENERATION", "ENTRIES"};

struct RecordCli
{
  std::vector<std::string> paths;
  std::string source = "run";
  std::string mountinfo = "/proc/self/mountinfo";
  std::optional<std::string> release;
};
} // namespace

void register_record(CLI::App& app, Runner& runner)
{
  auto cli = std::make_shared<RecordCli>();
  CLI::App* cmd = app.add_subcommand(
    "record", "Record the running kernel and each btrfs's generation, to date later writes");
  cmd->add_option("paths", cli->paths, "Filesystems to record (default: every mounted btrfs)");
  cmd
    ->add_option("--source", cli->source,
                 "Why the entry is made: boot, shutdown or run (the unit passes boot/shutdown)")
    ->check(CLI::IsMember({"boot", "shutdown", "run"}))
    ->capture_default_str();
  add_kernel_release_option(*cmd, cli->release, "Record this release instead of uname -r (tests)");
  cmd->callback([cli, &runner] {
    runner = [cli](Output& out) {
      check_columns(out, {columns});
      const auto r = core::record_filesystems(cli->paths, out.options().state_dir, cli->source,
                                              cli->release, cli->mountinfo);
      int status = exit_code::clean;
      for (const auto& fs : r.filesystems) {
        if (fs.error) {
          status = exit_code::incomplete;
        } else if (fs.note && status == exit_code::clean) {
          status = exit_code::warnings;
        }
      }
      status = interrupted_status(status);
      if (out.options().json) {
        nlohmann::ordered_json doc = {{"schema", schema_id::record},
                                      {"release", r.release},
                                      {"boot_id", r.boot_id},
                                      {"state_dir", out.options().state_dir}};
        auto& list = doc["filesystems"] = nlohmann::ordered_json::array();
        for (const auto& fs : r.filesystems) {
          list.push_back(
            {{"fsid", fs.fsid.empty() ? nullptr : nlohmann::ordered_json(fs.fsid)},
             {"mount_point", core::escape_name(fs.mount_point)},
             {"generation", fs.generation ? nlohmann::ordered_json(*fs.generation)
                                          : nlohmann::ordered_json(nullptr)},
             {"entries", fs.entries},
             {"note", fs.note ? nlohmann::ordered_json(*fs.note) : nlohmann::ordered_json(nullptr)},
             {"error",
              fs.error ? nlohmann::ordered_json(*fs.error) : nlohmann::ordered_json(nullptr)}});
        }
        document_tail(doc, status);
        out.emit_json(std::move(doc));
      } else {
        Table t(columns);
        for (const auto& fs : r.filesystems) {
          if (!fs.error) {
            t.add({core::escape_name(fs.mount_point), fs.fsid, std::to_string(*fs.generation),
                   std::to_string(fs.entries)});
          }
        }
        if (!t.empty()) {
          out.print(t.render(out));
        }
      }
      for (const auto& fs : r.filesystems) {
        if (fs.error) {
          out.error(core::escape_name(fs.mount_point) + ": " + *fs.error);
        } else if (fs.note) {
          out.warn(core::escape_name(fs.mount_point) + ": " + *fs.note);
        }
      }
      report_interrupted(out);
      return status;
    };
  });
}

} // namespace vmcsum::cli
