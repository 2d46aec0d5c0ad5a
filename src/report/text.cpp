// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/report/text.hpp>

#include <ctime>

#include <cstdio>

namespace vmcsum::core {

namespace {
// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid.
size_t utf8_sequence(std::string_view s, size_t i)
{
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) {
    return 1;
  }
  size_t len = 0;
  uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) {
    return 0;
  }
  for (size_t k = 1; k < len; ++k) {
    unsigned char cc = byte(i + k);
    if ((cc & 0xC0) != 0x80) {
      return 0;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return len;
}
} // namespace

bool is_valid_utf8(std::string_view s)
{
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_sequence(s, i);
    if (n == 0) {
      return false;
    }
    i += n;
  }
  return true;
}

namespace {
// A UTF-8 sequence (2 or 3 bytes) of a code point that changes how a terminal shows the text
// around it rather than showing itself: a C1 control (U+0080-U+009F; some terminals take U+009B
// as CSI) or a bidirectional control (U+200E, U+200F, U+202A-U+202E, U+2066-U+2069: a name can
// otherwise show its end first, "gpj.raw" as "war.jpg").
bool invisible_control(std::string_view seq)
{
  uint32_t cp = 0;
  if (seq.size() == 2) {
    cp = (static_cast<uint32_t>(static_cast<unsigned char>(seq[0]) & 0x1f) << 6) |
         (static_cast<unsigned char>(seq[1]) & 0x3f);
    return cp >= 0x80 && cp <= 0x9f;
  }
  if (seq.size() == 3) {
    cp = (static_cast<uint32_t>(static_cast<unsigned char>(seq[0]) & 0x0f) << 12) |
         (static_cast<uint32_t>(static_cast<unsigned char>(seq[1]) & 0x3f) << 6) |
         (static_cast<unsigned char>(seq[2]) & 0x3f);
    return cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
  }
  return false;
}

// escape_name() and printable(): `as_name` escapes backslashes and tabs too.
std::string escape_bytes(std::string_view s, bool as_name)
{
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_sequence(s, i);
    auto c = static_cast<unsigned char>(s[i]);
    // Bytes shown as \xNN (unescape_name() gives the name back): an invalid or control byte,
    // or every byte of a control that is valid UTF-8.
    const bool kept = !as_name && c == '\t';
    const size_t hex = n > 1 && invisible_control(s.substr(i, n))       ? n
                       : (n == 0 || ((c < 0x20 || c == 0x7f) && !kept)) ? 1
                                                                        : 0;
    if (hex > 0) {
      for (size_t k = 0; k < hex; ++k) {
        char buf[5];
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(s[i + k]));
        out += buf;
      }
      i += hex;
    } else if (c == '\\' && as_name) {
      out += "\\\\";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

} // namespace

std::string escape_name(std::string_view s)
{
  return escape_bytes(s, true);
}

std::string printable(std::string_view s)
{
  return escape_bytes(s, false);
}

std::string unescape_name(std::string_view s)
{
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') {
      return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
      return c - 'a' + 10;
    }
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '\\') {
      out += '\\';
      ++i;
    } else if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] == 'x' && hex(s[i + 2]) >= 0 &&
               hex(s[i + 3]) >= 0) {
      out += static_cast<char>(hex(s[i + 2]) * 16 + hex(s[i + 3]));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string human_bytes(uint64_t bytes)
{
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.2f%s", v, units[u]);
  }
  return buf;
}

std::string utc_time_us(uint64_t us)
{
  const time_t t = static_cast<time_t>(us / 1000000);
  struct tm tm = {};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

} // namespace vmcsum::core
