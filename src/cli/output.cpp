// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "output.hpp"

#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/signals.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <ctime>
#include <iostream>

#include <unistd.h>

namespace vmcsum::cli {

bool use_color(const std::string& mode, int fd)
{
  if (mode == "always") {
    return true;
  }
  if (mode == "never") {
    return false;
  }
  // no-color.org: present and not empty disables colour.
  const char* no_color = std::getenv("NO_COLOR");
  if (no_color && *no_color) {
    return false;
  }
  const char* term = std::getenv("TERM");
  if (term && std::string(term) == "dumb") {
    return false;
  }
  return ::isatty(fd) == 1;
}

Output::Output(const GlobalOptions& opts)
  : m_opts(opts)
  , m_color_out(use_color(opts.color, STDOUT_FILENO))
  , m_color_err(use_color(opts.color, STDERR_FILENO))
{
}

namespace {
std::string paint_with(bool enabled, const std::string& text, Style style)
{
  if (!enabled || style == Style::plain || text.empty()) {
    return text;
  }
  const char* code = "";
  switch (style) {
  case Style::bold:
    code = "1";
    break;
  case Style::dim:
    code = "2";
    break;
  case Style::red:
    code = "1;31";
    break;
  case Style::yellow:
    code = "33";
    break;
  case Style::green:
    code = "32";
    break;
  case Style::cyan:
    code = "36";
    break;
  case Style::plain:
    break;
  }
  return std::string("\x1b[") + code + "m" + text + "\x1b[0m";
}

size_t display_width(const std::string& s)
{
  size_t width = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b') {
      while (i < s.size() && s[i] != 'm') {
        ++i;
      }
      continue;
    }
    // Count code points, not bytes: continuation bytes add no width.
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      ++width;
    }
  }
  return width;
}
} // namespace

std::string Output::paint(const std::string& text, Style style) const
{
  return paint_with(m_color_out, text, style);
}

std::string Output::paint_err(const std::string& text, Style style) const
{
  return paint_with(m_color_err, text, style);
}

void Output::warn(const std::string& message) const
{
  if (!m_opts.quiet) {
    std::cerr << "vmcsum: " << paint_err("warning", Style::yellow) << ": " << message << '\n';
  }
}

void Output::error(const std::string& message) const
{
  std::cerr << "vmcsum: " << paint_err("error", Style::red) << ": " << message << '\n';
}

void Output::info(const std::string& message) const
{
  if (m_opts.verbose > 0 && !m_opts.quiet) {
    std::cerr << "vmcsum: " << message << '\n';
  }
}

void Output::emit_json(const nlohmann::ordered_json& doc) const
{
  std::cout << dump_document(with_document_head(doc), m_opts.json_style == "short") << '\n';
  std::cout.flush();
}

nlohmann::ordered_json with_document_head(const nlohmann::ordered_json& doc)
{
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) {
    host[0] = '\0';
  }
  char when[32] = {};
  const std::time_t now = std::time(nullptr);
  struct tm utc = {};
  ::gmtime_r(&now, &utc);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &utc);
  nlohmann::ordered_json head = {{"schema", doc.value("schema", "")},
                                 {"vmcsum_version", VMCSUM_VERSION},
                                 {"hostname", core::escape_name(host)},
                                 {"generated_at", when}};
  for (const auto& [key, value] : doc.items()) {
    if (!head.contains(key)) {
      head[key] = value;
    }
  }
  return head;
}

std::string dump_document(const nlohmann::ordered_json& doc, bool short_form)
{
  return doc.dump(short_form ? -1 : 2, ' ', false,
                  nlohmann::ordered_json::error_handler_t::replace);
}

void Output::print(const std::string& text) const
{
  std::cout << text;
  std::cout.flush();
}

int interrupted_status(int status)
{
  const int sig = sys::stop_signal();
  return sig != 0 ? exit_code::interrupted + sig : status;
}

void document_tail(nlohmann::ordered_json& doc, int status)
{
  doc["interrupted"] = sys::stop_requested();
  doc["exit_code"] = status;
}

void report_interrupted(const Output& out)
{
  if (int sig = sys::stop_signal()) {
    out.error("interrupted by signal " + std::to_string(sig));
  }
}

void put_identity(nlohmann::ordered_json& j, const std::string& canonical_path,
                  const std::string& fsid, uint64_t subvolume_id, uint64_t inode)
{
  using J = nlohmann::ordered_json;
  j["canonical_path"] = canonical_path.empty() ? J(nullptr) : J(core::escape_name(canonical_path));
  j["fsid"] = fsid.empty() ? J(nullptr) : J(fsid);
  j["subvolume_id"] = subvolume_id ? J(subvolume_id) : J(nullptr);
  j["inode"] = inode ? J(inode) : J(nullptr);
}

std::string Table::render(const Output& out) const
{
  std::vector<size_t> widths(m_header.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], display_width(row[c]));
    }
  };
  measure(m_header);
  for (const auto& r : m_rows) {
    measure(r);
  }
  std::string text;
  auto line = [&](const std::vector<std::string>& row, bool header) {
    std::string l;
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      std::string cell = header ? out.paint(row[c], Style::bold) : row[c];
      l += cell;
      if (c + 1 < row.size()) {
        l.append(widths[c] - display_width(row[c]) + 2, ' ');
      }
    }
    text += l + '\n';
  };
  line(m_header, true);
  for (const auto& r : m_rows) {
    line(r, false);
  }
  return text;
}

} // namespace vmcsum::cli
