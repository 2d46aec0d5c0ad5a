// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum set --nocow|--cow PATH...: make the attribute real, existing data included (a verified
// rewrite for non-empty files), or say why not.
#include "app.hpp"

#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/core/rewrite.hpp>
#include <vmcsum/core/text.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>

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

// SIGINT/SIGTERM/SIGHUP only raise this flag; the engine polls it between chunks, removes its
// temp file and stops. SA_RESETHAND: a second signal is not caught, so it ends vmcsum at once
// (the temp file is then removed by the next run).
std::atomic<bool> g_cancel{false};
volatile std::sig_atomic_t g_signal = 0;
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void on_stop_signal(int sig)
{
  g_signal = sig;
  g_cancel.store(true);
}

class StopSignals
{
public:
  StopSignals()
  {
    g_cancel.store(false);
    g_signal = 0;
    struct sigaction sa
    {
    };
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND; // and no SA_RESTART: blocking waits return early
    ::sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < k_signals.size(); ++i) {
      // A signal ignored when vmcsum started (nohup, a background job of a script) stays
      // ignored, as shells and coreutils do.
      ::sigaction(k_signals[i], nullptr, &m_old[i]);
      m_installed[i] = m_old[i].sa_handler != SIG_IGN;
      if (m_installed[i]) {
        ::sigaction(k_signals[i], &sa, nullptr);
      }
    }
  }
  ~StopSignals()
  {
    for (size_t i = 0; i < k_signals.size(); ++i) {
      if (m_installed[i]) {
        ::sigaction(k_signals[i], &m_old[i], nullptr);
      }
    }
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

private:
  static constexpr std::array<int, 3> k_signals{SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> m_old{};
  std::array<bool, 3> m_installed{};
};

// One line on stderr, redrawn at most ten times a second; only on a terminal.
class ProgressBar
{
public:
  explicit ProgressBar(bool enabled)
    : m_enabled(enabled)
  {
  }
  ~ProgressBar() { clear(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(const core::SetProgress& p)
  {
    if (!m_enabled) {
      return;
    }
    auto now = Clock::now();
    bool new_phase = p.phase != m_phase || p.path != m_path;
    if (new_phase) {
      m_phase = p.phase;
      m_path = p.path;
      m_phase_start = now;
    } else if (now - m_last < std::chrono::milliseconds(100)) {
      return;
    }
    m_last = now;
    std::string name = core::escape_name(p.path);
    if (name.size() > 40) {
      name = "..." + name.substr(name.size() - 37);
    }
    std::string line = name + "  " + p.phase;
    if (p.total > 0) {
      char pct[16];
      std::snprintf(
        pct, sizeof pct, " %3d%% ",
        static_cast<int>(100.0 * static_cast<double>(p.done) / static_cast<double>(p.total)));
      line += pct + core::human_bytes(p.done) + "/" + core::human_bytes(p.total);
      double secs = std::chrono::duration<double>(now - m_phase_start).count();
      if (secs > 0.5) {
        line += "  " +
                core::human_bytes(static_cast<uint64_t>(static_cast<double>(p.done) / secs)) + "/s";
      }
    }
    std::cerr << "\r\x1b[K" << line << std::flush;
    m_shown = true;
  }
  void clear()
  {
    if (m_shown) {
      std::cerr << "\r\x1b[K" << std::flush;
      m_shown = false;
    }
  }

private:
  using Clock = std::chrono::steady_clock;
  bool m_enabled;
  bool m_shown = false;
  std::string m_phase, m_path;
  Clock::time_point m_last{}, m_phase_start{};
};

nlohmann::ordered_json opt_str(const std::string& s)
{
  return s.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s);
}

template <class T>
nlohmann::ordered_json opt(const std::optional<T>& v)
{
  return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json state_json(const std::optional<core::SetState>& s)
{
  if (!s) {
    return nullptr;
  }
  nlohmann::ordered_json j;
  j["state"] = s->state;
  j["nocow"] = opt(s->nocow);
  j["nodatasum"] = opt(s->nodatasum);
  j["inode_flags"] = s->inode_flags
                       ? nlohmann::ordered_json(btrfs::inode_flag_names(*s->inode_flags))
                       : nlohmann::ordered_json(nullptr);
  j["size"] = s->size;
  j["allocated"] = s->allocated;
  j["extents"] = opt(s->extents);
  j["compression"] = opt_str(s->compression);
  j["inode"] = s->inode;
  return j;
}

nlohmann::ordered_json entry_json(const core::SetEntry& e)
{
  nlohmann::ordered_json j;
  j["path"] = core::escape_name(e.path);
  j["path_is_utf8"] = core::is_valid_utf8(e.path);
  j["symlink_target"] = e.symlink_target
                          ? nlohmann::ordered_json(core::escape_name(*e.symlink_target))
                          : nlohmann::ordered_json(nullptr);
  j["acted_on"] = core::escape_name(e.acted_on);
  j["kind"] = e.kind;
  j["action"] = e.action;
  j["code"] = opt_str(e.code);
  j["reason"] = opt_str(e.reason);
  auto& refusals = j["refusals"] = nlohmann::ordered_json::array();
  for (const auto& r : e.refusals) {
    refusals.push_back({{"code", r.code}, {"message", r.message}});
  }
  j["before"] = state_json(e.before);
  j["after"] = state_json(e.after);
  j["bytes_copied"] = e.bytes_copied;
  j["data_ranges"] = e.data_ranges;
  j["plan"] = e.steps;
  j["notes"] = e.notes;
  auto& users = j["users"] = nlohmann::ordered_json::array();
  for (const auto& u : e.users) {
    users.push_back({{"pid", u.pid},
                     {"comm", core::escape_name(u.comm)},
                     {"fd", u.fd},
                     {"o_direct", u.o_direct},
                     {"writable", u.writable}});
  }
  auto& locks = j["locks"] = nlohmann::ordered_json::array();
  for (const auto& l : e.locks) {
    locks.push_back({{"pid", opt(l.pid)},
                     {"kind", l.kind},
                     {"mode", l.mode},
                     {"start", l.start},
                     {"end", opt(l.end)},
                     {"qemu", l.qemu},
                     {"seen_by", l.seen_by}});
  }
  auto& bad = j["unreadable"] = nlohmann::ordered_json::array();
  for (const auto& r : e.unreadable) {
    bad.push_back({{"offset", r.offset}, {"length", r.length}});
  }
  j["unreadable_bytes"] = e.unreadable_bytes;
  j["xattrs"] = {{"copied", e.xattrs_copied}, {"dropped", e.xattrs_dropped}};
  if (e.verify) {
    j["verify"] = {{"hash", e.verify->hash},
                   {"source_digest", e.verify->source_digest},
                   {"copy_digest", e.verify->copy_digest},
                   {"method", e.verify->method},
                   {"resident_pages", e.verify->resident_pages},
                   {"flags_ok", e.verify->flags_ok}};
  } else {
    j["verify"] = nullptr;
  }
  j["seconds"] = {{"copy", e.seconds.copy},
                  {"flush", e.seconds.flush},
                  {"verify", e.seconds.verify},
                  {"total", e.seconds.total}};
  return j;
}

bool is_failure(const core::SetEntry& e)
{
  return e.action == "refused" || e.action == "failed" ||
         (e.action == "skipped" && e.code == "interrupted");
}

std::string state_text(const std::optional<core::SetState>& s)
{
  return s ? s->state : "-";
}

void render_text(const core::SetResult& r, const SetCliOptions& o, const Output& out)
{
  const std::string want = o.nocow ? "nocow" : "cow";
  if (o.dry_run) {
    std::string text = out.paint("dry run", Style::bold) + ": nothing is changed; vmcsum set --" +
                       want + " would:\n";
    for (const auto& e : r.files) {
      std::string name = core::escape_name(e.path);
      if (e.action == "refused") {
        text +=
          name + ": " + out.paint("refuse", Style::red) + " (" + e.code + "): " + e.reason + "\n";
        continue;
      }
      if (e.action == "unchanged") {
        text += name + ": leave it unchanged (already " + state_text(e.before) + ")\n";
      } else if (e.action == "skipped") {
        text += name + ": skip it (" + e.reason + ")\n";
      } else {
        text += name + ": " + (e.action == "rewritten" ? "rewrite it" : "set the attribute") +
                " (" + state_text(e.before) + " -> " + want + ")\n";
        int n = 0;
        for (const auto& s : e.steps) {
          text += "  " + std::to_string(++n) + ". " + s + "\n";
        }
      }
      for (const auto& note : e.notes) {
        text += "  note: " + note + "\n";
      }
    }
    for (const auto& l : r.leftovers) {
      text += "remove leftover temp file " + core::escape_name(l.path) + "\n";
    }
    out.print(text);
    return;
  }
  Table table({"PATH", "ACTION", "BEFORE", "AFTER", "COPIED", "TIME"});
  std::string notes;
  for (const auto& e : r.files) {
    Style st = is_failure(e)             ? Style::red
               : e.action == "unchanged" ? Style::plain
               : e.action == "skipped"   ? Style::dim
                                         : Style::green;
    char secs[32] = "-";
    if (e.seconds.total > 0) {
      std::snprintf(secs, sizeof secs, "%.1fs", e.seconds.total);
    }
    table.add({core::escape_name(e.path), out.paint(e.action, st), state_text(e.before),
               state_text(e.after), e.bytes_copied ? core::human_bytes(e.bytes_copied) : "-",
               secs});
    for (const auto& n : e.notes) {
      notes += "note: " + core::escape_name(e.path) + ": " + n + "\n";
    }
  }
  if (!table.empty()) {
    out.print(table.render(out));
  }
  if (!notes.empty()) {
    out.print(notes);
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
    StopSignals signals;
    ProgressBar bar(::isatty(STDERR_FILENO) == 1 && !out.options().quiet);
    r = core::set_cow_attribute(
      opts, [&](const core::SetProgress& p) { bar.update(p); }, g_cancel);
  }

  int status = exit_code::clean;
  if (!r.leftovers.empty()) {
    status = exit_code::warnings;
  }
  for (const auto& e : r.files) {
    if (is_failure(e)) {
      status = exit_code::incomplete;
    }
  }
  if (r.interrupted && g_signal != 0) {
    status = exit_code::interrupted + g_signal;
  }

  if (out.options().json) {
    nlohmann::ordered_json doc;
    doc["schema"] = "vmcsum.set/1";
    doc["requested"] = o.nocow ? "nocow" : "cow";
    doc["dry_run"] = o.dry_run;
    doc["recursive"] = o.recursive;
    auto& files = doc["files"] = nlohmann::ordered_json::array();
    for (const auto& e : r.files) {
      files.push_back(entry_json(e));
    }
    auto& left = doc["leftovers"] = nlohmann::ordered_json::array();
    for (const auto& l : r.leftovers) {
      left.push_back(
        {{"path", core::escape_name(l.path)}, {"removed", l.removed}, {"error", opt_str(l.error)}});
    }
    doc["interrupted"] = r.interrupted;
    doc["exit_code"] = status;
    out.emit_json(doc);
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
      out.error(core::escape_name(e.path) + ": " + e.action + " (" + e.code + "): " + e.reason);
    }
  }
  if (r.interrupted) {
    out.error("interrupted" +
              (g_signal ? " by signal " + std::to_string(g_signal) : std::string()) +
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
  cmd->add_option("--proc", opts->proc_dir, "proc filesystem to scan for users of the files")
    ->capture_default_str();
  cmd->add_option("paths", opts->paths, "Files or directories")->required();
  cmd->callback([opts, &runner] {
    if (opts->nocow == opts->cow) {
      throw CLI::RequiredError("exactly one of --nocow and --cow");
    }
    runner = [opts](Output& out) { return run_set(*opts, out); };
  });
}

} // namespace vmcsum::cli
