// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "interactive.hpp"

#include "output.hpp"

#include <vmcsum/report/text.hpp>

#include <CLI/CLI.hpp>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <vector>

#include <sys/ioctl.h>
#include <unistd.h>

namespace vmcsum::cli {

namespace {
// Set by SIGWINCH: the next update asks the terminal its width again.
volatile std::sig_atomic_t g_resized = 1;

extern "C" void on_winch(int)
{
  g_resized = 1;
}

// Width of the terminal on stderr (where the line goes); 80 when it does not say.
size_t stderr_width()
{
  const size_t w = terminal_width(STDERR_FILENO);
  return w != 0 ? w : 80;
}

// The whole text, retrying after a signal: with output stopped (Ctrl-S) a write blocks, and
// the Ctrl-C that restarts output interrupts it (the stop handler has no SA_RESTART). Through
// std::cerr that EINTR would set its badbit and silence the clear and every later message.
void write_stderr(const std::string& text)
{
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = ::write(STDERR_FILENO, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return; // a terminal gone away: nothing to draw on
    }
    off += static_cast<size_t>(n);
  }
}

std::string eta_text(double seconds)
{
  const auto s = static_cast<uint64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "ETA %lluh%02llum", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s / 60 % 60));
  } else {
    std::snprintf(buf, sizeof buf, "ETA %llu:%02llu", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  }
  return buf;
}
} // namespace

std::string progress_line(const std::string& path, const std::string& phase, uint64_t done,
                          uint64_t total, double rate, size_t width)
{
  std::vector<std::string> tail; // most important first: what is left out last
  if (!phase.empty()) {
    tail.push_back(phase);
  }
  if (total == 0 && done > 0) {
    // Bounded by time, not bytes (bench's calibration runs): what was done and how fast.
    tail.push_back(core::human_bytes(done));
    if (rate > 0) {
      tail.push_back(core::human_bytes(static_cast<uint64_t>(rate)) + "/s");
    }
  } else if (total > 0) {
    char pct[16];
    std::snprintf(pct, sizeof pct, "%3d%%",
                  static_cast<int>(100.0 * static_cast<double>(std::min(done, total)) /
                                   static_cast<double>(total)));
    tail.push_back(std::string(pct) + " " + core::human_bytes(done) + "/" +
                   core::human_bytes(total));
    if (rate > 0) {
      tail.push_back(core::human_bytes(static_cast<uint64_t>(rate)) + "/s");
      if (done < total) {
        tail.push_back(eta_text(static_cast<double>(total - done) / rate));
      }
    }
  }
  const std::string name = core::escape_name(path);
  // Three columns stay empty: a line that fills the last one wraps on some terminals, and
  // Ctrl-C makes the terminal echo "^C" after the line: were that to wrap, the clear (\r and
  // erase line) would erase the wrong line and leave the progress on screen.
  const size_t room = width == 0 ? SIZE_MAX : (width > 3 ? width - 3 : 1);
  constexpr size_t min_name = 12;
  while (true) {
    std::string right;
    for (const auto& t : tail) {
      right += "  " + t;
    }
    const size_t rw = display_width(right);
    if (rw + std::min(display_width(name), min_name) <= room || tail.size() <= 1) {
      std::string line = (rw < room ? ellipsize_middle(name, room - rw) : std::string()) + right;
      return display_width(line) > room ? ellipsize_middle(line, room) : line;
    }
    tail.pop_back();
  }
}

ProgressBar::ProgressBar(bool enabled)
  : m_enabled(enabled)
{
  if (m_enabled) {
    struct sigaction sa = {};
    sa.sa_handler = on_winch;
    sa.sa_flags = SA_RESTART; // a resize must not fail a read with EINTR
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGWINCH, &sa, &m_old_winch);
    g_resized = 1;
  }
}

ProgressBar::~ProgressBar()
{
  clear();
  if (m_enabled) {
    ::sigaction(SIGWINCH, &m_old_winch, nullptr);
  }
}

void ProgressBar::update(const std::string& path, const std::string& phase, uint64_t done,
                         uint64_t total)
{
  if (!m_enabled) {
    return;
  }
  auto now = Clock::now();
  const bool resized = g_resized != 0;
  if (phase != m_phase || path != m_path) {
    m_phase = phase;
    m_path = path;
    m_phase_start = now;
    m_done_at_start = done;
  } else if (now - m_last < std::chrono::milliseconds(100) && !resized) {
    return;
  }
  if (resized) {
    g_resized = 0;
    m_width = stderr_width();
  }
  m_last = now;
  const double secs = std::chrono::duration<double>(now - m_phase_start).count();
  // Half a second of data before a rate means anything.
  const double rate =
    secs > 0.5 && done > m_done_at_start ? static_cast<double>(done - m_done_at_start) / secs : 0;
  std::cerr << std::flush; // anything still buffered goes first
  write_stderr("\r\x1b[K" + progress_line(path, phase, done, total, rate, m_width));
  m_shown = true;
}

void ProgressBar::clear()
{
  if (m_shown) {
    write_stderr("\r\x1b[K");
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
  // A rate of 0 means no limit to the rate limiter, so a fraction of a byte must not round to
  // it; and converting a double past 2^64 (1e30, inf) is undefined behaviour, not a big limit:
  // anything from 2^63 on is refused, far beyond any device.
  const double bytes = v * mul;
  if (bytes < 1) {
    throw CLI::ValidationError(option, "must be at least one byte per second: " + text);
  }
  if (!(bytes < 0x1p63)) {
    throw CLI::ValidationError(option,
                               "too large: " + text + " (the limit is below 8 EiB per second)");
  }
  return static_cast<uint64_t>(bytes);
}

} // namespace vmcsum::cli
