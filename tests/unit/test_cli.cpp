// SPDX-License-Identifier: GPL-2.0-or-later
#include "cli/app.hpp"

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
}

TEST_CASE("help and version exit 0")
{
  CHECK(run_args({"--help"}) == 0);
  CHECK(run_args({"--version"}) == 0);
  CHECK(run_args({"show", "--help"}) == 0);
}

TEST_CASE("every subcommand and long option is documented in the man page and completions")
{
  const std::string man = slurp(VMCSUM_SOURCE_DIR "/man/vmcsum.8.in");
  const std::string bash = slurp(VMCSUM_SOURCE_DIR "/completions/vmcsum.bash");
  const std::string zsh = slurp(VMCSUM_SOURCE_DIR "/completions/_vmcsum");
  const std::string fish = slurp(VMCSUM_SOURCE_DIR "/completions/vmcsum.fish");
  REQUIRE(!man.empty());
  for (const auto& w : cli_words()) {
    CAPTURE(w);
    // roff escapes '-' as '\-'.
    std::string roff;
    for (char c : w) {
      roff += (c == '-') ? std::string("\\-") : std::string(1, c);
    }
    CHECK((man.find(roff) != std::string::npos || man.find(w) != std::string::npos));
    CHECK(bash.find(w) != std::string::npos);
    CHECK(zsh.find(w) != std::string::npos);
    // fish names long options without dashes: "-l json".
    std::string bare = w.rfind("--", 0) == 0 ? w.substr(2) : w;
    CHECK(fish.find(bare) != std::string::npos);
  }
}
