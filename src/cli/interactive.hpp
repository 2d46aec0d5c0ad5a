// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// What long-running commands share: a progress line on stderr, the signals that stop them
// cleanly, and byte-rate arguments.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <string>

namespace vmcsum::cli {

// One line on stderr, redrawn at most ten times a second; only when enabled (a terminal, no -q).
class ProgressBar
{
public:
  explicit ProgressBar(bool enabled);
  ~ProgressBar() { clear(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // `phase` may be empty; a new phase or path restarts the rate shown.
  void update(const std::string& path, const std::string& phase, uint64_t done, uint64_t total);
  void clear();

private:
  using Clock = std::chrono::steady_clock;
  bool m_enabled;
  bool m_shown = false;
  std::string m_phase, m_path;
  Clock::time_point m_last{}, m_phase_start{};
};

// Whether stderr is a terminal and the user did not ask for quiet.
bool progress_wanted(bool quiet);

// SIGINT/SIGTERM/SIGHUP only raise cancel(); the engine polls it between chunks and stops at
// a safe point. SA_RESETHAND: a second signal is not caught, so it ends vmcsum at once. A signal
// ignored when vmcsum started (nohup, a background job of a script) stays ignored.
class StopSignals
{
public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  static const std::atomic<bool>& cancel();
  static int signal(); // the signal that arrived, 0 if none

private:
  static constexpr std::array<int, 3> k_signals{SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> m_old{};
  std::array<bool, 3> m_installed{};
};

// "100", "64K", "1.5M", "2GiB": bytes per second. Throws CLI::ValidationError naming `option`.
uint64_t parse_rate(const std::string& text, const std::string& option);

} // namespace vmcsum::cli
