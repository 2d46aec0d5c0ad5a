// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// --limit-rate: scrub and repair on a live host must not starve the VMs of disk bandwidth.
#pragma once

#include <vmcsum/sys/signals.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>

namespace vmcsum::core {

// Sleeps so that the bytes moved so far do not exceed `rate` per second (0: no limit).
class RateLimiter
{
public:
  explicit RateLimiter(uint64_t rate)
    : m_rate(rate)
    , m_start(std::chrono::steady_clock::now())
  {
  }
  // `stoppable`: return early from the wait once a stop signal is pending (the caller stops at
  // its next safe point); false for work that runs to its end whatever (a verification), which
  // must keep to the rate then too.
  void consumed(uint64_t bytes, bool stoppable = true)
  {
    if (m_rate == 0) {
      return;
    }
    auto now = std::chrono::steady_clock::now();
    // At most a tenth of a second of unused budget carries over: time spent elsewhere (a
    // commit, another phase) must not turn into a burst at full speed afterwards.
    const auto earliest = now - std::chrono::milliseconds(100);
    if (m_start + spent() < earliest) {
      m_start = earliest;
      m_bytes = 0;
    }
    m_bytes += bytes;
    const auto due = m_start + spent();
    // In slices, so that a stop signal (vmcsum(8) SIGNALS) is seen within a tenth of a second
    // however low the rate: at 1 KiB/s one 64 KiB request is a minute's wait. The caller
    // reaches its next safe point and stops there.
    while (now < due && !(stoppable && sys::stop_requested())) {
      std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(due - now, std::chrono::milliseconds(100)));
      now = std::chrono::steady_clock::now();
    }
  }

  uint64_t rate() const { return m_rate; }
  // A request size that keeps bursts short: a sixteenth of a second of the rate, between
  // 64 KiB and `max`, in whole 64 KiB units.
  uint64_t chunk(uint64_t max) const
  {
    if (m_rate == 0) {
      return max;
    }
    const uint64_t c = std::max<uint64_t>(65536, m_rate / 16 / 65536 * 65536);
    return std::min(c, max);
  }

private:
  std::chrono::microseconds spent() const
  {
    return std::chrono::microseconds(m_bytes * 1000000 / m_rate);
  }
  uint64_t m_rate;
  uint64_t m_bytes = 0;
  std::chrono::steady_clock::time_point m_start;
};

} // namespace vmcsum::core
