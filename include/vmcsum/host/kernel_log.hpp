// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// btrfs data-checksum messages of the kernel log, in every format from 5.15 to 7.3
// (docs/kernel-facts.md §2 and "Re-checked 2026-12-02"): scrub lines without and (6.16+) with the
// "scrub: " prefix, and error codes printed as numbers or (%pe, 7.3's d34a3a8ba61e) as symbols.
// The parser takes one line of text and is fuzzed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vmcsum::core {

struct CsumLogEvent
{
  enum class Kind {
    read_csum_failed, // "csum failed root R ino I off O csum 0x.. expected csum 0x.. mirror M"
    // "[scrub: ]checksum error at logical L on dev D, physical P[,] root R..."; also the
    // metadata form ("...: metadata leaf (level 0) in tree T", root = T), which has no ino.
    scrub_error,
    scrub_fixed,     // "[scrub: ]fixed up error at logical L on dev D[ physical P]" / "on mirror M"
    scrub_unfixable, // "[scrub: ]unable to fixup (regular) error at logical L ..." (same tails)
    read_repaired,   // "read error corrected: ino I off O (dev D sector S)"
    dev_stats,       // "bdev D errs: wr W, rd R, flush F, corrupt C, gen G"
  };
  Kind kind{};
  std::string device;          // X of the "(device X[ state ...])" tag, state letters dropped
  std::string level;           // "warning", "error", "info", ...
  std::optional<int64_t> root; // negative for the data reloc tree (-9)
  std::optional<uint64_t> ino;
  std::optional<uint64_t> offset; // file offset ("off"/"offset")
  std::optional<uint64_t> logical;
  std::optional<uint64_t> physical; // bytes (read_repaired's 512-byte sector is converted)
  std::optional<std::string> dev;   // "on dev /dev/X" / "bdev /dev/X"
  std::optional<std::string> csum;  // hex without 0x, raw bytes in on-disk order
  std::optional<std::string> expected_csum;
  std::optional<unsigned> mirror;
  std::optional<std::string> path; // "(path: ...)" of scrub lines
  // "...: path resolving failed with ret=E" of scrub lines, as printed: "-2" (%d) or, where the
  // kernel prints error codes with %pe (7.3, d34a3a8ba61e), the symbol "-ENOENT"; the kernel
  // prints a number for %pe too when built without CONFIG_SYMBOLIC_ERRNAME.
  std::optional<std::string> path_error;
  std::string error_kind; // scrub: "checksum error", "i/o error", "header error", ...
  // dev_stats counters
  uint64_t wr = 0, rd = 0, flush = 0, corrupt = 0, gen = 0;
  // The filesystem `device` stood for when the line was logged, from the device-scan and
  // first-mount lines before it (parse_device_fsid_line; filled by the log readers). nullopt
  // when the log does not say.
  std::optional<std::string> fsid;
};

// The stable name of an event kind, as JSON output gives it ("read-csum-failed", ...).
const char* kind_name(CsumLogEvent::Kind kind);

// Parses one line of the kernel log. Accepts the raw /dev/kmsg record form
// ("6,1234,5678,-;BTRFS warning (device loop1): ...", dictionary lines after it ignored),
// dmesg's "[  12.345678] BTRFS ..." (with or without a "[    T123] " caller id), and the bare
// message. nullopt for anything that is not one of the messages above.
std::optional<CsumLogEvent> parse_kernel_log_line(std::string_view line);

// Which filesystem a kernel device name stands for from a line on: the kernel names a btrfs in
// its messages by a device ("(device loop17)"), and loop devices are reused by one filesystem
// after another, so an event is only attributable to a filesystem through the lines that bound
// the name to it before it. Recognised (same line forms as above):
//   "BTRFS: device fsid <uuid> devid N transid T /dev/<name> [(M:m) ]scanned by ..." (scan,
//   mkfs; every kernel this tool knows), and
//   "BTRFS info (device <name>[ state ...]): first mount of filesystem <uuid>" (6.8 and later).
struct DeviceFsid
{
  std::string device; // "loop17", as the "(device X)" tag names it
  std::string fsid;   // canonical lower-case UUID text
};
std::optional<DeviceFsid> parse_device_fsid_line(std::string_view line);

} // namespace vmcsum::core
