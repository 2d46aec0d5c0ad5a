// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// How probe and bench say where they are, as set says it with SetProgress: plain data for a
// caller to draw (the CLI's progress line); nothing here knows a terminal.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace vmcsum::core {

struct MeasureProgress
{
  std::string path;   // the path measured, as given
  std::string phase;  // "prefill checksummed", "seq-1m nocow 1/2", "trace", "race write"...
  uint64_t done = 0;  // bytes of this phase so far
  uint64_t total = 0; // bytes of this phase; 0 when it is bounded by time, not bytes
};

using MeasureProgressFn = std::function<void(const MeasureProgress&)>;

} // namespace vmcsum::core
