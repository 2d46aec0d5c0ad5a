// SPDX-License-Identifier: GPL-2.0-or-later
#include "cli/app.hpp"
#include "cli/interactive.hpp"

#include <vmcsum/report/text.hpp>

#include <CLI/CLI.hpp>
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace vmcsum::cli;

namespace {
std::string slurp(const std::string& path)
{
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run_args(std::vector<std::string> args)
{
  std::vector<char*> argv;
  static std::string prog = "vmcsum";
  argv.push_back(prog.data());
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  return run(static_cast<int>(argv.size()), argv.data());
}

// Every long option and subcommand name of the CLI, for the docs checks.
std::vector<std::string> cli_words()
{
  GlobalOptions g;
  Runner r;
  auto app = build_app(g, r);
  std::vector<std::string> words;
  auto add_opts = [&](const CLI::App* a) {
    for (const CLI::Option* o : a->get_options()) {
      for (const auto& name : o->get_lnames()) {
        if (name != "help") {
          words.push_back("--" + name);
        }
      }
    }
  };
  add_opts(app.get());
  for (const CLI::App* sub : app->get_subcommands({})) {
    words.push_back(sub->get_name());
    add_opts(sub);
  }
  return words;
}
} // namespace

TEST_CASE("usage errors exit 64")
{
  CHECK(run_args({}) == exit_code::usage);
  CHECK(run_args({"frobnicate"}) == exit_code::usage);
  CHECK(run_args({"show"}) == exit_code::usage);
  CHECK(run_args({"--color=sometimes", "show", "/"}) == exit_code::usage);
  CHECK(run_args({"--json=loud", "show", "/"}) == exit_code::usage);
  CHECK(run_args({"-q", "-v", "show", "/"}) == exit_code::usage);
  // "--json short": the style only after '=' (the message says so).
  CHECK(run_args({"--json", "short", "show", "/"}) == exit_code::usage);
  // A state directory is created, never its parents, and only at an absolute path.
  CHECK(run_args({"--state-dir", "relative/state", "show", "/"}) == exit_code::usage);
  CHECK(run_args({"--state-dir", "/nonexistent-vmcsum-parent/state", "show", "/"}) ==
        exit_code::usage);
  // `--undo --force BACKUP`: --undo takes the word after it; the message names the order.
  CHECK(run_args({"repair", "--undo", "--force", "/nonexistent.vmcsum-backup"}) ==
        exit_code::usage);
  // A release the kernel record could not read back (kernel_record.hpp: record_word_ok).
  for (const char* cmd : {"audit", "scrub", "record"}) {
    CAPTURE(std::string(cmd));
    CHECK(run_args({cmd, "--kernel-release", "6.8.0 custom", "/nonexistent"}) == exit_code::usage);
    CHECK(run_args({cmd, "--kernel-release", "", "/nonexistent"}) == exit_code::usage);
  }
}

TEST_CASE("rates: lowercase suffixes are powers of 1024 too")
{
  CHECK(parse_rate("100m", "--limit-rate") == 100ull << 20);
  CHECK(parse_rate("100M", "--limit-rate") == 100ull << 20);
  CHECK(parse_rate("2g", "--limit-rate") == 2ull << 30);
  CHECK(parse_rate("64k", "--limit-rate") == 64ull << 10);
  CHECK_THROWS(parse_rate("5x", "--limit-rate"));
  // Never 0 (no limit) for a tiny rate, never a double past 2^64 converted (undefined behaviour).
  CHECK(parse_rate("1", "--limit-rate") == 1);
  CHECK(parse_rate("1.5k", "--limit-rate") == 1536);
  for (const char* bad : {"0", "-1m", "0.5", "nan", "inf", "1e30", "1e19", "8589934592g"}) {
    CAPTURE(std::string(bad));
    CHECK_THROWS_AS(parse_rate(bad, "--limit-rate"), CLI::ValidationError);
  }
}

TEST_CASE("every document starts with schema, then who wrote it, where and when")
{
  const nlohmann::ordered_json doc = with_document_head({{"schema", "vmcsum.x/1"}, {"a", 1}});
  std::vector<std::string> keys;
  for (const auto& [k, v] : doc.items()) {
    keys.push_back(k);
  }
  CHECK(keys ==
        std::vector<std::string>{"schema", "vmcsum_version", "hostname", "generated_at", "a"});
  const std::string when = doc["generated_at"].get<std::string>();
  CHECK(when.size() == 20);
  CHECK(when[10] == 'T');
  CHECK(when.back() == 'Z');
  CHECK(dump_document(doc, true).find('\n') == std::string::npos);
  CHECK(dump_document(doc, false).find("\n  \"vmcsum_version\"") != std::string::npos);
}

TEST_CASE("a document written in pieces is the text dump_document() makes")
{
  using Json = nlohmann::ordered_json;
  const Json element = {{"path", "/a\nb \"c\""},
                        {"n", 1},
                        {"none", nullptr},
                        {"empty", Json::array()},
                        {"nested", {{"x", Json::array({1, 2, {{"y", Json::object()}}})}}}};
  for (size_t n : {0, 1, 3, 2000}) {
    Json whole = {{"schema", "vmcsum.x/1"}, {"images", Json::array()}, {"notes", {"a", "b"}}};
    Json streamed = whole;
    for (size_t i = 0; i < n; ++i) {
      Json e = element;
      e["n"] = i;
      whole["images"].push_back(e);
    }
    const StreamedArray array{"images", n, [&](size_t i) {
                                Json e = element;
                                e["n"] = i;
                                return e;
                              }};
    for (bool short_form : {false, true}) {
      CAPTURE(n);
      CAPTURE(short_form);
      std::ostringstream out;
      write_document(out, streamed, short_form, &array);
      CHECK(out.str() == dump_document(whole, short_form) + "\n");
      std::ostringstream plain;
      write_document(plain, whole, short_form);
      CHECK(plain.str() == dump_document(whole, short_form) + "\n");
    }
  }
  // Names that are not UTF-8 are escaped upstream; what slips through is replaced, as by
  // dump_document().
  const Json bad = {{"k", std::string("\xff")}};
  std::ostringstream out;
  write_document(out, bad, false);
  CHECK(out.str() == dump_document(bad, false) + "\n");
}

TEST_CASE("a document cut short is known as such; one that failed before any of it was out is not")
{
  using Json = nlohmann::ordered_json;
  const Json doc = {{"schema", "vmcsum.x/1"}, {"images", Json::array()}};
  auto throwing_at = [](size_t at) {
    return StreamedArray{"images", 100, [at](size_t i) -> Json {
                           if (i == at) {
                             throw std::bad_alloc();
                           }
                           return {{"path", std::string(2048, 'x')}};
                         }};
  };
  std::ostringstream late, early, whole;
  const auto at_50 = throwing_at(50); // 100 KiB made before it: pieces of 64 KiB are out
  CHECK_THROWS_AS(write_document(late, doc, false, &at_50), std::bad_alloc);
  CHECK_FALSE(late.str().empty());
  CHECK(document_cut_short(late));
  const auto at_0 = throwing_at(0);
  CHECK_THROWS_AS(write_document(early, doc, false, &at_0), std::bad_alloc);
  CHECK(early.str().empty());
  CHECK_FALSE(document_cut_short(early));
  const auto never = throwing_at(100);
  write_document(whole, doc, false, &never);
  CHECK_FALSE(document_cut_short(whole));
  CHECK(nlohmann::json::parse(whole.str())["images"].size() == 100);
}

TEST_CASE("help and version exit 0")
{
  CHECK(run_args({"--help"}) == 0);
  CHECK(run_args({"--version"}) == 0);
  CHECK(run_args({"show", "--help"}) == 0);
}

// roff escapes '-' as '\-'.
static std::string roff_word(const std::string& w)
{
  std::string roff;
  for (char c : w) {
    roff += (c == '-') ? std::string("\\-") : std::string(1, c);
  }
  return roff;
}

static bool documented(const std::string& page, const std::string& w)
{
  return page.find(roff_word(w)) != std::string::npos || page.find(w) != std::string::npos;
}

TEST_CASE("every subcommand has its man page, which documents each of its long options")
{
  GlobalOptions g;
  Runner r;
  auto app = build_app(g, r);
  const std::string main_page = slurp(VMCSUM_SOURCE_DIR "/man/vmcsum.8.in");
  REQUIRE(!main_page.empty());
  for (const CLI::Option* o : app->get_options()) {
    for (const auto& name : o->get_lnames()) {
      CAPTURE(name);
      CHECK((name == "help" || documented(main_page, "--" + name)));
    }
  }
  for (const CLI::App* sub : app->get_subcommands({})) {
    const std::string name = sub->get_name();
    CAPTURE(name);
    const std::string page = slurp(VMCSUM_SOURCE_DIR "/man/vmcsum-" + name + ".8.in");
    REQUIRE(!page.empty());
    CHECK(documented(main_page, "vmcsum-" + name));
    for (const CLI::Option* o : sub->get_options()) {
      for (const auto& l : o->get_lnames()) {
        CAPTURE(l);
        CHECK((l == "help" || documented(page, "--" + l)));
      }
    }
  }
}

TEST_CASE("every subcommand and long option is in the completions")
{
  const std::string bash = slurp(VMCSUM_SOURCE_DIR "/completions/vmcsum.bash");
  const std::string zsh = slurp(VMCSUM_SOURCE_DIR "/completions/_vmcsum");
  const std::string fish = slurp(VMCSUM_SOURCE_DIR "/completions/vmcsum.fish");
  for (const auto& w : cli_words()) {
    CAPTURE(w);
    CHECK(bash.find(w) != std::string::npos);
    CHECK(zsh.find(w) != std::string::npos);
    // fish names long options without dashes: "-l json".
    std::string bare = w.rfind("--", 0) == 0 ? w.substr(2) : w;
    CHECK(fish.find(bare) != std::string::npos);
  }
}

namespace {
std::string trimmed(std::string_view l)
{
  const auto a = l.find_first_not_of(' ');
  return a == std::string_view::npos ? std::string() : std::string(l.substr(a));
}

// A command's part of a completion script: in zsh and bash its "CMD)" case up to the ";;" that
// ends it; in fish the lines conditioned on it.
std::string command_section(const std::string& script, const std::string& cmd, bool fish)
{
  std::string out;
  bool in = false;
  vmcsum::core::for_each_line(script, [&](std::string_view l) {
    const std::string t = trimmed(l);
    if (fish) {
      if (t.find("__fish_seen_subcommand_from " + cmd + "\"") != std::string::npos) {
        out += t + "\n";
      }
      return;
    }
    if (!in && t == cmd + ")") {
      in = true;
    } else if (in && t == ";;") {
      in = false;
    } else if (in) {
      out += t + "\n";
    }
  });
  return out;
}

// The values an option accepts when CLI11 checks them against a set, as its help prints them
// ("MODE:{findings,full,none}"), space-separated; empty for any other option.
std::string allowed_values(const CLI::Option* o)
{
  const std::string opts = CLI::Formatter().make_option_opts(o);
  const auto a = opts.find(":{");
  const auto b = opts.find('}', a);
  if (a == std::string::npos || b == std::string::npos) {
    return "";
  }
  std::string values = opts.substr(a + 2, b - a - 2);
  std::replace(values.begin(), values.end(), ',', ' ');
  return values;
}

bool has_any(const std::string& text, std::initializer_list<std::string> needles)
{
  return std::any_of(needles.begin(), needles.end(),
                     [&](const std::string& n) { return text.find(n) != std::string::npos; });
}
} // namespace

TEST_CASE("each command's completions offer each of its options, and their values")
{
  const std::string bash = slurp(VMCSUM_SOURCE_DIR "/completions/vmcsum.bash");
  const std::string zsh = slurp(VMCSUM_SOURCE_DIR "/completions/_vmcsum");
  const std::string fish = slurp(VMCSUM_SOURCE_DIR "/completions/vmcsum.fish");
  GlobalOptions g;
  Runner r;
  auto app = build_app(g, r);
  // bash completes every option's value in one "case $prev" block, whatever the command.
  auto bash_values = [&](const std::string& l) {
    size_t at = 0;
    while ((at = bash.find("--" + l, at)) != std::string::npos) {
      const auto eol = bash.find('\n', at);
      if (eol == std::string::npos) {
        break;
      }
      if (bash[eol - 1] == ')') { // a case pattern: "--kernel-pass)" or "--a|--b)"
        return bash.substr(eol, 120);
      }
      at = eol;
    }
    return std::string();
  };
  for (const CLI::App* sub : app->get_subcommands({})) {
    const std::string cmd = sub->get_name();
    CAPTURE(cmd);
    const std::string zs = command_section(zsh, cmd, false);
    const std::string bs = command_section(bash, cmd, false);
    const std::string fs = command_section(fish, cmd, true);
    REQUIRE(!zs.empty());
    REQUIRE(!bs.empty());
    REQUIRE(!fs.empty());
    for (const CLI::Option* o : sub->get_options()) {
      for (const auto& l : o->get_lnames()) {
        if (l == "help") {
          continue;
        }
        CAPTURE(l);
        // '--x[...]', '--x=[...]', '(--y)--x[...]' or {-x,--x}'[...]'
        CHECK(has_any(zs, {"'--" + l + "[", "'--" + l + "=[", ")--" + l + "[", ",--" + l + "}"}));
        CHECK(has_any(bs, {" --" + l + " ", " --" + l + "\""}));
        CHECK(has_any(fs, {"-l " + l + " ", "-l " + l + "\n"}));
        const std::string values = allowed_values(o);
        if (!values.empty()) {
          CAPTURE(values);
          CHECK(zs.find("(" + values + ")") != std::string::npos);
          CHECK(fs.find("-l " + l + " -x -a '" + values + "'") != std::string::npos);
          CHECK(bash_values(l).find("compgen -W '" + values + "'") != std::string::npos);
        }
      }
    }
  }
  // The global options with a set of values, and --json's optional STYLE.
  for (const CLI::Option* o : app->get_options()) {
    const std::string values = allowed_values(o);
    if (!values.empty()) {
      const std::string l = o->get_lnames().front();
      CAPTURE(l);
      CHECK(zsh.find("'--" + l + "=[") != std::string::npos);
      CHECK(zsh.find("(" + values + ")") != std::string::npos);
      CHECK(fish.find("-l " + l + " -x -a '" + values + "'") != std::string::npos);
      CHECK(bash_values(l).find("compgen -W '" + values + "'") != std::string::npos);
    }
  }
  CHECK(zsh.find("::style:(pretty short)") != std::string::npos);
  CHECK(fish.find("-l json -f -a 'pretty short'") != std::string::npos);
  CHECK(bash.find("compgen -W 'pretty short'") != std::string::npos);
}

TEST_CASE("tables: a long path loses its middle, never a row past the width")
{
  Table t({"PATH", "NOCOW", "SIZE"});
  t.add({"/var/lib/libvirt/images/a-very-long-directory-name/guest-disk.qcow2", "yes", "10GiB"});
  t.add({"short.raw", "no", "1MiB"});
  auto same = [](const std::string& s) { return s; };
  TableLayout wide;
  const std::string full = t.render(wide, same);
  CHECK(full.find("a-very-long-directory-name/guest-disk.qcow2") != std::string::npos);
  TableLayout narrow;
  narrow.width = 40;
  const std::string fitted = t.render(narrow, same);
  size_t lines = 0;
  vmcsum::core::for_each_line(fitted, [&](std::string_view l) {
    ++lines;
    CHECK(display_width(l) <= 40);
  });
  CHECK(lines == 3);
  // Both ends kept: where it is and what it is.
  CHECK(fitted.find("/var/lib/") != std::string::npos);
  CHECK(fitted.find("disk.qcow2") != std::string::npos);
  CHECK(fitted.find("\u2026") != std::string::npos);
}

TEST_CASE("tables: what does not fit once paths are short is left out, and said")
{
  Table t({"SEVERITY", "PATH", "FORMAT", "USERS", "FINDINGS"});
  t.add({"warning", "/srv/images/one-long-name-for-an-image.raw", "raw", "qemu-system-x86[123]",
         "nocow-on-checksummed-profile,o-direct-writer"});
  TableLayout l;
  l.width = 60;
  const std::string text = t.render(l, [](const std::string& s) { return s; });
  vmcsum::core::for_each_line(text,
                              [&](std::string_view line) { CHECK(display_width(line) <= 60); });
  CHECK(text.find("FINDINGS)") != std::string::npos); // named, in a line that fits too
  CHECK(text.find("not shown") != std::string::npos);
}

TEST_CASE("tables: -o picks and orders columns, --no-headings drops the heading row")
{
  Table t({"PATH", "NOCOW", "SIZE"});
  t.add({"a.raw", "yes", "1"});
  TableLayout l;
  l.columns = parse_columns("size,Path", t.header());
  l.headings = false;
  CHECK(t.render(l, [](const std::string& s) { return s; }) == "1  a.raw\n");
  CHECK_THROWS_AS(parse_columns("size,colour", t.header()), UsageError);
  CHECK(run_args({"-o", "nonsense", "show", "/"}) == exit_code::usage);
}

TEST_CASE("ellipsize_middle counts code points")
{
  CHECK(ellipsize_middle("abcdefghij", 5) == "ab\u2026ij");
  CHECK(ellipsize_middle("abc", 5) == "abc");
  CHECK(display_width(ellipsize_middle("\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9", 5)) ==
        5);
}

TEST_CASE("progress line: fits the width, path cut in the middle, rate and ETA when room")
{
  const std::string path = "/var/lib/libvirt/images/a-long-directory/guest-disk-image.qcow2";
  const uint64_t gib = 1ULL << 30;
  const std::string wide = progress_line(path, "kernel pass", gib, 4 * gib, 100.0 * (1 << 20), 200);
  CHECK(wide.find(path) == 0);
  CHECK(wide.find("kernel pass") != std::string::npos);
  CHECK(wide.find(" 25% ") != std::string::npos);
  CHECK(wide.find("100.00MiB/s") != std::string::npos);
  CHECK(wide.find("ETA 0:31") != std::string::npos);
  for (size_t w : {20u, 40u, 60u, 80u}) {
    CAPTURE(w);
    const std::string line = progress_line(path, "checksums", gib, 4 * gib, 1e8, w);
    CHECK(display_width(line) + 2 < w); // room for the "^C" a terminal echoes
  }
  const std::string sixty = progress_line(path, "checksums", gib, 4 * gib, 1e8, 60);
  CHECK(sixty.find("\u2026") != std::string::npos);
  CHECK(sixty.find(" 25% ") != std::string::npos);
}

TEST_CASE("progress line: a phase bounded by time shows bytes and rate, no percent or ETA")
{
  const uint64_t mib = 1ULL << 20;
  const std::string line = progress_line("/mnt", "seq-1m calibrate", 64 * mib, 0, 8.0 * mib, 80);
  CHECK(line.find("seq-1m calibrate  64.00MiB  8.00MiB/s") != std::string::npos);
  CHECK(line.find('%') == std::string::npos);
  CHECK(line.find("ETA") == std::string::npos);
  // Nothing done yet: the phase alone.
  CHECK(progress_line("/mnt", "trace", 0, 0, 0, 80) == "/mnt  trace");
}

TEST_CASE("every command's help lists the global options, with placeholders that say what they are")
{
  GlobalOptions g;
  Runner r;
  auto app = build_app(g, r);
  for (const CLI::App* sub : app->get_subcommands({})) {
    const std::string help = sub->help();
    CAPTURE(sub->get_name());
    CHECK(help.find("Global options") != std::string::npos);
    CHECK(help.find("--state-dir DIR") != std::string::npos);
    for (const char* cli11 : {" TEXT", "UINT", "FLOAT", " INT"}) {
      CAPTURE(cli11);
      CHECK(help.find(cli11) == std::string::npos);
    }
  }
  CHECK(run_args({"shwo", "/"}) == exit_code::usage);
  CHECK(run_args({"--color", "never", "show"}) == exit_code::usage); // value skipped, no command
  // --json takes no separate value: the word after it is the command (a missing file: 3).
  CHECK(run_args({"--json=short", "show", "/nonexistent/x"}) == exit_code::incomplete);
  CHECK(run_args({"--json", "show", "/nonexistent/x"}) == exit_code::incomplete);
}
