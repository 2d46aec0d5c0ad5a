// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "output.hpp"

#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/signals.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <iostream>
#include <new>
#include <ostream>
#include <thread>
#include <vector>

#include <sys/ioctl.h>
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

} // namespace

size_t display_width(std::string_view s)
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

std::string ellipsize_middle(std::string_view s, size_t width)
{
  const size_t have = display_width(s);
  if (have <= width) {
    return std::string(s);
  }
  if (width == 0) {
    return "";
  }
  // Byte offset of code point `n` (continuation bytes belong to the code point before them).
  auto offset_of = [&](size_t n) {
    size_t i = 0;
    for (size_t seen = 0; i < s.size(); ++i) {
      if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && seen++ == n) {
        break;
      }
    }
    return i;
  };
  const size_t keep = width - 1; // one column for the ellipsis
  const size_t head = (keep + 1) / 2;
  const size_t tail = keep - head;
  return std::string(s.substr(0, offset_of(head))) + "\u2026" +
         std::string(s.substr(offset_of(have - tail)));
}

namespace {
std::string fold(std::string name)
{
  for (char& c : name) {
    c = c == ' ' ? '-' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

// "path,size" -> {"PATH", "SIZE"}: the names of a -o list, empty ones skipped.
std::vector<std::string> split_names(const std::string& spec)
{
  std::vector<std::string> names;
  size_t start = 0;
  while (start <= spec.size()) {
    const size_t comma = spec.find(',', start);
    std::string name = fold(spec.substr(start, comma - start));
    start = comma == std::string::npos ? spec.size() + 1 : comma + 1;
    if (!name.empty()) {
      names.push_back(std::move(name));
    }
  }
  return names;
}

bool elastic(const std::string& heading)
{
  return heading == "PATH" || heading == "MOUNT" || heading == "BACKUP";
}

// Narrowest an elastic column is shortened to: a path cut shorter says nothing.
constexpr size_t min_elastic = 24;
} // namespace

std::vector<std::string> parse_columns(const std::string& spec,
                                       const std::vector<std::string>& headings)
{
  std::vector<std::string> picked = split_names(spec);
  for (const auto& name : picked) {
    bool known = false;
    for (const auto& h : headings) {
      known = known || fold(h) == name;
    }
    if (!known) {
      std::string list;
      for (const auto& h : headings) {
        list += (list.empty() ? "" : ",") + fold(h);
      }
      throw UsageError("-o/--output: no column '" + name + "' here; the columns are " + list);
    }
  }
  return picked;
}

void check_columns(const Output& out, const std::vector<std::vector<std::string>>& tables)
{
  if (out.options().columns.empty() || out.options().json) {
    return;
  }
  std::vector<std::string> all;
  for (const auto& t : tables) {
    all.insert(all.end(), t.begin(), t.end());
  }
  parse_columns(out.options().columns, all);
}

std::string Output::size(uint64_t bytes) const
{
  return m_opts.raw_bytes ? std::to_string(bytes) : core::human_bytes(bytes);
}

size_t terminal_width(int fd)
{
  if (const char* env = std::getenv("COLUMNS")) {
    char* end = nullptr;
    const unsigned long n = std::strtoul(env, &end, 10);
    if (end != env && *end == '\0' && n > 0 && n < 100000) {
      return n;
    }
  }
  struct winsize ws = {};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    return ws.ws_col;
  }
  return 0;
}

size_t Output::width() const
{
  return ::isatty(STDOUT_FILENO) == 1 ? terminal_width(STDOUT_FILENO) : 0;
}

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
    std::cerr << "vmcsum: " << paint_err("warning", Style::yellow) << ": "
              << core::printable(message) << '\n';
  }
}

void Output::error(const std::string& message) const
{
  std::cerr << "vmcsum: " << paint_err("error", Style::red) << ": " << core::printable(message)
            << '\n';
}

void Output::note(const std::string& message) const
{
  if (!m_opts.quiet) {
    std::cerr << "vmcsum: note: " << core::printable(message) << '\n';
  }
}

void Output::info(const std::string& message) const
{
  if (m_opts.verbose > 0 && !m_opts.quiet) {
    std::cerr << "vmcsum: " << core::printable(message) << '\n';
  }
}

namespace {
std::atomic<int> g_stdout_errno{0};

// Keeps the errno of the first failed write to stdout: by the end of the run errno is another's.
void keep_stdout_errno()
{
  if (!std::cout.good() && g_stdout_errno.load() == 0) {
    g_stdout_errno.store(errno != 0 ? errno : EIO);
  }
}
} // namespace

int stdout_error()
{
  return g_stdout_errno.load();
}

void Output::emit_json(nlohmann::ordered_json doc) const
{
  write_document(std::cout, with_document_head(std::move(doc)), m_opts.json_style == "short");
  keep_stdout_errno();
}

void Output::emit_json(nlohmann::ordered_json doc, const StreamedArray& array) const
{
  write_document(std::cout, with_document_head(std::move(doc)), m_opts.json_style == "short",
                 &array);
  keep_stdout_errno();
}

nlohmann::ordered_json with_document_head(nlohmann::ordered_json doc)
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
  auto& head_items = head.get_ref<nlohmann::ordered_json::object_t&>();
  // Reserved: growth would copy every value moved in so far (the pairs' keys are const).
  head_items.reserve(head_items.size() + doc.size());
  for (auto& [key, value] : doc.get_ref<nlohmann::ordered_json::object_t&>()) {
    if (!head.contains(key)) {
      head_items.emplace(key, std::move(value));
    }
  }
  return head;
}

std::string dump_document(const nlohmann::ordered_json& doc, bool short_form)
{
  return doc.dump(short_form ? -1 : 2, ' ', false,
                  nlohmann::ordered_json::error_handler_t::replace);
}

namespace {

// The text nlohmann's dump() makes, made in pieces: a value at `depth` (the document is 0) is
// dumped on its own and indented by two spaces a level after each line break (a line break
// inside a JSON string is written as \n, so every raw one is the layout's).
class DocumentWriter
{
public:
  // Without `out`, the text is kept (take()).
  DocumentWriter(std::ostream* out, bool short_form)
    : m_out(out)
    , m_short(short_form)
  {
    m_buf.reserve(k_piece + k_piece / 2);
  }

  void text(std::string_view s)
  {
    m_buf.append(s);
    if (m_buf.size() >= k_piece && m_out) {
      flush();
    }
  }
  // The elements [from, to) of `array` at depth 2, each after a comma (the first too, unless
  // `from` is 0).
  void elements(const StreamedArray& array, size_t from, size_t to)
  {
    for (size_t i = from; i < to; ++i) {
      text(i == 0 ? "" : ",");
      line_break(2);
      value(array.element(i), 2);
      if (!m_out && i == from) {
        // Kept in memory: room for them all, judged by the first (and an eighth more), so
        // that the text is not copied into ever larger buffers, each a fresh mapping paid for
        // in page faults (audit's 1000 images: the second thread took 4.5 ms to make its half
        // instead of 1.3). At most 16 MiB ahead: a large first element says little. Only a
        // speed-up: refused memory (overcommit off, ulimit -v) is no reason to fail.
        const size_t rest = (to - from - 1) * (m_buf.size() + m_buf.size() / 8);
        try {
          m_buf.reserve(m_buf.size() + std::min(rest, size_t(16) << 20));
        } catch (const std::bad_alloc&) {
        }
      }
    }
  }
  std::string take() { return std::move(m_buf); }
  void line_break(unsigned depth)
  {
    if (!m_short) {
      m_buf.push_back('\n');
      m_buf.append(2 * depth, ' ');
    }
  }
  void value(const nlohmann::ordered_json& v, unsigned depth)
  {
    const std::string s =
      v.dump(m_short ? -1 : 2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    if (m_short || depth == 0) {
      text(s);
      return;
    }
    size_t from = 0;
    for (size_t nl = s.find('\n'); nl != std::string::npos; nl = s.find('\n', from)) {
      m_buf.append(s, from, nl - from);
      line_break(depth); // the line's own indentation follows, from `s`
      from = nl + 1;
    }
    text(std::string_view(s).substr(from));
  }
  void flush()
  {
    m_out->write(m_buf.data(), static_cast<std::streamsize>(m_buf.size()));
    m_wrote = m_wrote || !m_buf.empty();
    m_buf.clear();
  }
  bool wrote() const { return m_wrote; } // some of the document is out

private:
  static constexpr size_t k_piece = 64 * 1024;
  std::ostream* m_out;
  bool m_short;
  std::string m_buf;
  bool m_wrote = false;
};

// The stream a document was cut short on (write_document), if any: only stdout in practice.
std::atomic<const std::ostream*> g_cut_short{nullptr};

void write_pieces(DocumentWriter& w, std::ostream& out, const nlohmann::ordered_json& doc,
                  bool short_form, const StreamedArray* array)
{
  // From this many elements on, two threads make them: audit's 1000 images took 11 ms on one.
  constexpr size_t k_two_threads = 256;
  w.text("{");
  bool first = true;
  for (const auto& [key, value] : doc.items()) {
    w.text(first ? "" : ",");
    first = false;
    w.line_break(1);
    w.value(nlohmann::ordered_json(key), 1);
    w.text(short_form ? ":" : ": ");
    if (!array || key != array->key || array->size == 0) {
      w.value(value, 1);
      continue;
    }
    w.text("[");
    if (array->size < k_two_threads) {
      w.elements(*array, 0, array->size);
    } else {
      // The second half made on a second thread (into memory) while this one writes the first.
      const size_t half = array->size / 2;
      std::string second;
      std::exception_ptr error;
      std::vector<std::thread> helper;
      const auto make_second = [&] {
        try {
          DocumentWriter kept(nullptr, short_form);
          kept.elements(*array, half, array->size);
          second = kept.take();
        } catch (...) {
          error = std::current_exception();
        }
      };
      if (sys::start_threads(helper, 1, make_second) == 0) {
        // No thread to be had (RLIMIT_NPROC, a pids cgroup): this one makes them all.
        w.elements(*array, 0, array->size);
      } else {
        try {
          w.elements(*array, 0, half);
        } catch (...) {
          helper[0].join();
          throw;
        }
        helper[0].join();
        if (error) {
          std::rethrow_exception(error);
        }
        w.flush();
        out.write(second.data(), static_cast<std::streamsize>(second.size()));
      }
    }
    w.line_break(1);
    w.text("]");
  }
  w.line_break(0);
  w.text("}\n");
  w.flush();
  out.flush();
}

} // namespace

bool document_cut_short(const std::ostream& out)
{
  return g_cut_short.load() == &out;
}

void write_document(std::ostream& out, const nlohmann::ordered_json& doc, bool short_form,
                    const StreamedArray* array)
{
  if (!doc.is_object() || doc.empty()) {
    out << dump_document(doc, short_form) << '\n';
    out.flush();
    return;
  }
  DocumentWriter w(&out, short_form);
  try {
    write_pieces(w, out, doc, short_form, array);
  } catch (...) {
    if (w.wrote()) {
      g_cut_short.store(&out);
    }
    throw;
  }
}

void Output::print(const std::string& text) const
{
  std::cout << text;
  std::cout.flush();
  keep_stdout_errno();
}

void Output::print_legend(const std::string& text) const
{
  if (!m_opts.no_headings) {
    print(text);
  }
}

int interrupted_status(int status)
{
  const int sig = sys::stop_signal();
  return sig != 0 ? exit_code::interrupted + sig : status;
}

void document_tail(nlohmann::ordered_json& doc, int status, bool interrupted)
{
  doc["interrupted"] = interrupted;
  doc["exit_code"] = status;
}

void document_tail(nlohmann::ordered_json& doc, int status)
{
  document_tail(doc, status, sys::stop_requested());
}

void report_interrupted(const Output& out, int sig)
{
  if (sig != 0) {
    out.error("interrupted by signal " + std::to_string(sig));
  }
}

void report_interrupted(const Output& out)
{
  report_interrupted(out, sys::stop_signal());
}

std::string table_path(const std::string& canonical, const std::string& given)
{
  return core::escape_name(canonical.empty() ? sys::canonical_path(given) : canonical);
}

std::string Table::render(const Output& out) const
{
  TableLayout layout;
  layout.headings = !out.options().no_headings;
  layout.width = out.width();
  // check_columns() already refused names no table of the command has; a name only another
  // table of the same command has is left out of this one.
  for (const auto& name : split_names(out.options().columns)) {
    for (const auto& h : m_header) {
      if (fold(h) == name) {
        layout.columns.push_back(name);
      }
    }
  }
  return render(layout, [&](const std::string& h) { return out.paint(h, Style::bold); });
}

std::string Table::render(const TableLayout& layout,
                          const std::function<std::string(const std::string&)>& bold) const
{
  std::vector<size_t> cols; // indices into m_header, in display order
  for (const auto& name : layout.columns) {
    for (size_t c = 0; c < m_header.size(); ++c) {
      if (fold(m_header[c]) == name) {
        cols.push_back(c);
      }
    }
  }
  if (cols.empty()) {
    for (size_t c = 0; c < m_header.size(); ++c) {
      cols.push_back(c);
    }
  }
  auto cell = [](const std::vector<std::string>& row, size_t c) {
    return c < row.size() ? row[c] : std::string();
  };
  std::vector<size_t> widths(m_header.size(), 0);
  for (size_t c : cols) {
    widths[c] = layout.headings ? display_width(m_header[c]) : 0;
    for (const auto& r : m_rows) {
      widths[c] = std::max(widths[c], display_width(cell(r, c)));
    }
  }
  const std::vector<size_t> natural = widths;
  auto total = [&] {
    size_t t = 0;
    for (size_t c : cols) {
      t += widths[c];
    }
    return t + 2 * (cols.size() - 1);
  };
  std::vector<std::string> left_out;
  if (layout.width > 0) {
    // First the paths lose their middle, then the rightmost other columns go.
    for (size_t c : cols) {
      const size_t floor = std::max(min_elastic, layout.headings ? m_header[c].size() : 0);
      if (elastic(fold(m_header[c])) && total() > layout.width && widths[c] > floor) {
        widths[c] -= std::min(widths[c] - floor, total() - layout.width);
      }
    }
    for (size_t k = cols.size(); k-- > 1 && total() > layout.width;) {
      if (!elastic(fold(m_header[cols[k]]))) {
        left_out.insert(left_out.begin(), fold(m_header[cols[k]]));
        cols.erase(cols.begin() + static_cast<std::ptrdiff_t>(k));
      }
    }
    // Room the left-out columns freed goes back to the paths, up to their whole length.
    for (size_t c : cols) {
      if (elastic(fold(m_header[c])) && total() < layout.width) {
        widths[c] = std::min(natural[c], widths[c] + (layout.width - total()));
      }
    }
  }
  std::string text;
  auto line = [&](const std::vector<std::string>& row, bool header) {
    std::string l;
    for (size_t k = 0; k < cols.size(); ++k) {
      const size_t c = cols[k];
      std::string v = cell(row, c);
      if (display_width(v) > widths[c]) {
        v = ellipsize_middle(v, widths[c]);
      }
      const size_t w = display_width(v);
      l += header ? bold(v) : v;
      if (k + 1 < cols.size()) {
        l.append(widths[c] - w + 2, ' ');
      }
    }
    text += l + '\n';
  };
  if (layout.headings) {
    line(m_header, true);
  }
  for (const auto& r : m_rows) {
    line(r, false);
  }
  if (!left_out.empty()) {
    std::string names;
    for (const auto& n : left_out) {
      names += (names.empty() ? "" : ",") + n;
    }
    // Itself a row that must not wrap: cut in the middle like a path if need be.
    text += ellipsize_middle("(not shown: " + names + ")", layout.width) + "\n";
  }
  return text;
}

} // namespace vmcsum::cli
