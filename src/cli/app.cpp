// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "app.hpp"

#include <vmcsum/error.hpp>
#include <vmcsum/host/kernel_record.hpp>
#include <vmcsum/host/vm_config.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/signals.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string_view>

#include <sys/stat.h>

namespace vmcsum::cli {

void add_vm_config_options(CLI::App& cmd, core::VmConfigDirs& dirs)
{
  cmd
    .add_option("--libvirt-dir", dirs.libvirt_dir,
                "libvirt configuration directory (cache modes as evidence)")
    ->capture_default_str();
  cmd.add_option("--libvirt-run-dir", dirs.libvirt_run_dir, "libvirt runtime directory")
    ->capture_default_str();
  cmd.add_option("--pve-dir", dirs.pve_dir, "Proxmox configuration directory")
    ->capture_default_str();
}

void add_proc_option(CLI::App& cmd, std::string& proc_dir)
{
  cmd.add_option("--proc", proc_dir, "proc filesystem to scan for users of the images")
    ->capture_default_str();
}

void add_kernel_release_option(CLI::App& cmd, std::optional<std::string>& release,
                               const std::string& help)
{
  cmd.add_option("--kernel-release", release, help)
    ->check(CLI::Validator(
      [](std::string& s) {
        return core::record_word_ok(s)
                 ? std::string()
                 : "not a kernel release (one word of printable ASCII): " + core::escape_name(s);
      },
      ""));
}

namespace {
// Placeholders that say what a value is (CLI11 says TEXT, UINT, FLOAT): by the option's name,
// so a new option gets one without thinking about it; positionals are paths.
void name_placeholders(CLI::App& app)
{
  static const std::vector<std::pair<std::string, std::string>> by_name = {
    {"limit-rate", "RATE"}, {"kernel-log", "FILE"},
    {"from", "FILE"},       {"undo", "FILE"},
    {"journal-dir", "DIR"}, {"backup-dir", "DIR"},
    {"libvirt-dir", "DIR"}, {"libvirt-run-dir", "DIR"},
    {"pve-dir", "DIR"},     {"proc", "DIR"},
    {"state-dir", "DIR"},   {"kernel-release", "RELEASE"},
    {"prefer-mirror", "N"}, {"runs", "N"},
    {"seconds", "SECONDS"}, {"kernel-pass", "MODE"},
    {"method", "METHOD"},   {"source", "WHEN"},
    {"color", "WHEN"},      {"output", "COLUMNS"}};
  for (CLI::Option* o : app.get_options()) {
    if (o->get_type_size() == 0) {
      continue; // a flag
    }
    if (o->get_lnames().empty() && o->get_snames().empty()) {
      o->type_name("PATH");
      continue;
    }
    for (const auto& [name, placeholder] : by_name) {
      if (!o->get_lnames().empty() && o->get_lnames().front() == name) {
        o->type_name(placeholder);
      }
    }
  }
}

// The global options as a help section for every command's --help.
std::string global_options_help(const CLI::App& app)
{
  std::string text = "Global options (before or after the command):\n";
  for (const CLI::Option* o : app.get_options()) {
    const std::string lname = o->get_lnames().empty() ? "" : o->get_lnames().front();
    if (lname.empty() || lname == "help" || lname == "version") {
      continue; // --help and --version are the command's own or the program's
    }
    std::string name = o->get_snames().empty() ? "" : "-" + o->get_snames().front() + ",";
    name += "--" + lname;
    if (lname == "json") {
      name += "[=STYLE]"; // an optional value: CLI11 would print --json{pretty}
    } else if (o->get_type_size() != 0) {
      name += " " + o->get_type_name();
    }
    // The columns CLI11 uses for the command's own options: names from 2, help from 30.
    name = name.size() < 28 ? name + std::string(28 - name.size(), ' ')
                            : name + "\n" + std::string(30, ' ');
    text += "  " + name + o->get_description() + "\n";
  }
  return text;
}

// The program's own --help as global_options_help() writes --json: CLI11 would print its
// default flag value and the placeholder ("--json{pretty} STYLE"), a spelling that is refused.
class HelpFormatter : public CLI::Formatter
{
public:
  std::string make_option_name(const CLI::Option* o, bool positional) const override
  {
    return is_json(o) ? "--json[=STYLE]" : CLI::Formatter::make_option_name(o, positional);
  }
  std::string make_option_opts(const CLI::Option* o) const override
  {
    return is_json(o) ? "" : CLI::Formatter::make_option_opts(o);
  }

private:
  static bool is_json(const CLI::Option* o)
  {
    return !o->get_lnames().empty() && o->get_lnames().front() == "json";
  }
};
} // namespace

std::unique_ptr<CLI::App> build_app(GlobalOptions& globals, Runner& runner)
{
  auto app = std::make_unique<CLI::App>(
    "Audit, scrub and repair virtual-machine images on btrfs: find images at risk of false "
    "checksum mismatches from O_DIRECT writes, and show or set NOCOW/NODATASUM.",
    "vmcsum");
  app->formatter(std::make_shared<HelpFormatter>());
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
  app->add_flag("--no-headings", globals.no_headings,
                "Print only the table rows: no heading row, caption, details or summary");
  app->add_flag("--bytes", globals.raw_bytes, "Print sizes in tables as byte counts");
  // One text for the program's help and every command's.
  const std::string exit_help =
    "Exit status: 0 nothing to report, 1 warnings, 2 critical findings, 3 could not complete "
    "for some path (outranks 2), 64 usage error, 130/143/129 interrupted by SIGINT/SIGTERM/"
    "SIGHUP.";
  app->footer(exit_help + "\nSee vmcsum(8).");

  register_show(*app, runner);
  register_audit(*app, runner);
  register_set(*app, runner);
  register_scrub(*app, runner);
  register_repair(*app, runner);
  register_probe(*app, runner);
  register_bench(*app, runner);
  register_record(*app, runner);
  name_placeholders(*app);
  // Each command's help lists the global options too (they are accepted after the command)
  // and points at its own page (man vmcsum-scrub, or man vmcsum scrub).
  const std::string globals_help = global_options_help(*app);
  for (CLI::App* sub : app->get_subcommands({})) {
    name_placeholders(*sub);
    sub->footer(globals_help + "\n" + exit_help + "\nSee vmcsum-" + sub->get_name() + "(8).");
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

// Levenshtein distance, for "did you mean".
size_t edit_distance(const std::string& a, const std::string& b)
{
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The first word that is not an option (nor an option's value) when it names no command:
// "unknown command 'shwo'; did you mean 'show'?" rather than CLI11's "A subcommand is
// required". Empty when the command is known or absent.
std::string unknown_command(const CLI::App& app, int argc, char** argv)
{
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      return "";
    }
    if (arg.rfind("-", 0) == 0) {
      // A global option taking a separate value: skip the value too.
      const CLI::Option* o = nullptr;
      try {
        o = app.get_option(arg.rfind("--", 0) == 0 ? arg : arg.substr(0, 2));
      } catch (const CLI::OptionNotFound&) {
      }
      const bool separate = arg.find('=') == std::string::npos &&
                            (arg.rfind("--", 0) == 0 || arg.size() == 2); // not -ofoo
      if (o && o->get_type_size() != 0 && o->get_expected_min() > 0 && separate) {
        ++i;
      }
      continue;
    }
    std::string best;
    size_t best_d = 3; // more than two edits away is no typo
    for (const CLI::App* sub : app.get_subcommands({})) {
      if (sub->get_name() == arg) {
        return "";
      }
      const size_t d = edit_distance(arg, sub->get_name());
      if (d < best_d || (d <= 2 && sub->get_name().rfind(arg, 0) == 0)) {
        best_d = d;
        best = sub->get_name();
      }
    }
    // "--json short": the style is an optional value, so it is only taken after '='.
    if (i > 1 && std::string_view(argv[i - 1]) == "--json" && (arg == "pretty" || arg == "short")) {
      return "unknown command '" + arg + "': --json takes its style after '=' (--json=" + arg + ")";
    }
    return "unknown command '" + core::escape_name(arg) + "'" +
           (best.empty() ? "; run 'vmcsum --help' for the commands"
                         : "; did you mean '" + best + "'?");
  }
  return "";
}

// Why a state directory (--state-dir, VMCSUM_STATE_DIR) is refused, or "". vmcsum creates it,
// but never its parents, and only at an absolute path: a mistyped or relative one would
// silently start a fresh state (no confirmations, no kernel record) somewhere unexpected.
std::string state_dir_refused(const std::string& dir)
{
  if (dir.front() != '/') {
    return "the state directory must be an absolute path, not '" + core::escape_name(dir) +
           "' (--state-dir, VMCSUM_STATE_DIR)";
  }
  struct stat st = {};
  if (::stat(dir.c_str(), &st) == 0) {
    return ""; // what else is wrong with it is said where it is used (ensure_private_dir)
  }
  const int err = errno;
  std::string trimmed = dir; // "/var/lib/vmcsum/": its parent is /var/lib
  while (trimmed.size() > 1 && trimmed.back() == '/') {
    trimmed.pop_back();
  }
  const std::string parent = sys::parent_dir(trimmed);
  if (err == ENOENT && ::stat(parent.c_str(), &st) < 0 && errno == ENOENT) {
    return "the state directory's parent " + core::escape_name(parent) +
           " does not exist: vmcsum creates the state directory, not its parents "
           "(--state-dir, VMCSUM_STATE_DIR)";
  }
  return ""; // creatable, or a reason ensure_private_dir() reports when it is needed
}

// Output that did not reach stdout (a full disk, a pipe closed with SIGPIPE ignored) must not
// end in success: `vmcsum --json audit >report.json` would leave a cut file behind exit 0. The
// document's own exit_code cannot say it; stderr and the status do.
int stdout_checked(int status)
{
  errno = 0;
  std::cout.flush();
  if (std::cout.good() && std::fflush(stdout) == 0 && !std::ferror(stdout)) {
    return status;
  }
  const int err = stdout_error() != 0 ? stdout_error() : errno;
  std::cerr << "vmcsum: error: writing to standard output failed"
            << (err != 0 ? ": " + errno_text(err) : std::string()) << '\n';
  return status < exit_code::incomplete ? exit_code::incomplete : status; // 64, 128+ stay
}

int report_failure(const std::string& json_style, const char* kind, const std::string& message,
                   int status)
{
  // After a document cut short, stdout holds half a document: the error is said on stderr only.
  const bool cut = document_cut_short(std::cout);
  if (!json_style.empty() && !cut) {
    nlohmann::ordered_json doc = {{"schema", schema_id::error},
                                  {"error", {{"kind", kind}, {"message", message}}},
                                  {"exit_code", status}};
    std::cout << dump_document(with_document_head(std::move(doc)), json_style == "short") << '\n';
  }
  std::cerr << "vmcsum: " << (status == exit_code::usage ? "usage error" : "error") << ": "
            << core::printable(message)
            << (cut ? " (the JSON document on stdout is cut short)" : "") << '\n';
  return stdout_checked(status);
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
    if (const std::string unknown = unknown_command(*app, argc, argv); !unknown.empty()) {
      return report_failure(json, "usage", unknown, exit_code::usage);
    }
    // Not CLI11_PARSE: its exit codes (100-127) are not ours.
    app->parse(argc, argv);
    if (!globals.json_style.empty() && globals.json_style != "pretty" &&
        globals.json_style != "short") {
      throw CLI::ValidationError("--json",
                                 "takes pretty or short, not '" + globals.json_style + "'");
    }
    globals.json = !globals.json_style.empty();
    if (globals.quiet && globals.verbose > 0) {
      throw CLI::ValidationError("-q/--quiet and -v/--verbose contradict each other");
    }
  } catch (const CLI::CallForVersion& e) {
    if (json.empty()) {
      return stdout_checked(app->exit(e));
    }
    if (json != "pretty" && json != "short") {
      return report_failure("pretty", "usage", "--json takes pretty or short, not '" + json + "'",
                            exit_code::usage);
    }
    // A script asking with --json gets JSON: the version, and the schema of each document this
    // binary writes (what a fleet checks before it parses them).
    nlohmann::ordered_json docs = {{"audit", schema_id::audit},   {"bench", schema_id::bench},
                                   {"probe", schema_id::probe},   {"record", schema_id::record},
                                   {"repair", schema_id::repair}, {"scrub", schema_id::scrub},
                                   {"set", schema_id::set},       {"show", schema_id::show},
                                   {"error", schema_id::error},   {"version", schema_id::version}};
    nlohmann::ordered_json doc = {{"schema", schema_id::version}, {"documents", docs}};
    std::cout << dump_document(with_document_head(std::move(doc)), json == "short") << '\n';
    return stdout_checked(exit_code::clean);
  } catch (const CLI::Success& e) {
    return app->exit(e); // --help
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
  if (const std::string why = state_dir_refused(globals.state_dir); !why.empty()) {
    return report_failure(json, "usage", why, exit_code::usage);
  }
  try {
    Output out(globals);
    // One interruption contract for every command (sys/signals.hpp): from here on the first
    // SIGINT/SIGTERM/SIGHUP only asks the command to stop at its next safe point.
    sys::StopSignals stop_signals;
    return stdout_checked(runner ? runner(out) : exit_code::usage);
  } catch (const UsageError& e) {
    return report_failure(globals.json_style, "usage", e.what(), exit_code::usage);
  } catch (const Error& e) {
    return report_failure(globals.json_style, "error", e.what(), exit_code::incomplete);
  } catch (const std::exception& e) {
    return report_failure(globals.json_style, "internal", e.what(), exit_code::incomplete);
  }
}

} // namespace vmcsum::cli
