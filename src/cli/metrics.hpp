// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// --prometheus FILE: the results of audit and scrub as node_exporter textfile-collector metrics
// (Prometheus text exposition format 0.0.4), written atomically so the collector never reads a
// half-written file.
#pragma once

#include <vmcsum/audit/audit.hpp>
#include <vmcsum/scrub/scrub.hpp>

#include "output.hpp"

#include <functional>
#include <optional>
#include <string>

namespace vmcsum::cli {

// When and how a run ended, for the vmcsum_last_run_* metrics.
struct RunFacts
{
  std::string command;   // "audit", "scrub"
  double started_at = 0; // seconds since the epoch
  double duration = 0;   // seconds
  int exit_code = 0;
};

// The exposition text. Pure, so tests check it against the format's rules.
std::string audit_metrics(const core::AuditResult& r, const RunFacts& run);
std::string scrub_metrics(const core::ScrubResult& r, const RunFacts& run);

// Writes `text` to `path` atomically (temp file in the same directory, fsync, rename), mode
// 0644 so that node_exporter, running as another user, can read it. Throws vmcsum::Error.
void write_metrics_file(const std::string& path, const std::string& text);

// With --prometheus FILE given (non-empty `file`): makes the text for `run` (completed with
// the duration and `status`) and writes it; a failure is reported on stderr, said in `failure`
// (for the JSON document: its exit_code 3 needs a reason there too) and makes the run
// incomplete. Returns the exit status to go on with.
int export_metrics(Output& out, const std::string& file, int status,
                   const std::function<std::string(const RunFacts&)>& text, RunFacts run,
                   std::optional<std::string>& failure);

// Seconds since the epoch, now.
double epoch_seconds_now();

} // namespace vmcsum::cli
