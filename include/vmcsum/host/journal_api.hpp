// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// libsystemd's journal functions, loaded when first needed (dlopen) rather than at start.
// Linked, libsystemd and the four libraries it brings (libcap, liblzma, libzstd, liblz4) were
// loaded by every command: 1.7 ms at every start with a warm cache and ~7 ms with a cold one
// (an empty program linked with and without it, perf stat -r 100 and 6 cold runs), though
// only scrub --history, audit's journal of earlier boots and repair's journal line use them.
// The package depends on libsystemd0 by name (debian/control): dpkg-shlibdeps cannot see it.
#pragma once

#include <systemd/sd-id128.h>
#include <systemd/sd-journal.h>

#include <string>

namespace vmcsum::core {

struct JournalApi
{
  decltype(&::sd_journal_open) open;
  decltype(&::sd_journal_open_files) open_files;
  decltype(&::sd_journal_open_directory) open_directory;
  decltype(&::sd_journal_close) close;
  decltype(&::sd_journal_add_match) add_match;
  decltype(&::sd_journal_seek_head) seek_head;
  decltype(&::sd_journal_next) next;
  decltype(&::sd_journal_get_data) get_data;
  decltype(&::sd_journal_get_monotonic_usec) get_monotonic_usec;
  decltype(&::sd_journal_get_realtime_usec) get_realtime_usec;
  decltype(&::sd_journal_send) send;
  decltype(&::sd_id128_get_boot) id128_get_boot;
  decltype(&::sd_id128_to_string) id128_to_string;
};

// The functions, loaded once per process (thread-safe); nullptr when libsystemd.so.0 or one of
// them could not be loaded, with the reason in `why` (dlerror's).
const JournalApi* journal_api(std::string* why = nullptr);

} // namespace vmcsum::core
