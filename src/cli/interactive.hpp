// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// What long-running commands share: a progress line on stderr and byte-rate arguments. The
// signals that stop them are sys::StopSignals, installed once per run by run() (app.cpp).
#pragma once

#include <vmcsum/sys/signals.hpp>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <string>

namespace vmcsum::cli {

// The progress line for a width (0: no limit): "PATH  PHASE  42% 1.00GiB/2.38GiB  85.3MiB/s
// ETA 0:17". The path loses its middle first, then ETA and rate go: it never wraps (a wrapped
// line cannot be redrawn in place). `rate` is bytes per second, 0 while unknown.
std::string progress_line(const std::string& path, const std::string& phase, uint64_t done,
                          uint64_t total, double rate, size_t width);

// One line on stderr, redrawn at most ten times a second; only when enabled (a terminal, no -q).
// It fits the terminal's width, asked again after each SIGWINCH.
class ProgressBar
{
public:
  explicit ProgressBar(bool enabled);
  ~ProgressBar();
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
  uint64_t m_done_at_start = 0; // the rate is of this phase's bytes, not the run's
  size_t m_width = 0;
  struct sigaction m_old_winch = {};
};

// Whether stderr is a terminal and the user did not ask for quiet.
bool progress_wanted(bool quiet);

// "100", "64K", "1.5M", "2GiB": bytes per second. Throws CLI::ValidationError naming `option`.
uint64_t parse_rate(const std::string& text, const std::string& option);

} // namespace vmcsum::cli
