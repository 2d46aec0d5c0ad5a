// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Reading the btrfs checksum messages of the kernel log: /dev/kmsg (this boot), a text file of
// log lines (tests), and the systemd journal (earlier boots).
#pragma once

#include <vmcsum/core/kernel_log.hpp>

#include <optional>
#include <string>
#include <vector>

namespace vmcsum::core {

// Every parsable btrfs csum event of `path`: /dev/kmsg (read without blocking to the end of the
// ring buffer) or a regular file of log lines. Problems become notes, never exceptions.
std::vector<CsumLogEvent> read_kernel_log(const std::string& path, std::vector<std::string>& notes);

struct JournalEvent
{
  CsumLogEvent event;
  std::string boot_id;      // 32 hex digits
  uint64_t realtime_us = 0; // microseconds since the epoch
};

// The kernel messages (_TRANSPORT=kernel) of the systemd journal from boots other than the
// current one (this boot is /dev/kmsg's): the local system journal, or the journal files of
// `directory` (a journal directory, or one .journal file) when it is not empty. Problems (no
// journal, no permission) become notes.
std::vector<JournalEvent> read_journal_kernel_log(std::vector<std::string>& notes,
                                                  const std::string& directory = {});

} // namespace vmcsum::core
