// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "app.hpp"

#include <vmcsum/error.hpp>
#include <vmcsum/sys/signals.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <iostream>

namespace vmcsum::cli {

std::unique_ptr<CLI::App> build_app(GlobalOptions& globals, Runner& runner)
{
  auto app = std::make_unique<CLI::App>(
    "Audit, scrub and repair virtual-machine images on btrfs: find images at risk of false "
    "checksum mismatches from O_DIRECT writes, and show or set NOCOW/NODATASUM.",
    "vmcsum");
  app->set_version_flag("--version", std::string("vmcsum ") + VMCSUM_VERSION);
  app->require_subcommand(1, 1);
  // Global options are accepted before or after the subcommand.
  app->fallthrough();
  app
    ->add_flag("--json{pretty}", globals.json_style,
               "Print one JSON document on stdout: pretty (the default) or short (one line)")
    ->type_name("STYLE");
  app->add_option("--color", globals.color, "Colour the output: auto, always or never")
    ->check(CLI::IsMember({"auto", "always", "never"}))
    ->capture_default_str();
  app->add_flag("-v,--verbose", globals.verbose, "Say more (repeatable)");
  app->add_flag("-q,--quiet", globals.quiet, "Print no warnings on stderr");
  app
    ->add_option("--state-dir", globals.state_dir,
                 "Where vmcsum keeps its records (default $VMCSUM_STATE_DIR, else /var/lib/vmcsum)")
    ->type_name("DIR");
  app
    ->add_option("-o,--output", globals.columns,
                 "Table columns to print, in this order (e.g. path,size; the headings name them)")
    ->type_name("COLUMNS");
  app->add_flag("--no-headings", globals.no_headings, "Print tables without their heading row");
  app->add_flag("--bytes", globals.raw_bytes, "Print sizes in tables as byte counts");
  app->footer("Exit status: 0 nothing to report, 1 warnings, 2 critical findings, 3 could not "
              "complete for some path, 64 usage error.\nSee vmcsum(8).");

  register_show(*app, runner);
  register_audit(*app, runner);
  register_set(*app, runner);
  register_scrub(*app, runner);
  register_repair(*app, runner);
  register_probe(*app, runner);
  register_bench(*app, runner);
  register_record(*app, runner);
  // Each command's help points at its own page (man vmcsum-scrub, or man vmcsum scrub).
  for (CLI::App* sub : app->get_subcommands({})) {
    sub->footer("Exit status: 0 nothing to report, 1 warnings, 2 critical findings, 3 could not "
                "complete for some path, 64 usage error.\nSee vmcsum-" +
                sub->get_name() + "(8).");
  }
  return app;
}

namespace {
// Before parsing succeeded: whether (and how) an error must be a JSON document too. "" when
// not, else the style.
std::string wants_json(int argc, char** argv)
{
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      return "pretty";
    }
    if (std::strncmp(argv[i], "--json=", 7) == 0) {
      return argv[i] + 7;
    }
    if (std::strcmp(argv[i], "--") == 0) {
      break;
    }
  }
  return "";
}

int report_failure(const std::string& json_style, const char* kind, const std::string& message,
                   int status)
{
  if (!json_style.empty()) {
    nlohmann::ordered_json doc = {{"schema", "vmcsum.error/1"},
                                  {"error", {{"kind", kind}, {"message", message}}},
                                  {"exit_code", status}};
    std::cout << dump_document(with_document_head(doc), json_style == "short") << '\n';
  }
  std::cerr << "vmcsum: " << (status == exit_code::usage ? "usage error" : "error") << ": "
            << message << '\n';
  return status;
}
} // namespace

int run(int argc, char** argv)
{
  GlobalOptions globals;
  Runner runner;
  std::unique_ptr<CLI::App> app;
  const std::string json = wants_json(argc, argv);
  try {
    app = build_app(globals, runner);
    // Not CLI11_PARSE: its exit codes (100-127) are not ours.
    app->parse(argc, argv);
    if (!globals.json_style.empty() && globals.json_style != "pretty" &&
        globals.json_style != "short") {
      throw CLI::ValidationError("--json", "is pretty or short, not '" + globals.json_style + "'");
    }
    globals.json = !globals.json_style.empty();
    if (globals.quiet && globals.verbose > 0) {
      throw CLI::ValidationError("-q/--quiet and -v/--verbose contradict each other");
    }
  } catch (const CLI::Success& e) {
    return app->exit(e); // --help, --version
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (app && msg.find("--help") == std::string::npos) {
      msg += "; run 'vmcsum --help'";
    }
    return report_failure(json, "usage", msg, exit_code::usage);
  }
  if (globals.state_dir.empty()) {
    const char* env = std::getenv("VMCSUM_STATE_DIR");
    globals.state_dir = env && *env ? env : "/var/lib/vmcsum";
  }
  try {
    Output out(globals);
    // One interruption contract for every command (sys/signals.hpp): from here on the first
    // SIGINT/SIGTERM/SIGHUP only asks the command to stop at its next safe point.
    sys::StopSignals stop_signals;
    return runner ? runner(out) : exit_code::usage;
  } catch (const UsageError& e) {
    return report_failure(globals.json_style, "usage", e.what(), exit_code::usage);
  } catch (const Error& e) {
    return report_failure(globals.json_style, "error", e.what(), exit_code::incomplete);
  } catch (const std::exception& e) {
    return report_failure(globals.json_style, "internal", e.what(), exit_code::incomplete);
  }
}

} // namespace vmcsum::cli
