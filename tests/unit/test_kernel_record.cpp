// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The kernel record: its text form, what it keeps, and the write window of a generation.
#include <vmcsum/error.hpp>
#include <vmcsum/host/kernel_record.hpp>

#include <doctest/doctest.h>

using namespace vmcsum::core;

namespace {
RecordEntry entry(uint64_t gen, const std::string& boot, const std::string& release,
                  const std::string& source = "run")
{
  RecordEntry e;
  e.generation = gen;
  e.boot_id = boot;
  e.release = release;
  e.time_us = static_cast<int64_t>(gen) * 1000;
  e.source = source;
  return e;
}
} // namespace

TEST_CASE("kernel record: text form round trip")
{
  auto r = empty_record("f00d");
  r.add(entry(10, "a", "6.1.0-28-amd64", "boot"));
  r.add(entry(20, "a", "6.1.0-28-amd64", "shutdown"));
  r.add(entry(25, "b", "6.18.44", "boot"));
  const auto text = r.format();
  CHECK(text == "vmcsum-kernel-record 1 f00d\n"
                "10 a 10000 boot 6.1.0-28-amd64\n"
                "20 a 20000 shutdown 6.1.0-28-amd64\n"
                "25 b 25000 boot 6.18.44\n");
  auto back = KernelRecord::parse(text, "f00d");
  REQUIRE(back.entries().size() == 3);
  CHECK(back.entries()[2].release == "6.18.44");
  CHECK(back.format() == text);
}

TEST_CASE("kernel record: malformed text is refused with the line")
{
  CHECK_THROWS_AS(KernelRecord::parse("", "x"), vmcsum::Error);
  CHECK_THROWS_AS(KernelRecord::parse("something else\n", "x"), vmcsum::Error);
  const std::string head = "vmcsum-kernel-record 1 x\n";
  CHECK_THROWS_AS(KernelRecord::parse(head + "10 a 1 boot\n", "x"), vmcsum::Error);
  CHECK_THROWS_AS(KernelRecord::parse(head + "x a 1 boot 6.1\n", "x"), vmcsum::Error);
  CHECK_THROWS_AS(KernelRecord::parse(head + "-1 a 1 boot 6.1\n", "x"), vmcsum::Error);
  CHECK_THROWS_AS(KernelRecord::parse(head + "20 a 1 boot 6.1\n10 a 1 run 6.1\n", "x"),
                  vmcsum::Error);
  CHECK_THROWS_AS(KernelRecord::parse(head + "10 a\x01 1 boot 6.1\n", "x"), vmcsum::Error);
  CHECK(KernelRecord::parse(head, "x").entries().empty());
  CHECK(KernelRecord::parse(head + "\n", "x").entries().empty());
}

TEST_CASE("kernel record: a release is stored only when parse would read it back")
{
  // record_now refuses what record_word_ok refuses (--kernel-release is checked with it): a
  // release with a blank, none, or a byte past ASCII made the whole record unreadable, and the
  // next run started a new one, losing every earlier boot's kernel.
  const std::string head = "vmcsum-kernel-record 1 x\n";
  for (const char* word : {"6.1.0-28-amd64", "6.18.44-fc-v1272", "7.3.0-rc1+", "x"}) {
    CAPTURE(std::string(word));
    CHECK(record_word_ok(word));
    CHECK(KernelRecord::parse(head + "10 a 1 run " + word + "\n", "x").entries().size() == 1);
  }
  for (const char* word : {"", "6.8.0 custom", "6.8\t1", "6.8-\xc3\xa9", "6.8\x7f"}) {
    CAPTURE(std::string(word));
    CHECK_FALSE(record_word_ok(word));
    CHECK_THROWS_AS(KernelRecord::parse(head + "10 a 1 run " + word + "\n", "x"), vmcsum::Error);
  }
}

TEST_CASE("kernel record: per boot only the first and the latest entry are kept")
{
  auto r = empty_record("x");
  r.add(entry(10, "a", "6.1", "boot"));
  r.add(entry(12, "a", "6.1"));
  r.add(entry(15, "a", "6.1"));
  r.add(entry(15, "a", "6.1")); // nothing new
  REQUIRE(r.entries().size() == 2);
  CHECK(r.entries()[0].generation == 10);
  CHECK(r.entries()[1].generation == 15);
  r.add(entry(30, "b", "6.18.44", "boot"));
  r.add(entry(40, "b", "6.18.44"));
  CHECK(r.entries().size() == 4);
  CHECK_FALSE(r.restarted());
  // Generations going backwards: another filesystem with this fsid, or a restored one.
  r.add(entry(5, "c", "7.3.0", "boot"));
  REQUIRE(r.entries().size() == 1);
  CHECK(r.entries()[0].release == "7.3.0");
  REQUIRE(r.restarted());
  CHECK(r.restarted()->find("went backwards (from 40 to 5") != std::string::npos);
}

TEST_CASE("kernel record: the window of a generation")
{
  auto r = empty_record("x");
  r.add(entry(10, "a", "6.1.0", "boot"));
  r.add(entry(20, "a", "6.1.0", "shutdown"));
  r.add(entry(25, "b", "6.18.44", "boot"));
  r.add(entry(40, "b", "6.18.44"));

  // Before the first entry: a gap.
  auto w = r.window_of(5, "b");
  CHECK_FALSE(w.known);
  CHECK(w.id == "gap:start");
  // Generation 10 was committed before the first entry was taken.
  CHECK(r.window_of(10, "b").id == "gap:start");
  // Between two entries of boot a: written by 6.1.0.
  for (uint64_t g : {11, 15, 20}) {
    auto k = r.window_of(g, "b");
    CHECK(k.known);
    CHECK(k.id == "boot:a");
    CHECK(k.release == "6.1.0");
  }
  // Between boot a's shutdown and boot b's first entry: a gap (another host may have mounted it).
  auto between = r.window_of(22, "b");
  CHECK_FALSE(between.known);
  CHECK(between.id == "gap:20");
  CHECK_FALSE(between.release.has_value());
  // Inside boot b.
  CHECK(r.window_of(30, "b").release == "6.18.44");
  // After the last entry: this boot's kernel when the last entry is of this boot ...
  CHECK(r.window_of(41, "b").known);
  // ... a gap when it is of another boot.
  CHECK_FALSE(r.window_of(41, "c").known);
  CHECK(r.window_of(41, "c").id == "gap:40");
  // No record at all: one gap.
  CHECK(empty_record("y").window_of(7, "b").id == "gap:start");
}
