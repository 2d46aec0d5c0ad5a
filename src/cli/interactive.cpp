// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "interactive.hpp"

#include <vmcsum/report/text.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include <unistd.h>

namespace vmcsum::cli {

ProgressBar::ProgressBar(bool enabled)
  : m_enabled(enabled)
{
}

void ProgressBar::update(const std::string& path, const std::string& phase, uint64_t done,
                         uint64_t total)
{
  if (!m_enabled) {
    return;
  }
  auto now = Clock::now();
  if (phase != m_phase || path != m_path) {
    m_phase = phase;
    m_path = path;
    m_phase_start = now;
  } else if (now - m_last < std::chrono::milliseconds(100)) {
    return;
  }
  m_last = now;
  std::string name = core::escape_name(path);
  if (name.size() > 40) {
    name = "..." + name.substr(name.size() - 37);
  }
  std::string line = name + (phase.empty() ? "" : "  " + phase);
  if (total > 0) {
    char pct[16];
    std::snprintf(pct, sizeof pct, " %3d%% ",
                  static_cast<int>(100.0 * static_cast<double>(std::min(done, total)) /
                                   static_cast<double>(total)));
    line += pct + core::human_bytes(done) + "/" + core::human_bytes(total);
    double secs = std::chrono::duration<double>(now - m_phase_start).count();
    if (secs > 0.5) {
      line +=
        "  " + core::human_bytes(static_cast<uint64_t>(static_cast<double>(done) / secs)) + "/s";
    }
  }
  std::cerr << "\r\x1b[K" << line << std::flush;
  m_shown = true;
}

void ProgressBar::clear()
{
  if (m_shown) {
    std::cerr << "\r\x1b[K" << std::flush;
    m_shown = false;
  }
}

bool progress_wanted(bool quiet)
{
  return !quiet && ::isatty(STDERR_FILENO) == 1;
}

uint64_t parse_rate(const std::string& text, const std::string& option)
{
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    throw CLI::ValidationError(option, "not a number: " + text);
  }
  const std::string unit = text.substr(pos);
  double mul = 1;
  if (unit.empty() || unit == "B") {
    mul = 1;
  } else if (unit == "K" || unit == "KiB" || unit == "k") {
    mul = 1024;
  } else if (unit == "M" || unit == "MiB" || unit == "m") { // 100m = 100 MiB, as dd and pv read it
    mul = 1024.0 * 1024;
  } else if (unit == "G" || unit == "GiB" || unit == "g") {
    mul = 1024.0 * 1024 * 1024;
  } else {
    throw CLI::ValidationError(option,
                               "unknown unit '" + unit + "' (use k, m or g: powers of 1024)");
  }
  if (!(v > 0)) {
    throw CLI::ValidationError(option, "must be positive");
  }
  return static_cast<uint64_t>(v * mul);
}

} // namespace vmcsum::cli
