// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace vmcsum::core {

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

// A file name made safe to print and to put in JSON: valid UTF-8 stays as it is, except
// control characters; every byte that is not part of valid UTF-8, and every control
// character, becomes \xNN (backslash itself becomes \\). Like `ls -b`, it is reversible.
std::string escape_name(std::string_view s);
// A message made safe for a terminal: like escape_name(), but backslashes and tabs stay as
// they are (a message is no name to give back). A raw file name inside it (an error naming the
// path it was given) can then not move the cursor, retitle the terminal, hide text or start a
// line of its own: ESC, CR, LF, BEL, C1 and the invisible bidi controls become \xNN.
std::string printable(std::string_view s);
// The inverse of escape_name(): \xNN back to the byte, \\ back to a backslash. Text
// that escape_name() cannot have produced is kept as it is.
std::string unescape_name(std::string_view s);

// Calls fn(line) for each line of text, without the newline.
template <typename Fn>
void for_each_line(std::string_view text, Fn fn)
{
  while (!text.empty()) {
    size_t nl = text.find('\n');
    fn(text.substr(0, nl));
    if (nl == std::string_view::npos) {
      break;
    }
    text.remove_prefix(nl + 1);
  }
}

// 1536 -> "1.5KiB", 0 -> "0B": the binary units btrfs-progs prints.
std::string human_bytes(uint64_t bytes);

// "2026-12-03T08:15:02Z" for microseconds since the epoch.
std::string utc_time_us(uint64_t us);

} // namespace vmcsum::core
