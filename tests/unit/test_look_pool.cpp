// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// audit's LookPool: every entry submitted is looked at once and comes back in the order
// submitted, whether the pool hands entries over as in a cached tree (few wake-ups, large
// batches) or as in a cold one (every idle thread woken), and what a look throws is rethrown.
#include "audit/look_pool.hpp"

#include <vmcsum/sys/walk.hpp>

#include <doctest/doctest.h>

#include "disk_reads.hpp"
#include "scratch_dir.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace vmcsum;

namespace {

// `dirs` directories of `per_dir` files each, of differing sizes, synced to the disk. Each
// more than 4 KiB: btrfs (and ext4's inline_data) keeps a smaller file's data in its metadata,
// where dropping it from the page cache leaves nothing for a read to fetch from the disk.
void make_tree(const Scratch& t, int dirs, int per_dir)
{
  for (int d = 0; d < dirs; ++d) {
    const std::string dir = t / ("d" + std::to_string(d));
    std::filesystem::create_directories(dir);
    for (int f = 0; f < per_dir; ++f) {
      std::ofstream(dir + "/f" + std::to_string(f))
        << std::string(size_t(4097 + d * per_dir + f), 'x');
    }
  }
  ::sync();
}

struct Walked
{
  std::vector<std::string> submitted;
  std::vector<std::string> looked; // by finish(), in its order
  bool saw_disk = false;
};

// Walks `root` sorted, submitting each regular file to a LookPool whose look is `look` (the
// Looked's path is the entry's) and returns what was submitted and what came back.
Walked walk_and_look(const std::string& root, const std::function<void(sys::WalkEntry&)>& look)
{
  core::LookPool pool(
    [&](sys::WalkEntry& e, core::FactCollector&) {
      look(e);
      core::Looked l;
      l.path = e.path();
      return l;
    },
    "/proc/self/mountinfo", nullptr);
  Walked w;
  sys::WalkOptions wo;
  wo.sorted = true;
  sys::walk_tree(
    root,
    [&](sys::WalkEntry& e) {
      if (e.d_type() == DT_REG) {
        w.submitted.push_back(e.path());
        pool.submit(e.keep());
      }
    },
    [](const std::string& path, const std::string& why) { FAIL(path << ": " << why); }, wo);
  for (const auto& l : pool.finish()) {
    w.looked.push_back(l.path);
  }
  w.saw_disk = pool.saw_disk();
  return w;
}

} // namespace

TEST_CASE("LookPool: cached looks come back whole and in order, handed over as in a warm tree")
{
  Scratch t;
  make_tree(t, 5, 70); // 350 entries: several of the warm batches, and a rest for finish()
  std::atomic<int> n{0};
  const Walked w = walk_and_look(t.path(), [&](sys::WalkEntry& e) {
    // Looks of differing lengths, so that they end out of order.
    if (n++ % 7 == 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    CHECK(e.lstat() != nullptr);
  });
  CHECK(w.submitted.size() == 350);
  CHECK(w.looked == w.submitted);
  CHECK(n == 350);
  CHECK_FALSE(w.saw_disk); // nothing read but inodes just written
}

TEST_CASE("LookPool: looks that read a disk turn the hand-over cold, and still come back whole "
          "and in order")
{
  Scratch t;
  make_tree(t, 4, 50);
  const long before = thread_inblock();
  read_from_disk(t / "d0/f10", 4096);
  if (thread_inblock() == before) {
    // tmpfs, or a kernel without CONFIG_TASK_IO_ACCOUNTING: no disk read to tell.
    MESSAGE("SKIP: reading a file dropped from the page cache moved no ru_inblock here");
    return;
  }
  const Walked w =
    walk_and_look(t.path(), [](sys::WalkEntry& e) { read_from_disk(e.path(), 4096); });
  CHECK(w.submitted.size() == 200);
  CHECK(w.looked == w.submitted);
  CHECK(w.saw_disk);
}

TEST_CASE("LookPool: what a look throws is rethrown by finish(), once every other look is done")
{
  Scratch t;
  make_tree(t, 2, 40);
  std::atomic<int> looks{0};
  core::LookPool pool(
    [&](sys::WalkEntry& e, core::FactCollector&) {
      ++looks;
      if (e.path().find("/d1/f7") != std::string::npos) {
        throw std::runtime_error("look failed: " + e.path());
      }
      core::Looked l;
      l.path = e.path();
      return l;
    },
    "/proc/self/mountinfo", nullptr);
  sys::WalkOptions wo;
  sys::walk_tree(
    t.path(),
    [&](sys::WalkEntry& e) {
      if (e.d_type() == DT_REG) {
        pool.submit(e.keep());
      }
    },
    [](const std::string& path, const std::string& why) { FAIL(path << ": " << why); }, wo);
  CHECK_THROWS_WITH_AS(pool.finish(), doctest::Contains("look failed: "), std::runtime_error);
  CHECK(looks == 80);
}

TEST_CASE("LookSampler: one look in eight is asked, and the next after a look that could not tell")
{
  using Seen = sys::DiskReadWatch::Seen;
  constexpr unsigned every = core::LookSampler::every;
  SUBCASE("the first look, then one in `every`")
  {
    core::LookSampler s;
    for (unsigned round = 0; round < 3; ++round) {
      CHECK(s.ask());
      s.told(Seen::memory);
      for (unsigned k = 1; k < every; ++k) {
        CHECK_FALSE(s.ask());
        s.told(Seen::memory); // not asked: nothing to learn from it
      }
    }
  }
  SUBCASE("a major fault (unknown): the next look is asked, and the count goes on")
  {
    core::LookSampler s;
    CHECK(s.ask());
    s.told(Seen::unknown);
    CHECK(s.ask()); // look 1
    s.told(Seen::unknown);
    CHECK(s.ask()); // look 2
    s.told(Seen::disk);
    for (unsigned k = 3; k < every; ++k) {
      CHECK_FALSE(s.ask());
      s.told(Seen::memory);
    }
    CHECK(s.ask()); // look `every`, as without the faults
  }
  SUBCASE("a look not asked says nothing, whatever it is told")
  {
    core::LookSampler s;
    CHECK(s.ask());
    s.told(Seen::memory);
    CHECK_FALSE(s.ask());
    s.told(Seen::unknown); // not asked: its watch was off
    CHECK_FALSE(s.ask());
  }
}
