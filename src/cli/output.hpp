// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <vmcsum/report/json.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string_view>

#include <cstdio>
#include <string>
#include <vector>

namespace vmcsum::cli {

// Exit status of every command (README "Exit status", man page EXIT STATUS).
namespace exit_code {
constexpr int clean = 0;      // nothing to report
constexpr int warnings = 1;   // warnings, or facts that could not be learnt
constexpr int critical = 2;   // critical findings (data at risk or damaged)
constexpr int incomplete = 3; // could not complete for some path
constexpr int usage = 64;     // EX_USAGE
// Interrupted by a signal: 128 + its number (SIGINT 130, SIGTERM 143), as shells report it.
constexpr int interrupted = 128;
} // namespace exit_code

// The schema of each --json document, one place: the commands write them, `--json --version`
// lists them (tests/schema/ holds one file per name; a change that is not additive bumps it).
namespace schema_id {
constexpr const char* audit = "vmcsum.audit/1";
constexpr const char* bench = "vmcsum.bench/1";
constexpr const char* probe = "vmcsum.probe/1";
constexpr const char* record = "vmcsum.record/1";
constexpr const char* repair = "vmcsum.repair/1";
constexpr const char* scrub = "vmcsum.scrub/2";
constexpr const char* set = "vmcsum.set/1";
constexpr const char* show = "vmcsum.show/1";
constexpr const char* error = "vmcsum.error/1";
constexpr const char* version = "vmcsum.version/1";
} // namespace schema_id

struct GlobalOptions
{
  bool json = false;
  // --json[=pretty|short]: "short" prints the document on one line (systemd's spelling).
  std::string json_style;
  std::string color = "auto";
  int verbose = 0;
  bool quiet = false;
  // vmcsum's own records (kernel record of each filesystem, scrub and repair outcomes):
  // --state-dir, else $VMCSUM_STATE_DIR, else /var/lib/vmcsum.
  std::string state_dir;
  // Tables (lsblk's spellings): -o/--output COLUMNS picks and orders columns, --no-headings
  // drops the heading row, --bytes prints sizes as raw byte counts (btrfs-progs' --raw).
  std::string columns;
  bool no_headings = false;
  bool raw_bytes = false;
};

// A usage error found after parsing (an unknown -o column): exit 64 like a parse error.
class UsageError : public std::runtime_error
{
public:
  using std::runtime_error::runtime_error;
};

enum class Style { plain, bold, dim, red, yellow, green, cyan };

// Everything a command writes goes through here: the document on stdout, diagnostics on stderr.
class Output
{
public:
  explicit Output(const GlobalOptions& opts);

  const GlobalOptions& options() const { return m_opts; }
  bool color() const { return m_color_out; }
  std::string paint(const std::string& text, Style style) const;
  std::string paint_err(const std::string& text, Style style) const;

  // A diagnostic on stderr ("vmcsum: warning: ..."), suppressed by -q.
  void warn(const std::string& message) const;
  void error(const std::string& message) const;
  void info(const std::string& message) const; // only with -v
  // Worth reading but no warning (the exit status does not count it): "vmcsum: note: ...".
  void note(const std::string& message) const;

  // Writes one JSON document to stdout. Invalid UTF-8 cannot reach it (names are escaped
  // upstream), but replace rather than throw if something slips through. By value: a document
  // handed over is moved into the head, not copied (a deep copy was 10% of an audit of 1000
  // images).
  void emit_json(nlohmann::ordered_json doc) const;
  // The same with one array written element by element (see StreamedArray).
  void emit_json(nlohmann::ordered_json doc, const struct StreamedArray& array) const;
  void print(const std::string& text) const;
  // Text around a table (its caption, the details and summary after it): as print(), but not
  // with --no-headings, which leaves only the rows for a script to read (as systemctl's
  // --no-legend drops headings and footer).
  void print_legend(const std::string& text) const;

  // A size for a table cell: "1.50GiB", or "1610612736" with --bytes.
  std::string size(uint64_t bytes) const;
  // The width tables must fit, 0 for no limit: on a terminal, COLUMNS when it is a positive
  // number, else the terminal's own (TIOCGWINSZ); when stdout is not a terminal, no limit
  // (full rows for scripts and pagers, as systemctl does).
  size_t width() const;

private:
  GlobalOptions m_opts;
  bool m_color_out = false;
  bool m_color_err = false;
};

// The one interruption contract (sys/signals.hpp): once a stop signal arrived, the exit status
// is 128 + that signal whatever the command found.
int interrupted_status(int status);

// The head every document starts with, whatever the command (also vmcsum.error/1): "schema"
// first, then "vmcsum_version", "hostname" and "generated_at" (RFC 3339, UTC), then the rest.
// The document's values are moved, not copied.
nlohmann::ordered_json with_document_head(nlohmann::ordered_json doc);

// One document as text: two-space indentation, or one line for --json=short.
std::string dump_document(const nlohmann::ordered_json& doc, bool short_form);

// A top-level array made one element at a time while the document is written: the document
// holds `key` (an empty array, where it belongs in the key order) and `element(i)` gives the
// elements 0 to size-1 (called from two threads at once for a large array). The elements of a
// large array (audit's images: 1000 images, 1 MB) are then never all in memory at once as JSON
// values, and the text is never one string: as one tree and one string they cost an audit of
// 1000 images 20 ms, most of it in page faults.
struct StreamedArray
{
  std::string key;
  size_t size = 0;
  std::function<nlohmann::ordered_json(size_t)> element;
};

// Writes `doc` as dump_document() does, with `array` (when given) filled in, and a newline, to
// `out` in pieces of a few dozen KiB. Not all or nothing: an element that throws once the first
// piece is out leaves the document cut short (only memory exhaustion makes to_json throw), and
// document_cut_short(out) says so from then on.
void write_document(std::ostream& out, const nlohmann::ordered_json& doc, bool short_form,
                    const StreamedArray* array = nullptr);

// Whether a document written to `out` was cut short: no other document may follow it there (a
// reader would take the two for one broken document), so the error goes to stderr only.
bool document_cut_short(const std::ostream& out);
// The errno of the first write to stdout that failed (Output's), 0 if none did.
int stdout_error();

// The tail of every document: "interrupted" (a stop signal arrived; the document then holds
// what was done before it) and "exit_code". Without `interrupted`, whether a stop signal
// arrived in this process (commands that poll sys::stop_requested()); probe and bench, which
// defer signals around their clean-up, say it from their result.
void document_tail(nlohmann::ordered_json& doc, int status);
void document_tail(nlohmann::ordered_json& doc, int status, bool interrupted);

// "vmcsum: error: interrupted by signal N" on stderr when a stop signal arrived (the one
// recorded by sys/signals, or `sig` when given and not 0).
void report_interrupted(const Output& out);
void report_interrupted(const Output& out, int sig);

// A file in a table's PATH column: its canonical path (absolute, symlinks resolved; what
// audit finds and what documents call canonical_path), so every command names a file the
// same way whatever directory it ran from; resolved from `given` when not known; escaped.
std::string table_path(const std::string& canonical, const std::string& given);

// JSON shapes of the core (report/json.hpp) the documents here are assembled from.
using core::json_or_null;
using core::put_identity;

// Whether to colour a stream: --color=always/never win; auto means a TTY and no NO_COLOR.
bool use_color(const std::string& mode, int fd);

// Columns of the terminal on `fd`: COLUMNS when it is a positive number, else TIOCGWINSZ;
// 0 when neither answers.
size_t terminal_width(int fd);

// Display width of a cell: code points, ANSI colour escapes excluded.
size_t display_width(std::string_view s);

// `s` cut to `width` columns with "…" in the middle, as systemctl shortens unit paths: both
// ends of a path say most (the directory and the file name). Escapes are not expected here.
std::string ellipsize_middle(std::string_view s, size_t width);

// The names -o accepts: the column headings, in any case ("path,size" or "PATH,SIZE").
// Throws UsageError for a name none of `headings` has, listing those it has.
std::vector<std::string> parse_columns(const std::string& spec,
                                       const std::vector<std::string>& headings);

// How a table is laid out: which columns in which order (empty: all), a heading row or not,
// and the width to fit (0: no limit).
struct TableLayout
{
  std::vector<std::string> columns;
  bool headings = true;
  size_t width = 0;
};

// A plain text table with left-aligned columns sized to their widest cell; ANSI escapes in
// cells do not count towards width. To fit a width, the PATH/MOUNT/BACKUP columns are cut in
// its middle first (down to 24 columns), then the rightmost other columns are left out and
// a last line names them: a row never wraps.
class Table
{
public:
  explicit Table(std::vector<std::string> header)
    : m_header(std::move(header))
  {
  }
  void add(std::vector<std::string> row) { m_rows.push_back(std::move(row)); }
  bool empty() const { return m_rows.empty(); }
  const std::vector<std::string>& header() const { return m_header; }
  // With the global options (-o, --no-headings) and the terminal width.
  std::string render(const Output& out) const;
  // With an explicit layout, headings painted by `bold` (unit tests pass an identity).
  std::string render(const TableLayout& layout,
                     const std::function<std::string(const std::string&)>& bold) const;

private:
  std::vector<std::string> m_header;
  std::vector<std::vector<std::string>> m_rows;
};

// Checks -o against the headings of every table a command can print, before it starts work.
void check_columns(const Output& out, const std::vector<std::vector<std::string>>& tables);

} // namespace vmcsum::cli
