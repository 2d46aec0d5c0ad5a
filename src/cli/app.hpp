// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include "output.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace CLI {
class App;
}
namespace vmcsum::core {
struct VmConfigDirs;
}

namespace vmcsum::cli {

// What the chosen subcommand will do once parsing is over; returns the exit status.
using Runner = std::function<int(Output&)>;

// The whole command line: global options and every subcommand. Unit tests walk it to check
// that the man page and completions mention every option.
std::unique_ptr<CLI::App> build_app(GlobalOptions& globals, Runner& runner);

// Parses argv, runs the command, maps every failure to an exit status. The only try/catch.
int run(int argc, char** argv);

// Options several commands share, bound once so their names and help agree.
// --libvirt-dir, --libvirt-run-dir, --pve-dir: where VM configurations are read (tests point
// them at fixtures).
void add_vm_config_options(CLI::App& cmd, core::VmConfigDirs& dirs);
// --proc: the proc filesystem scanned for users of the images (tests point it at a fixture).
void add_proc_option(CLI::App& cmd, std::string& proc_dir);
// --kernel-release (audit, scrub, record): one word of printable ASCII, as `uname -r` is and
// as the kernel record stores it; anything else is a usage error.
void add_kernel_release_option(CLI::App& cmd, std::optional<std::string>& release,
                               const std::string& help);

// One per command (src/cli/cmd_<name>.cpp).
void register_show(CLI::App& app, Runner& runner);
void register_audit(CLI::App& app, Runner& runner);
void register_set(CLI::App& app, Runner& runner);
void register_scrub(CLI::App& app, Runner& runner);
void register_probe(CLI::App& app, Runner& runner);
void register_bench(CLI::App& app, Runner& runner);
void register_repair(CLI::App& app, Runner& runner);
void register_record(CLI::App& app, Runner& runner);

} // namespace vmcsum::cli
