// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Reading the btrfs checksum messages of the kernel log: /dev/kmsg (this boot), a text file of
// log lines (tests), and the systemd journal (earlier boots).
#pragma once

#include <vmcsum/host/kernel_log.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmcsum::core {

// Every parsable btrfs csum event of `path`: /dev/kmsg (read without blocking to the end of the
// ring buffer) or a regular file of log lines. Problems become notes, never exceptions.
std::vector<CsumLogEvent> read_kernel_log(const std::string& path, std::vector<std::string>& notes);

// An event with the time the kernel stamped on it, when the line carries one.
struct TimedLogEvent
{
  CsumLogEvent event;
  std::optional<uint64_t> since_boot_us; // printk time: microseconds since boot
};
std::vector<TimedLogEvent> read_kernel_log_timed(const std::string& path,
                                                 std::vector<std::string>& notes);

// The printk time of one log line, in microseconds since boot: the third field of a raw
// /dev/kmsg record ("6,1234,5678901,-;...") or dmesg's "[    5.678901]" prefix. nullopt when the
// line has neither.
std::optional<uint64_t> kernel_log_line_time_us(std::string_view line);

// Microseconds since the epoch of a printk time: boot_epoch_us + since_boot_us (saturating).
uint64_t kmsg_time_to_epoch_us(uint64_t since_boot_us, uint64_t boot_epoch_us);

// The epoch time, in microseconds, at which printk's clock read zero on this boot:
// CLOCK_REALTIME - CLOCK_MONOTONIC. printk stamps with local_clock(), which (like
// CLOCK_MONOTONIC, unlike CLOCK_BOOTTIME) does not advance while the machine is suspended
// (sched_clock is saved and restored across suspend on x86, kernel/time/sched_clock.c
// sched_clock_suspend on others), so after a suspend CLOCK_BOOTTIME or /proc/stat btime would
// place every later line too early by the time spent asleep (dmesg(1) -T warns of exactly
// that). Before any suspend all three agree to within a second.
uint64_t printk_epoch_offset_us();

// Microseconds of CLOCK_MONOTONIC and CLOCK_REALTIME now.
uint64_t monotonic_now_us();
uint64_t realtime_now_us();

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
