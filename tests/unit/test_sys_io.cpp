// SPDX-License-Identifier: GPL-2.0-or-later
// The I/O layer of sys/: the walker's refusals (symlinks, swapped entries, FIFOs, depth), the
// chunk reader (holes, ranges, cancellation), the read-back digest and the O_DIRECT buffers.
#include <vmcsum/error.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>
#include <vmcsum/sys/dir_reader.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/walk.hpp>

#include <doctest/doctest.h>

#include "disk_reads.hpp"
#include "scratch_dir.hpp"
#include "sys/cold_evidence.hpp"

#include "fail_listing.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <csignal>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace vmcsum;

namespace {

void write_file(const std::string& path, const std::string& data)
{
  std::ofstream(path, std::ios::binary) << data;
}

struct Seen
{
  std::vector<std::string> files;
  std::vector<std::string> problems;
};

Seen walk(const std::string& root, sys::WalkOptions opts = {})
{
  Seen s;
  sys::walk_tree(
    root, [&](sys::WalkEntry& e) { s.files.push_back(e.path()); },
    [&](const std::string& p, const std::string& why) { s.problems.push_back(p + ": " + why); },
    opts);
  std::sort(s.files.begin(), s.files.end());
  return s;
}

} // namespace

TEST_CASE("walk_tree reports a listing cut short after what was read of it, in both modes")
{
  Scratch t;
  std::filesystem::create_directories(t / "D/a");
  write_file(t / "D/a/x", "x");
  write_file(t / "D/b", "b");
  write_file(t / "D/f", "f");
  std::filesystem::create_directory(t / "E");
  write_file(t / "E/g", "g");
  struct stat st = {};
  REQUIRE(::stat((t / "D").c_str(), &st) == 0);
  for (const int reads_before : {0, 1}) {
    for (const bool sorted : {true, false}) {
      CAPTURE(reads_before);
      CAPTURE(sorted);
      // A directory whose reading fails part-way, which no kernel object here can be made to
      // do on demand: tests/tools/fail_listing.c, linked in, is the getdents64 DirReader calls.
      vmcsum_fail_listing_set(st.st_dev, st.st_ino, reads_before);
      std::vector<std::string> events;
      sys::WalkOptions wo;
      wo.sorted = sorted;
      wo.visit_directories = sorted; // as set -r walks; audit, scrub and repair stream files
      sys::walk_tree(
        t.path(),
        [&](sys::WalkEntry& e) { events.push_back(e.path().substr(t.path().size() + 1)); },
        [&](const std::string& p, const std::string& why) {
          events.push_back("problem " + p.substr(t.path().size() + 1) + ": " + why);
        },
        wo);
      const long reads = vmcsum_fail_listing_reads();
      vmcsum_fail_listing_set(0, 0, -1);
      CHECK(reads == reads_before + 1); // the failing read was made, and only once
      const auto problem = std::find(events.begin(), events.end(), "problem D: Input/output error");
      REQUIRE(problem != events.end());
      CHECK(std::count_if(events.begin(), events.end(),
                          [](const std::string& e) { return e.rfind("problem", 0) == 0; }) == 1);
      // What D holds is visited before the report (all of it, read in the first read), none
      // after; E is walked whole.
      std::vector<std::string> before(events.begin(), problem);
      std::vector<std::string> of_d;
      std::copy_if(events.begin(), events.end(), std::back_inserter(of_d),
                   [](const std::string& e) { return e.rfind("D/", 0) == 0; });
      CHECK(std::all_of(of_d.begin(), of_d.end(), [&](const std::string& e) {
        return std::find(before.begin(), before.end(), e) != before.end();
      }));
      const std::vector<std::string> all_of_d =
        sorted ? std::vector<std::string>{"D/a", "D/a/x", "D/b", "D/f"}
               : std::vector<std::string>{"D/a/x", "D/b", "D/f"};
      CHECK(of_d.size() == (reads_before == 0 ? 0 : all_of_d.size()));
      CHECK(std::find(events.begin(), events.end(), "E/g") != events.end());
      if (sorted) {
        // Byte order, D before E, the report right after D's last entry.
        std::vector<std::string> want{"D"};
        if (reads_before > 0) {
          want.insert(want.end(), all_of_d.begin(), all_of_d.end());
        }
        want.insert(want.end(), {"problem D: Input/output error", "E", "E/g"});
        CHECK(events == want);
      }
    }
  }
}

TEST_CASE("path_of_fd: the kernel's path of an open file; an unlinked file's is none")
{
  Scratch dir;
  // A name that looks like the kernel's mark of an unlinked file, and one that is unlinked.
  for (const std::string name : {"img.raw", "named (deleted)"}) {
    CAPTURE(name);
    write_file(dir / name, "x");
    const int fd = ::open((dir / name).c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(sys::path_of_fd(fd, "fallback") == sys::canonical_path(dir / name));
    REQUIRE(::unlink((dir / name).c_str()) == 0);
    CHECK(sys::path_of_fd(fd, "fallback") == "fallback");
    ::close(fd);
  }
  int p[2];
  REQUIRE(::pipe(p) == 0);
  CHECK(sys::path_of_fd(p[0], "fallback") == "fallback");
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE(
  "DirReader lists every entry of a directory larger than its buffer, once, and says why it stops")
{
  Scratch t;
  // 1500 names of 40 bytes: about 80 KiB of records, three buffers' worth. Oracle: the names
  // written, and std::filesystem's listing of them.
  std::set<std::string> made;
  for (int i = 0; i < 1500; ++i) {
    std::string name = std::to_string(i);
    name.insert(0, 40 - name.size(), 'n');
    write_file(t / name, "");
    made.insert(name);
  }
  std::set<std::string> by_std;
  for (const auto& e : std::filesystem::directory_iterator(t.path())) {
    by_std.insert(e.path().filename().string());
  }
  REQUIRE(by_std == made);
  sys::Fd dir(::open(t.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(dir);
  sys::DirReader reader(dir.get());
  std::multiset<std::string> listed;
  while (const auto* ent = reader.next()) {
    const std::string name = ent->d_name;
    listed.insert(name);
    CHECK(ent->d_type == (name == "." || name == ".." ? DT_DIR : DT_REG));
  }
  CHECK(errno == 0); // the end, not an error
  CHECK(listed.count(".") == 1);
  CHECK(listed.count("..") == 1);
  listed.erase(".");
  listed.erase("..");
  CHECK(listed.size() == made.size()); // none twice
  CHECK(std::set<std::string>(listed.begin(), listed.end()) == made);
  CHECK(reader.next() == nullptr); // and stays at the end

  // A descriptor that is no directory: nullptr with the kernel's reason.
  sys::Fd file(::open((t / *made.begin()).c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(file);
  sys::DirReader not_dir(file.get());
  CHECK(not_dir.next() == nullptr);
  CHECK(errno == ENOTDIR);
}

TEST_CASE("walk_tree lists files below the root and never follows a symlink")
{
  Scratch t, outside;
  write_file(outside / "secret", "outside");
  std::filesystem::create_directories(t / "a/b");
  write_file(t / "a/b/img", "x");
  write_file(t / "top", "y");
  std::filesystem::create_directory_symlink(outside.path(), t / "a/link");
  Seen s = walk(t.path());
  // The symlink is an entry (visited, not entered): nothing below `outside` appears.
  CHECK(s.files == std::vector<std::string>{t / "a/b/img", t / "a/link", t / "top"});
  CHECK(s.problems.empty());
}

TEST_CASE("walk_tree reading directories ahead visits and reports what it does without, in "
          "both modes")
{
  // prefetch_from_start: a tree just written is in memory, where the walk would read nothing
  // ahead (it starts once the walk reads a disk: tests/integration/audit.sh's cold tree).
  Scratch t, outside;
  write_file(outside / "secret", "outside");
  for (int d = 0; d < 40; ++d) {
    const std::string dir = t / ("d" + std::to_string(d % 3) + "/s" + std::to_string(d));
    std::filesystem::create_directories(dir + "/deep/deeper/deepest");
    write_file(dir + "/f", "x");
    write_file(dir + "/deep/deeper/g", "y");
    write_file(dir + "/deep/deeper/deepest/h", "z");
  }
  std::filesystem::create_directory_symlink(outside.path(), t / "d1/link");
  for (const bool sorted : {false, true}) {
    CAPTURE(sorted);
    sys::WalkOptions plain;
    plain.sorted = sorted;
    plain.max_depth = 4; // d*/s*/deep/deeper is entered, deepest (a fifth level) is not
    sys::WalkOptions ahead = plain;
    ahead.prefetch_threads = 4;
    ahead.prefetch_from_start = true;
    const Seen a = walk(t.path(), plain);
    CHECK(a.files.size() == 81);               // 40 f, 40 g, the symlink (visited, not entered)
    CHECK(a.problems.size() == 40);            // each deepest: too deep
    for (int round = 0; round < 20; ++round) { // threads racing the walk: the same every time
      const Seen b = walk(t.path(), ahead);
      CHECK(b.files == a.files);
      CHECK(b.problems == a.problems);
    }
    // A stop flag raised before the walk: nothing visited, and the threads end with it.
    std::atomic<bool> stop{true};
    ahead.stop = &stop;
    CHECK(walk(t.path(), ahead).files.empty());
    // Raised during the walk: it ends at the next entry, and the walk returns (threads joined).
    stop = false;
    size_t visits = 0;
    sys::walk_tree(
      t.path(),
      [&](sys::WalkEntry&) {
        if (++visits == 5) {
          stop = true;
        }
      },
      [](const std::string&, const std::string&) {}, ahead);
    CHECK(visits == 5);
  }
}

TEST_CASE("walk_tree names entries below a root given with a trailing slash without doubling it")
{
  Scratch t;
  write_file(t / "img", "x");
  CHECK(walk(t.path() + "/").files == std::vector<std::string>{t / "img"});
}

TEST_CASE("walk_tree reports directories past the depth limit instead of skipping them silently")
{
  Scratch t;
  std::filesystem::create_directories(t / "1/2/3");
  write_file(t / "1/2/3/deep", "x");
  write_file(t / "1/shallow", "x");
  Seen s = walk(t.path(), sys::WalkOptions{2});
  CHECK(s.files == std::vector<std::string>{t / "1/shallow"});
  REQUIRE(s.problems.size() == 1);
  CHECK(s.problems[0].find(t / "1/2/3") == 0);
  CHECK(s.problems[0].find("deeper than 2 levels") != std::string::npos);
}

TEST_CASE("walk_tree with visit_directories and sorted: pre-order, names in byte order, each "
          "directory visited before what it holds, one too deep visited then reported")
{
  Scratch t;
  std::filesystem::create_directories(t / "b/z/deep");
  std::filesystem::create_directories(t / "a");
  write_file(t / "b/z/deep/x", "x");
  write_file(t / "b/y", "y");
  write_file(t / "b/Y", "Y");
  write_file(t / "c", "c");
  write_file(t / "a/f", "f");
  sys::WalkOptions wo;
  wo.max_depth = 2;
  wo.visit_directories = true;
  wo.sorted = true;
  // The order visited, unsorted here (Seen sorts): the oracle is the order written below,
  // byte order of the names depth first ("Y" before "y": bytes, not a locale's collation).
  std::vector<std::string> order;
  std::vector<std::string> problems;
  sys::walk_tree(
    t.path(),
    [&](sys::WalkEntry& e) {
      order.push_back(e.dir_relpath() + "|" + std::string(e.name()) + "|" +
                      (e.d_type() == DT_DIR ? "d" : "f") + std::to_string(e.depth()));
      CHECK(e.path() == (e.dir_relpath().empty()
                           ? t.path() + "/" + std::string(e.name())
                           : t.path() + "/" + e.dir_relpath() + "/" + std::string(e.name())));
    },
    [&](const std::string& p, const std::string& why) { problems.push_back(p + ": " + why); }, wo);
  CHECK(order == std::vector<std::string>{"|a|d1", "a|f|f2", "|b|d1", "b|Y|f2", "b|y|f2", "b|z|d2",
                                          "b/z|deep|d3", "|c|f1"});
  // b/z/deep is visited (depth 3 > 2) but not entered: x is not listed, and that is said.
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find(t / "b/z/deep") == 0);
  // A directory swapped for a symlink after its visit, before the walk enters it: refused and
  // reported right after that visit (set -r ties the report to the directory it just listed).
  Scratch outside;
  write_file(outside / "secret", "s");
  std::vector<std::string> events;
  sys::walk_tree(
    t.path(),
    [&](sys::WalkEntry& e) {
      events.push_back("visit " + std::string(e.name()));
      if (e.name() == "a") {
        std::filesystem::rename(t / "a", t / "a.moved");
        std::filesystem::create_directory_symlink(outside.path(), t / "a");
      }
    },
    [&](const std::string& p, const std::string& why) {
      events.push_back("problem " + p.substr(t.path().size() + 1) + ": " + why);
    },
    wo);
  REQUIRE(events.size() >= 3);
  CHECK(events[0] == "visit a");
  CHECK(events[1] ==
        "problem a: replaced by a symlink or a file since it was listed: not followed");
  CHECK(std::find(events.begin(), events.end(), "visit secret") == events.end());
  // The too-deep directory: visited, then reported, nothing between.
  const auto deep = std::find(events.begin(), events.end(), "visit deep");
  REQUIRE(deep != events.end());
  REQUIRE(deep + 1 != events.end());
  CHECK(deep[1].find("problem b/z/deep: deeper than 2 levels") == 0);
  std::filesystem::remove(t / "a");
  std::filesystem::rename(t / "a.moved", t / "a");

  // Below a directory already open: the same walk, the path given only for display.
  std::vector<std::string> by_fd;
  auto dir = std::make_shared<const sys::Fd>(::open(t.path().c_str(), O_RDONLY | O_DIRECTORY));
  REQUIRE(*dir);
  sys::walk_tree(
    dir, "shown", [&](sys::WalkEntry& e) { by_fd.push_back(e.path()); },
    [&](const std::string&, const std::string&) {}, wo);
  CHECK(by_fd == std::vector<std::string>{"shown/a", "shown/a/f", "shown/b", "shown/b/Y",
                                          "shown/b/y", "shown/b/z", "shown/b/z/deep", "shown/c"});
  // Without the options: files only, whatever the order.
  CHECK(walk(t.path(), sys::WalkOptions{2}).files ==
        std::vector<std::string>{t / "a/f", t / "b/Y", t / "b/y", t / "c"});
}

TEST_CASE("walk_tree reports a root directory it cannot read or that is no open directory, "
          "in both modes, and visits nothing")
{
  // Real kernel errors, two places. getdents64 failing: a descriptor opened O_PATH stats fine
  // but cannot be read (fs/open.c: O_PATH gives an fd without read ops, EBADF). fstat failing:
  // /proc/PID/fd of a process that has exited since it was opened (fs/proc/fd.c: no task,
  // -ENOENT; on kernels before 6.2 its fstat succeeds and the ENOENT comes from getdents64),
  // which the walk used to skip without a word.
  Scratch t;
  write_file(t / "f", "x");
  auto opath = std::make_shared<const sys::Fd>(::open(t.path().c_str(), O_PATH | O_DIRECTORY));
  REQUIRE(*opath);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  const std::string fd_dir = "/proc/" + std::to_string(child) + "/fd";
  auto gone = std::make_shared<const sys::Fd>(::open(fd_dir.c_str(), O_RDONLY | O_DIRECTORY));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  REQUIRE(*gone);
  for (const bool sorted : {false, true}) {
    CAPTURE(sorted);
    sys::WalkOptions wo;
    wo.sorted = sorted;
    // And a null or closed descriptor: said too, not taken for an empty tree.
    for (const auto& [dir, error] :
         {std::pair{opath, "Bad file descriptor"}, std::pair{gone, "No such file or directory"},
          std::pair{std::shared_ptr<const sys::Fd>(), "not an open directory: not walked"},
          std::pair{std::make_shared<const sys::Fd>(-1), "not an open directory: not walked"}}) {
      size_t visited = 0;
      std::vector<std::string> said;
      sys::walk_tree(
        dir, "d", [&](sys::WalkEntry&) { ++visited; },
        [&](const std::string& p, const std::string& why) { said.push_back(p + ": " + why); }, wo);
      CHECK(visited == 0);
      REQUIRE(said.size() == 1);
      CHECK(said[0].find("d: ") == 0);
      CHECK(said[0].find(error) != std::string::npos);
    }
  }
}

TEST_CASE("walk_tree stops at the entry after its stop flag was raised, and visits nothing then")
{
  Scratch t;
  for (const char* d : {"a", "b", "c"}) {
    std::filesystem::create_directory(t / d);
    for (int i = 0; i < 5; ++i) {
      write_file(t / (std::string(d) + "/f" + std::to_string(i)), "x");
    }
  }
  std::atomic<bool> stop{false};
  sys::WalkOptions opts;
  opts.stop = &stop;
  size_t visited = 0;
  size_t after_stop = 0;
  sys::walk_tree(
    t.path(),
    [&](sys::WalkEntry&) {
      after_stop += stop.load() ? 1 : 0;
      if (++visited == 7) {
        stop = true; // as the signal handler does, from inside the walk
      }
    },
    [](const std::string&, const std::string&) {}, opts);
  CHECK(visited == 7); // of 15: the walk ended at the next entry
  CHECK(after_stop == 0);
  // Raised before the walk: not even a root that is a file is visited.
  visited = 0;
  sys::walk_tree(
    t / "a/f0", [&](sys::WalkEntry&) { ++visited; }, [](const std::string&, const std::string&) {},
    opts);
  CHECK(visited == 0);
}

TEST_CASE("walk_tree visits a root that is a file, and reports a missing root")
{
  Scratch t;
  write_file(t / "img", "x");
  CHECK(walk(t / "img").files == std::vector<std::string>{t / "img"});
  Seen missing = walk(t / "nope");
  CHECK(missing.files.empty());
  CHECK(missing.problems.size() == 1);
}

TEST_CASE("open_regular opens the file the walk listed and refuses anything swapped in")
{
  Scratch t;
  write_file(t / "img", "data");
  write_file(t / "other", "other");
  REQUIRE(::mkfifo((t / "fifo").c_str(), 0600) == 0);
  std::map<std::string, std::string> result;
  sys::walk_tree(
    t.path(),
    [&](sys::WalkEntry& e) {
      const std::string name(e.name());
      if (name == "img") {
        struct stat st = {};
        sys::Fd fd = e.open_regular(O_RDONLY, &st);
        char buf[8] = {};
        CHECK(::read(fd.get(), buf, sizeof buf) == 4);
        result[name] = buf;
        return;
      }
      if (name == "other") {
        e.lstat(); // the walk looked at it; then it is replaced by a symlink
        std::filesystem::remove(t / "other");
        std::filesystem::create_symlink(t / "img", t / "other");
      }
      try {
        e.open_regular(O_RDONLY);
        result[name] = "opened";
      } catch (const Error& err) {
        CHECK(err.code() == Errc::unsupported);
        result[name] = err.detail();
      }
    },
    [](const std::string&, const std::string&) {});
  CHECK(result["img"] == "data");
  // A FIFO is refused before any open (an open for reading could block).
  CHECK(result["fifo"].find("FIFO") != std::string::npos);
  CHECK(result["other"].find("symlink") != std::string::npos);
}

TEST_CASE("open_regular refuses a file replaced by another file between lstat and open")
{
  Scratch t;
  write_file(t / "img", "old");
  sys::walk_tree(
    t.path(),
    [&](sys::WalkEntry& e) {
      REQUIRE(e.lstat());
      write_file(t / "new", "new");
      REQUIRE(::rename((t / "new").c_str(), (t / "img").c_str()) == 0);
      CHECK_THROWS_AS(e.open_regular(O_RDONLY), Error);
    },
    [](const std::string&, const std::string&) {});
}

TEST_CASE("walk_named follows a symlink named as the root once, and none below it")
{
  Scratch t, outside;
  write_file(outside / "secret", "outside");
  std::filesystem::create_directories(t / "images");
  write_file(t / "images/a.raw", "x");
  std::filesystem::create_directory_symlink(outside.path(), t / "images/link");
  std::filesystem::create_directory_symlink(t / "images", t / "imglnk");
  std::filesystem::create_symlink(t / "images/a.raw", t / "alnk");
  std::filesystem::create_symlink(t / "nothing", t / "dangling");
  REQUIRE(::mkfifo((t / "fifo").c_str(), 0600) == 0);
  std::filesystem::create_symlink(t / "fifo", t / "fifolnk");
  auto named = [](const std::string& root) {
    Seen s;
    std::vector<unsigned char> types;
    sys::walk_named(
      root,
      [&](sys::WalkEntry& e) {
        s.files.push_back(e.path());
        types.push_back(e.d_type());
      },
      [&](const std::string& p, const std::string& why) { s.problems.push_back(p + ": " + why); });
    return std::make_pair(s, types);
  };
  // A symlink to a directory: walked under the name given; the symlink inside is an entry only.
  auto [dir, dir_types] = named(t / "imglnk");
  CHECK(dir.files == std::vector<std::string>{t / "imglnk/a.raw", t / "imglnk/link"});
  CHECK(dir.problems.empty());
  // A symlink to a file: the file itself, under its canonical path.
  auto [file, file_types] = named(t / "alnk");
  CHECK(file.files == std::vector<std::string>{t / "images/a.raw"});
  CHECK(file_types == std::vector<unsigned char>{DT_REG});
  // A symlink to a FIFO: visited as a FIFO (never opened: the caller refuses it).
  auto [fifo, fifo_types] = named(t / "fifolnk");
  CHECK(fifo_types == std::vector<unsigned char>{DT_FIFO});
  // A dangling symlink, and a missing path: a problem under the name given.
  auto [dangling, dt] = named(t / "dangling");
  CHECK(dangling.files.empty());
  CHECK(dangling.problems ==
        std::vector<std::string>{t / "dangling" + ": a symlink to nothing (dangling)"});
  auto [missing, mt] = named(t / "nope");
  CHECK(missing.files.empty());
  CHECK(missing.problems.size() == 1);
  // Not a symlink: as walk_tree.
  CHECK(named(t / "images").first.files == walk(t / "images").files);
  CHECK(named(t / "images/a.raw").first.files == std::vector<std::string>{t / "images/a.raw"});
}

TEST_CASE("open_regular_at follows a named symlink once and refuses what is not a file")
{
  Scratch t;
  write_file(t / "img", "abc");
  std::filesystem::create_symlink(t / "img", t / "link");
  REQUIRE(::mkfifo((t / "fifo").c_str(), 0600) == 0);
  struct stat st = {};
  sys::Fd fd = sys::open_regular_at(t / "link", O_RDONLY, &st);
  CHECK(st.st_size == 3);
  CHECK_THROWS_AS(sys::open_regular_at(t / "fifo", O_RDONLY), Error);
  CHECK_THROWS_AS(sys::open_regular_at(t.path(), O_RDONLY), Error);
}

TEST_CASE("open_dir_beneath stays below its root")
{
  Scratch t, outside;
  std::filesystem::create_directories(t / "a/b");
  std::filesystem::create_directory_symlink(outside.path(), t / "a/out");
  sys::Fd root(::open(t.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(root);
  CHECK(sys::open_dir_beneath(root.get(), "a/b"));
  CHECK_THROWS_AS(sys::open_dir_beneath(root.get(), "a/out"), Error);
  CHECK_THROWS_AS(sys::open_dir_beneath(root.get(), "../"), Error);
  CHECK_THROWS_AS(sys::open_dir_beneath(root.get(), "/etc"), Error);
}

TEST_CASE("pread_full reads everything and stops at end of file")
{
  Scratch t;
  write_file(t / "f", std::string(10000, 'z'));
  sys::Fd fd(::open((t / "f").c_str(), O_RDONLY | O_CLOEXEC));
  std::vector<char> buf(20000);
  CHECK(sys::pread_full(fd.get(), buf.data(), buf.size(), 0) == 10000);
  CHECK(sys::pread_full(fd.get(), buf.data(), 100, 9950) == 50);
  CHECK(sys::pread_full(fd.get(), buf.data(), 100, 20000) == 0);
}

TEST_CASE("ChunkReader reads data ranges only, in chunks, and stops when cancelled")
{
  Scratch t;
  const std::string p = t / "sparse";
  {
    sys::Fd fd(::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    REQUIRE(fd);
    std::string a(8192, 'a');
    REQUIRE(sys::pwrite_full(fd.get(), a.data(), a.size(), 0) == 0);
    REQUIRE(sys::pwrite_full(fd.get(), a.data(), a.size(), 1 << 20) == 0);
    REQUIRE(::ftruncate(fd.get(), 4 << 20) == 0);
    ::fsync(fd.get());
  }
  sys::Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  auto ranges = sys::data_ranges(fd.get(), 4 << 20, p);
  // tmpfs and most local filesystems report the holes; every one reports at least the data.
  uint64_t data = 0;
  for (const auto& r : ranges) {
    data += r.length;
  }
  CHECK(data >= 16384);
  sys::ChunkReader::Options o;
  o.chunk = 4096;
  sys::ChunkReader reader(o);
  uint64_t calls = 0, bytes = 0, starts = 0;
  auto out = reader.read_ranges(
    fd.get(), ranges, p,
    [&](uint64_t, std::span<const uint8_t> b) {
      ++calls;
      bytes += b.size();
      CHECK(b.size() <= 4096);
    },
    {}, [&](const sys::ByteRange&) { ++starts; });
  CHECK(bytes == data);
  CHECK(out.bytes_read == data);
  CHECK(starts == ranges.size());
  CHECK(out.unreadable.empty());
  CHECK_FALSE(out.cancelled);

  std::atomic<bool> stop{false};
  sys::Cancel cancel;
  cancel.flag = &stop;
  uint64_t before_stop = 0;
  auto cut = reader.read_ranges(
    fd.get(), {{0, 8192}, {1 << 20, 8192}}, p,
    [&](uint64_t, std::span<const uint8_t>) {
      ++before_stop;
      stop = true;
    },
    cancel);
  CHECK(cut.cancelled);
  CHECK(before_stop == 1);
}

TEST_CASE("ChunkReader says where a file ended early")
{
  Scratch t;
  write_file(t / "f", std::string(5000, 'q'));
  sys::Fd fd(::open((t / "f").c_str(), O_RDONLY | O_CLOEXEC));
  sys::ChunkReader reader;
  auto out = reader.read_ranges(fd.get(), {{0, 8192}}, "f", [](uint64_t, auto) {});
  REQUIRE(out.short_at);
  CHECK(*out.short_at == 5000);
  CHECK(out.bytes_read == 5000);
}

TEST_CASE("Hasher is xxh3-128 and range() makes the range map part of the digest")
{
  sys::Hasher h;
  // XXH3_128bits of the empty input (xxHash reference: 99aa06d3014798d86001c324468d497f).
  CHECK(h.hex() == "99aa06d3014798d86001c324468d497f");
  sys::Hasher a, b;
  a.range(0, 3);
  a.update("abc", 3);
  b.range(4096, 3);
  b.update("abc", 3);
  CHECK(a.hex() != b.hex());
  CHECK(a.hex().size() == 32);
}

TEST_CASE("free_bytes and kernel_release answer for this machine")
{
  sys::Fd fd(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  CHECK(sys::free_bytes(fd.get()).has_value());
  CHECK_FALSE(sys::free_bytes(-1).has_value());
  CHECK_FALSE(sys::kernel_release().empty());
  CHECK(&sys::kernel_release() == &sys::kernel_release());
}

TEST_CASE("AlignedBuffer: page-aligned, 2 MiB and more on a 2 MiB boundary, every byte usable")
{
  // Sizes below, at and above the mapped and the huge-page thresholds, and one not a whole page.
  const size_t sizes[] = {1,
                          4096,
                          sys::AlignedBuffer::k_map_bytes,
                          sys::AlignedBuffer::k_huge_bytes - 4096,
                          sys::AlignedBuffer::k_huge_bytes,
                          sys::AlignedBuffer::k_huge_bytes + 1,
                          4u << 20};
  for (size_t size : sizes) {
    CAPTURE(size);
    for (int round = 0; round < 3; ++round) { // mapped and unmapped again: nothing overlaps
      sys::AlignedBuffer b = sys::aligned_buffer(size);
      const auto at = reinterpret_cast<uintptr_t>(b.get());
      CHECK(b.size() == size);
      CHECK(at % 4096 == 0);
      if (size >= sys::AlignedBuffer::k_huge_bytes) {
        CHECK(at % sys::AlignedBuffer::k_huge_bytes == 0);
      }
      std::fill(b.data(), b.data() + size, static_cast<uint8_t>(round + 1));
      CHECK(b.data()[0] == round + 1);
      CHECK(b.data()[size - 1] == round + 1);
    }
  }
}

TEST_CASE("DiskReadWatch counts what the thread reads after it is made, not before")
{
  Scratch t;
  const std::string path = t / "data";
  write_file(path, std::string(1 << 20, 'd'));
  {
    const sys::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(::fsync(fd.get()) == 0);
  }
  const long before = thread_inblock();
  read_from_disk(path, 1 << 20); // the thread has read a disk before any watch
  if (thread_inblock() == before) {
    // tmpfs, or a kernel without CONFIG_TASK_IO_ACCOUNTING: no read to tell from.
    MESSAGE("SKIP: reading a file dropped from the page cache moved no ru_inblock here");
    CHECK(sys::DiskReadWatch().seen() == sys::DiskReadWatch::Seen::memory);
    return;
  }
  const sys::DiskReadWatch watch;
  CHECK(watch.seen() == sys::DiskReadWatch::Seen::memory); // nothing read since it was made
  read_from_disk(path, 1 << 20);
  CHECK(watch.seen() == sys::DiskReadWatch::Seen::disk);
  CHECK(watch.read_disk());
  const sys::DiskReadWatch off(false);
  read_from_disk(path, 1 << 20);
  CHECK(off.seen() == sys::DiskReadWatch::Seen::memory); // inactive: never a read
}

TEST_CASE("ColdEvidence: a tree is cold once two recent directories read a disk")
{
  SUBCASE("one directory, however often, is not enough")
  {
    sys::ColdEvidence e;
    CHECK_FALSE(e.disk_read(0, 0)); // the root's listing
    CHECK_FALSE(e.disk_read(0, 1)); // its next buffer, after a subdirectory was opened
    CHECK_FALSE(e.disk_read(0, 2));
    CHECK(e.disk_read(2, 2)); // a second directory
  }
  SUBCASE("a cold tree: the first directory opened below the root")
  {
    sys::ColdEvidence e;
    CHECK_FALSE(e.disk_read(0, 0));
    CHECK(e.disk_read(1, 1));
  }
  SUBCASE("two reads `recent` directories apart or more are two stray blocks")
  {
    constexpr uint64_t r = sys::ColdEvidence::recent;
    sys::ColdEvidence e;
    CHECK_FALSE(e.disk_read(1, 1));
    CHECK_FALSE(e.disk_read(1 + r, 1 + r)); // 1 is not among the last `r` opened (2 .. 1 + r)
    // The later one is remembered: the next directory's read is recent beside it.
    CHECK(e.disk_read(2 + r, 2 + r));
  }
  SUBCASE("at the edge: the oldest of the last `recent` directories opened still counts")
  {
    constexpr uint64_t r = sys::ColdEvidence::recent;
    sys::ColdEvidence e;
    CHECK_FALSE(e.disk_read(3, 3));
    CHECK(e.disk_read(3 + r - 1, 3 + r - 1));
  }
  SUBCASE("a parent's listing going on after its subdirectories: recent only if both are")
  {
    sys::ColdEvidence e;
    CHECK_FALSE(e.disk_read(5, 5));
    CHECK(e.disk_read(4, 7)); // among the last four opened (4 .. 7)
    sys::ColdEvidence f;
    CHECK_FALSE(f.disk_read(5, 5));
    CHECK_FALSE(f.disk_read(3, 7)); // not among them: too old to count
    CHECK(f.disk_read(6, 7));       // beside 5, still the most recent disk read
  }
}

TEST_CASE("open_named: resolves a named path once; follows only symlinks no other user controls")
{
  Scratch s;
  const std::string real = s / "real";
  REQUIRE(::mkdir(real.c_str(), 0755) == 0);
  REQUIRE(::mkdir((real + "/sub").c_str(), 0755) == 0);
  {
    std::ofstream(real + "/sub/f.img") << "x";
  }
  REQUIRE(::symlink("real", (s / "l").c_str()) == 0);
  REQUIRE(::symlink("sub/f.img", (real + "/lf").c_str()) == 0);
  REQUIRE(::symlink("nothing", (s / "dangling").c_str()) == 0);
  REQUIRE(::symlink("loop2", (s / "loop1").c_str()) == 0);
  REQUIRE(::symlink("loop1", (s / "loop2").c_str()) == 0);
  struct stat want = {};
  REQUIRE(::stat((real + "/sub/f.img").c_str(), &want) == 0);
  auto is_file = [&](const vmcsum::sys::NamedPath& n) {
    struct stat st = {};
    return n.fd && ::fstat(n.fd.get(), &st) == 0 && st.st_ino == want.st_ino;
  };
  CHECK(is_file(vmcsum::sys::open_named(s / "l/sub/f.img")));
  CHECK(is_file(vmcsum::sys::open_named(s / "l/./sub//../sub/f.img")));
  auto via_link = vmcsum::sys::open_named(s / "l/lf");
  CHECK(is_file(via_link));
  CHECK(via_link.last_link == "sub/f.img");
  auto not_followed = vmcsum::sys::open_named(s / "l/lf", false);
  struct stat lst = {};
  REQUIRE(not_followed.fd);
  REQUIRE(::fstat(not_followed.fd.get(), &lst) == 0);
  CHECK(S_ISLNK(lst.st_mode));
  auto dangling = vmcsum::sys::open_named(s / "dangling");
  CHECK_FALSE(dangling.fd);
  CHECK(dangling.dangling);
  CHECK(dangling.error == ENOENT);
  CHECK(dangling.last_link == "nothing");
  CHECK(vmcsum::sys::open_named(s / "loop1").error == ELOOP);
  CHECK(vmcsum::sys::open_named(real + "/sub/f.img/x").error == ENOTDIR);
  CHECK(vmcsum::sys::open_named("").error == ENOENT);
  // A trailing slash asks for a directory (path_resolution(7)), through a symlink too.
  CHECK(vmcsum::sys::open_named(real + "/sub/f.img/").error == ENOTDIR);
  CHECK(vmcsum::sys::open_named(s / "l/lf/").error == ENOTDIR);
  CHECK(vmcsum::sys::open_named(s / "l/lf/.").error == ENOTDIR);
  CHECK(vmcsum::sys::open_named(s / "l/").fd);
  CHECK_FALSE(vmcsum::sys::open_named(s / "l/", false).last_link.has_value()); // followed: not last
  // /proc's magic links stand for what they name, not for their text: /proc/self/root/... is
  // this process's root, whatever the text says.
  CHECK(is_file(vmcsum::sys::open_named("/proc/self/root" + real + "/sub/f.img")));
  CHECK(is_file(vmcsum::sys::open_named("/proc/self/root" + s.path() + "/l/sub/../sub/f.img")));
  CHECK_FALSE(vmcsum::sys::open_named(s / "missing/f").dangling);

  // The decision table: who owns the symlink, who may change the directory holding it.
  if (::geteuid() != 0) {
    MESSAGE("not root: the other-owner rows need chown (skipped)");
    return;
  }
  const uid_t other = 65534;
  auto refused = [&](const std::string& link_dir, uid_t link_owner) {
    const std::string link = link_dir + "/to-real";
    ::unlink(link.c_str());
    REQUIRE(::symlink(real.c_str(), link.c_str()) == 0);
    REQUIRE(::lchown(link.c_str(), link_owner, static_cast<gid_t>(-1)) == 0);
    auto n = vmcsum::sys::open_named(link + "/sub/f.img");
    if (n.fd) {
      CHECK(is_file(n));
      return std::string();
    }
    CHECK(n.error == EPERM);
    CHECK(n.why.find(link) != std::string::npos);
    return n.why;
  };
  const std::string rootdir = s / "rootdir";
  REQUIRE(::mkdir(rootdir.c_str(), 0755) == 0);
  const std::string otherdir = s / "otherdir";
  REQUIRE(::mkdir(otherdir.c_str(), 0755) == 0);
  REQUIRE(::chown(otherdir.c_str(), other, static_cast<gid_t>(-1)) == 0);
  const std::string worlddir = s / "worlddir";
  REQUIRE(::mkdir(worlddir.c_str(), 0777) == 0);
  REQUIRE(::chmod(worlddir.c_str(), 0777) == 0);
  const std::string stickydir = s / "stickydir";
  REQUIRE(::mkdir(stickydir.c_str(), 01777) == 0);
  REQUIRE(::chmod(stickydir.c_str(), 01777) == 0);
  CHECK(refused(rootdir, 0).empty()); // root's, root's dir
  CHECK(refused(rootdir, other).find("belongs to uid 65534") != std::string::npos);
  CHECK(refused(otherdir, 0).find("another user can change") != std::string::npos);
  CHECK(refused(otherdir, other).find("belongs to uid 65534") != std::string::npos);
  CHECK(refused(worlddir, 0).find("group or world writable") != std::string::npos);
  CHECK(refused(stickydir, 0).empty()); // /tmp: others cannot rename root's symlink
  CHECK(refused(stickydir, other).find("belongs to uid 65534") != std::string::npos);
}
