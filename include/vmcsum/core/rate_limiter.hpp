// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// --limit-rate: scrub and repair on a live host must not starve the VMs of disk bandwidth.
#pragma once

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
  void consumed(uint64_t bytes)
  {
    if (m_rate == 0) {
      return;
    }
    auto now = std::chrono::steady_clock::now();
    // At most one second of unused budget carries over: time spent elsewhere (another phase,
    // another limiter) must not turn into a burst at full speed afterwards.
    const auto earliest = now - std::chrono::seconds(1);
    if (m_start + spent() < earliest) {
      m_start = earliest;
      m_bytes = 0;
    }
    m_bytes += bytes;
    auto due = m_start + spent();
    if (due > now) {
      std::this_thread::sleep_for(due - now);
    }
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
