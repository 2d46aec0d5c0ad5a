// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/host/kernel_log.hpp>

#include <array>
#include <limits>

namespace vmcsum::core {

namespace {
using Kind = CsumLogEvent::Kind;

bool is_digit(char c)
{
  return c >= '0' && c <= '9';
}

// A cursor over one message. Every reader consumes only on success, so alternatives can be tried
// one after another on the same cursor.
class Cursor
{
public:
  explicit Cursor(std::string_view s)
    : m_s(s)
  {
  }

  bool done() const { return m_s.empty(); }
  std::string_view rest() const { return m_s; }

  bool lit(std::string_view text)
  {
    if (!m_s.starts_with(text)) {
      return false;
    }
    m_s.remove_prefix(text.size());
    return true;
  }

  bool u64(uint64_t& out)
  {
    uint64_t v = 0;
    size_t i = 0;
    for (; i < m_s.size() && is_digit(m_s[i]); ++i) {
      auto d = static_cast<uint64_t>(m_s[i] - '0');
      if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) {
        return false;
      }
      v = v * 10 + d;
    }
    if (i == 0) {
      return false;
    }
    m_s.remove_prefix(i);
    out = v;
    return true;
  }

  bool u32(unsigned& out)
  {
    Cursor probe = *this;
    uint64_t v = 0;
    if (!probe.u64(v) || v > std::numeric_limits<unsigned>::max()) {
      return false;
    }
    *this = probe;
    out = static_cast<unsigned>(v);
    return true;
  }

  // "%lld": root ids >= BTRFS_LAST_FREE_OBJECTID print negative.
  bool i64(int64_t& out)
  {
    Cursor probe = *this;
    bool neg = probe.lit("-");
    uint64_t v = 0;
    if (!probe.u64(v)) {
      return false;
    }
    constexpr auto max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (neg ? v > max + 1 : v > max) {
      return false;
    }
    *this = probe;
    out = neg ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
    return true;
  }

  bool i32(int& out)
  {
    Cursor probe = *this;
    int64_t v = 0;
    if (!probe.i64(v) || v < std::numeric_limits<int>::min() ||
        v > std::numeric_limits<int>::max()) {
      return false;
    }
    *this = probe;
    out = static_cast<int>(v);
    return true;
  }

  // An error code as printk prints it: "%d" ("-2") or "%pe" ("-ENOENT"; errname() names are
  // "-E" and upper-case letters or digits). Kept as printed.
  bool error_code(std::string& out)
  {
    Cursor probe = *this;
    int number = 0;
    if (probe.i32(number)) {
      out.assign(m_s.substr(0, m_s.size() - probe.m_s.size()));
      *this = probe;
      return true;
    }
    if (!m_s.starts_with("-E")) {
      return false;
    }
    size_t i = 2;
    while (i < m_s.size() && ((m_s[i] >= 'A' && m_s[i] <= 'Z') || is_digit(m_s[i]))) {
      ++i;
    }
    if (i == 2) {
      return false;
    }
    out.assign(m_s.substr(0, i));
    m_s.remove_prefix(i);
    return true;
  }

  // CSUM_FMT "0x%*phN": lower-case hex, two digits per byte, 4 to 32 bytes (crc32c..blake2b).
  bool csum(std::string& out)
  {
    if (!m_s.starts_with("0x")) {
      return false;
    }
    size_t i = 2;
    while (i < m_s.size() && (is_digit(m_s[i]) || (m_s[i] >= 'a' && m_s[i] <= 'f'))) {
      ++i;
    }
    size_t n = i - 2;
    if (n < 8 || n > 64 || n % 2 != 0) {
      return false;
    }
    out.assign(m_s.substr(2, n));
    m_s.remove_prefix(i);
    return true;
  }

  // Text before the first `delim`; consumes both. Fails on an empty text.
  bool until(std::string_view delim, std::string_view& out)
  {
    size_t pos = m_s.find(delim);
    if (pos == std::string_view::npos || pos == 0) {
      return false;
    }
    out = m_s.substr(0, pos);
    m_s.remove_prefix(pos + delim.size());
    return true;
  }

private:
  std::string_view m_s;
};

// "csum failed root R ino I off O [logical L ]csum 0x.. expected csum 0x.. mirror M"
// (btrfs_print_data_csum_error(); the logical form is print_data_reloc_error(), 6.5+).
bool parse_read_failed(Cursor c, CsumLogEvent& e)
{
  int64_t root = 0;
  uint64_t ino = 0, off = 0, logical = 0;
  std::string csum, expected;
  unsigned mirror = 0;
  if (!c.lit("csum failed root ") || !c.i64(root) || !c.lit(" ino ") || !c.u64(ino) ||
      !c.lit(" off ") || !c.u64(off)) {
    return false;
  }
  bool has_logical = c.lit(" logical ");
  if (has_logical && !c.u64(logical)) {
    return false;
  }
  if (!c.lit(" csum ") || !c.csum(csum) || !c.lit(" expected csum ") || !c.csum(expected) ||
      !c.lit(" mirror ") || !c.u32(mirror) || !c.done()) {
    return false;
  }
  e.kind = Kind::read_csum_failed;
  e.root = root;
  e.ino = ino;
  e.offset = off;
  if (has_logical) {
    e.logical = logical;
  }
  e.csum = std::move(csum);
  e.expected_csum = std::move(expected);
  e.mirror = mirror;
  return true;
}

// "bdev D errs: wr W, rd R, flush F, corrupt C, gen G" (btrfs_dev_stat_print_on_error()).
bool parse_dev_stats(Cursor c, CsumLogEvent& e)
{
  std::string_view dev;
  if (!c.lit("bdev ") || !c.until(" errs: ", dev) || !c.lit("wr ") || !c.u64(e.wr) ||
      !c.lit(", rd ") || !c.u64(e.rd) || !c.lit(", flush ") || !c.u64(e.flush) ||
      !c.lit(", corrupt ") || !c.u64(e.corrupt) || !c.lit(", gen ") || !c.u64(e.gen) || !c.done()) {
    return false;
  }
  e.kind = Kind::dev_stats;
  e.dev = std::string(dev);
  return true;
}

// "read error corrected: ino I off O (dev D sector S)" (btrfs_repair_io_failure()).
bool parse_read_repaired(Cursor c, CsumLogEvent& e)
{
  uint64_t ino = 0, off = 0, sector = 0;
  if (!c.lit("read error corrected: ino ") || !c.u64(ino) || !c.lit(" off ") || !c.u64(off) ||
      !c.lit(" (dev ")) {
    return false;
  }
  std::string_view rest = c.rest();
  size_t pos = rest.rfind(" sector ");
  if (pos == std::string_view::npos || pos == 0) {
    return false;
  }
  Cursor tail(rest.substr(pos));
  if (!tail.lit(" sector ") || !tail.u64(sector) || !tail.lit(")") || !tail.done()) {
    return false;
  }
  // The sector is in 512-byte units; physical is reported in bytes like the scrub lines.
  if (sector > std::numeric_limits<uint64_t>::max() / 512) {
    return false;
  }
  e.kind = Kind::read_repaired;
  e.ino = ino;
  e.offset = off;
  e.dev = std::string(rest.substr(0, pos));
  e.physical = sector * 512;
  return true;
}

// After "[scrub: ]fixed up error at logical " or "... unable to fixup (regular) error at
// logical ": "L on dev D[ physical P]" or "L on mirror M".
bool parse_fixup_tail(Cursor c, CsumLogEvent& e)
{
  uint64_t logical = 0;
  if (!c.u64(logical)) {
    return false;
  }
  e.logical = logical;
  if (c.lit(" on mirror ")) {
    unsigned mirror = 0;
    if (!c.u32(mirror) || !c.done()) {
      return false;
    }
    e.mirror = mirror;
    return true;
  }
  if (!c.lit(" on dev ")) {
    return false;
  }
  std::string_view rest = c.rest();
  // ≤6.3 printed no physical address; device names have no spaces, but be exact about where
  // " physical N" starts in case one does.
  size_t pos = rest.rfind(" physical ");
  if (pos != std::string_view::npos && pos > 0) {
    Cursor tail(rest.substr(pos + 10));
    uint64_t physical = 0;
    if (tail.u64(physical) && tail.done()) {
      e.dev = std::string(rest.substr(0, pos));
      e.physical = physical;
      return true;
    }
  }
  if (rest.empty()) {
    return false;
  }
  e.dev = std::string(rest);
  return true;
}

// scrub_print_common_warning()'s errstr: ≤6.3 "checksum error", "i/o error",
// "checksum/header error"; 6.4+ "header error", and "generation error" in the newer scrub.
constexpr std::array<std::string_view, 5> k_scrub_errors = {
  "checksum error", "i/o error", "checksum/header error", "header error", "generation error"};

// "<err> at logical L on dev D, physical P" followed by one of
//   "[,] root R[,] inode I[,] offset O[,] length N[,] links K (path: PATH)"
//   "[,] root R[,] inode I[,] offset O: path resolving failed with ret=N|-ESYMBOL"
//   ": metadata leaf|node (level N) in tree T"
// (fs/btrfs/scrub.c scrub_print_warning_inode(); the "scrub: " prefix came with 6.16 and the
// comma-less form after it; %pe for the error code may come with 7.3, d34a3a8ba61e.)
bool parse_scrub_error(Cursor c, CsumLogEvent& e)
{
  std::string_view err;
  for (auto candidate : k_scrub_errors) {
    Cursor probe = c;
    if (probe.lit(candidate) && probe.lit(" at logical ")) {
      err = candidate;
      c = probe;
      break;
    }
  }
  uint64_t logical = 0, physical = 0;
  std::string_view dev;
  if (err.empty() || !c.u64(logical) || !c.lit(" on dev ") || !c.until(", physical ", dev) ||
      !c.u64(physical)) {
    return false;
  }
  e.kind = Kind::scrub_error;
  e.error_kind = std::string(err);
  e.logical = logical;
  e.dev = std::string(dev);
  e.physical = physical;

  if (c.lit(": metadata ")) {
    std::string_view what;
    unsigned level = 0;
    uint64_t tree = 0;
    if (!c.until(" (level ", what) || (what != "leaf" && what != "node") || !c.u32(level) ||
        !c.lit(") in tree ") || !c.u64(tree) || !c.done() ||
        tree > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return false;
    }
    e.root = static_cast<int64_t>(tree);
    return true;
  }

  // The separator style is decided by the first one and must hold for the whole line.
  std::string_view sep = c.rest().starts_with(", ") ? ", " : " ";
  int64_t root = 0;
  uint64_t ino = 0, off = 0;
  if (!c.lit(sep) || !c.lit("root ") || !c.i64(root) || !c.lit(sep) || !c.lit("inode ") ||
      !c.u64(ino) || !c.lit(sep) || !c.lit("offset ") || !c.u64(off)) {
    return false;
  }
  e.root = root;
  e.ino = ino;
  e.offset = off;
  if (c.lit(": path resolving failed with ret=")) {
    std::string ret;
    if (!c.error_code(ret) || !c.done()) {
      return false;
    }
    e.path_error = std::move(ret);
    return true;
  }
  uint64_t length = 0, links = 0;
  if (!c.lit(sep) || !c.lit("length ") || !c.u64(length) || !c.lit(sep) || !c.lit("links ") ||
      !c.u64(links) || !c.lit(" (path: ")) {
    return false;
  }
  std::string_view path = c.rest();
  if (path.size() < 2 || path.back() != ')') {
    return false;
  }
  e.path = std::string(path.substr(0, path.size() - 1));
  return true;
}

bool parse_body(Cursor c, CsumLogEvent& e)
{
  if (c.rest().starts_with("csum failed ")) {
    return parse_read_failed(c, e);
  }
  if (c.rest().starts_with("bdev ")) {
    return parse_dev_stats(c, e);
  }
  if (c.rest().starts_with("read error corrected: ")) {
    return parse_read_repaired(c, e);
  }
  // The scrub messages got a "scrub: " prefix in 6.16 (docs/kernel-facts.md "Re-checked
  // 2026-12-02").
  c.lit("scrub: ");
  if (c.lit("fixed up error at logical ")) {
    e.kind = Kind::scrub_fixed;
    return parse_fixup_tail(c, e);
  }
  if (c.lit("unable to fixup (regular) error at logical ")) {
    e.kind = Kind::scrub_unfixable;
    return parse_fixup_tail(c, e);
  }
  return parse_scrub_error(c, e);
}

constexpr std::array<std::string_view, 8> k_levels = {"emergency", "alert",  "critical", "error",
                                                      "warning",   "notice", "info",     "debug"};

// "BTRFS <level> (device <dev>[ state <LETTERS>]): " (btrfs_printk() / _btrfs_printk()).
bool parse_message(std::string_view msg, CsumLogEvent& e)
{
  Cursor c(msg);
  std::string_view level, tag;
  if (!c.lit("BTRFS ") || !c.until(" (device ", level) || !c.until("): ", tag)) {
    return false;
  }
  bool known_level = false;
  for (auto l : k_levels) {
    known_level = known_level || l == level;
  }
  if (!known_level) {
    return false;
  }
  std::string_view device = tag;
  size_t st = tag.find(" state ");
  if (st != std::string_view::npos) {
    std::string_view letters = tag.substr(st + 7);
    if (letters.empty()) {
      return false;
    }
    for (char ch : letters) {
      if (ch < 'A' || ch > 'Z') {
        return false;
      }
    }
    device = tag.substr(0, st);
  }
  if (device.empty()) {
    return false;
  }
  for (char ch : device) {
    if (ch == ' ' || ch == '(' || ch == ')' || static_cast<unsigned char>(ch) < 0x20) {
      return false;
    }
  }
  e.level = std::string(level);
  e.device = std::string(device);
  return parse_body(c, e);
}

// /dev/kmsg: "PRI,SEQ,USEC,FLAG[,more...];message", possibly followed by "\n KEY=value" lines.
std::optional<std::string_view> strip_kmsg(std::string_view line)
{
  Cursor c(line);
  uint64_t n = 0;
  if (!c.u64(n) || !c.lit(",") || !c.u64(n) || !c.lit(",") || !c.u64(n) || !c.lit(",")) {
    return std::nullopt;
  }
  std::string_view rest = c.rest();
  if (rest.empty() || (rest[0] != '-' && rest[0] != 'c' && rest[0] != '+')) {
    return std::nullopt;
  }
  rest.remove_prefix(1);
  size_t semi = rest.find(';');
  if (semi == std::string_view::npos || (semi > 0 && rest[0] != ',') ||
      rest.substr(0, semi).find('\n') != std::string_view::npos) {
    return std::nullopt;
  }
  rest.remove_prefix(semi + 1);
  return rest.substr(0, rest.find('\n'));
}

// dmesg: "[  12.345678] " and, with CONFIG_PRINTK_CALLER, "[    T123] " after it.
std::optional<std::string_view> strip_dmesg(std::string_view line)
{
  Cursor c(line);
  uint64_t n = 0;
  if (!c.lit("[")) {
    return std::nullopt;
  }
  while (c.lit(" ")) {
  }
  if (!c.u64(n) || !c.lit(".") || !c.u64(n) || !c.lit("] ")) {
    return std::nullopt;
  }
  Cursor caller = c;
  if (caller.lit("[")) {
    while (caller.lit(" ")) {
    }
    if ((caller.lit("T") || caller.lit("C")) && caller.u64(n) && caller.lit("] ")) {
      c = caller;
    }
  }
  return c.rest();
}
} // namespace

std::optional<CsumLogEvent> parse_kernel_log_line(std::string_view line)
{
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ' ||
                           line.back() == '\t')) {
    line.remove_suffix(1);
  }
  std::string_view msg = line;
  if (!line.empty() && is_digit(line[0])) {
    auto m = strip_kmsg(line);
    if (!m) {
      return std::nullopt;
    }
    msg = *m;
  } else if (line.starts_with("[")) {
    auto m = strip_dmesg(line);
    if (!m) {
      return std::nullopt;
    }
    msg = *m;
  }
  if (msg.find('\n') != std::string_view::npos) {
    return std::nullopt;
  }
  CsumLogEvent e;
  if (!parse_message(msg, e)) {
    return std::nullopt;
  }
  return e;
}

namespace {

bool is_uuid(std::string_view u)
{
  if (u.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < u.size(); ++i) {
    const char c = u[i];
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !(is_digit(c) || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

bool plain_name(std::string_view n)
{
  if (n.empty()) {
    return false;
  }
  for (char ch : n) {
    if (ch == ' ' || ch == '(' || ch == ')' || ch == '/' || static_cast<unsigned char>(ch) < 0x20) {
      return false;
    }
  }
  return true;
}

std::string_view message_of(std::string_view line)
{
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) {
    line.remove_suffix(1);
  }
  if (!line.empty() && is_digit(line[0])) {
    return strip_kmsg(line).value_or(std::string_view{});
  }
  if (line.starts_with("[")) {
    return strip_dmesg(line).value_or(std::string_view{});
  }
  return line;
}

} // namespace

std::optional<DeviceFsid> parse_device_fsid_line(std::string_view line)
{
  const std::string_view msg = message_of(line);
  Cursor c(msg);
  std::string_view fsid, rest;
  // fs/btrfs/volumes.c device_list_add(): "BTRFS: device fsid %pU devid %llu transid %llu %s
  // scanned by %s (%d)" (6.8+ print "%s (%d:%d)" for the path).
  if (c.lit("BTRFS: device fsid ")) {
    if (!c.until(" devid ", fsid) || !is_uuid(fsid)) {
      return std::nullopt;
    }
    rest = c.rest();
    const size_t dev = rest.find(" /dev/");
    const size_t scanned = rest.find(" scanned by ");
    if (dev == std::string_view::npos || scanned == std::string_view::npos || scanned < dev) {
      return std::nullopt;
    }
    std::string_view path = rest.substr(dev + 6, scanned - dev - 6);
    if (const size_t sp = path.find(' '); sp != std::string_view::npos) {
      path = path.substr(0, sp); // "(7:17)" follows on 6.8+
    }
    if (!plain_name(path)) {
      return std::nullopt;
    }
    return DeviceFsid{std::string(path), std::string(fsid)};
  }
  // fs/btrfs/disk-io.c open_ctree() (6.8+): "first mount of filesystem %pU".
  std::string_view level, tag;
  if (!c.lit("BTRFS ") || !c.until(" (device ", level) || !c.until("): ", tag) ||
      !c.lit("first mount of filesystem ")) {
    return std::nullopt;
  }
  fsid = c.rest();
  if (const size_t st = tag.find(" state "); st != std::string_view::npos) {
    tag = tag.substr(0, st);
  }
  if (!is_uuid(fsid) || !plain_name(tag)) {
    return std::nullopt;
  }
  return DeviceFsid{std::string(tag), std::string(fsid)};
}

const char* kind_name(CsumLogEvent::Kind kind)
{
  // In the order of the enumerators.
  static const char* const names[] = {"read-csum-failed", "scrub-error",   "scrub-fixed",
                                      "scrub-unfixable",  "read-repaired", "dev-stats"};
  const auto i = static_cast<size_t>(kind);
  return i < std::size(names) ? names[i] : "unknown";
}

} // namespace vmcsum::core
