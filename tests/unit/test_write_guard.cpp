// SPDX-License-Identifier: GPL-2.0-or-later
// The image-write safety module: outcome names, the errno -> stop rule, refusals, lock probe.
#include <vmcsum/error.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/write/guard.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace vmcsum::core;
using vmcsum::Errc;
using vmcsum::Error;
using vmcsum::sys::Fd;

TEST_CASE("write guard: one name table, stable JSON strings")
{
  const std::pair<Outcome, const char*> rows[] = {
    {Outcome::flag_set, "flag-set"},
    {Outcome::rewritten, "rewritten"},
    {Outcome::unchanged, "unchanged"},
    {Outcome::skipped, "skipped"},
    {Outcome::repaired, "repaired"},
    {Outcome::clean, "clean"},
    {Outcome::left, "left"},
    {Outcome::restored, "restored"},
    {Outcome::would_repair, "would-repair"},
    {Outcome::would_restore, "would-restore"},
    {Outcome::refused, "refused"},
    {Outcome::failed, "failed"},
  };
  for (const auto& [o, name] : rows) {
    CHECK(outcome_name(o) == name);
    CHECK(outcome_from_name(name) == o);
  }
  CHECK_FALSE(outcome_from_name("rewrite"));
  CHECK(is_stop(Outcome::refused));
  CHECK(is_stop(Outcome::failed));
  CHECK_FALSE(is_stop(Outcome::skipped));
}

TEST_CASE("write guard: errno -> stop, one rule for set, repair and undo")
{
  struct Row
  {
    int err;
    Outcome outcome;
    const char* code;
  };
  const Row rows[] = {
    {EROFS, Outcome::refused, "read-only"}, // as the plan says for a read-only mount
    {ENOSPC, Outcome::failed, "no-space"},  {EDQUOT, Outcome::failed, "no-space"},
    {EIO, Outcome::failed, "io-error"},     {EPERM, Outcome::failed, "io-error"},
  };
  for (const auto& r : rows) {
    WriteStop s = stop_from_errno(r.err, "io-error", "write x");
    CHECK(s.outcome == r.outcome);
    CHECK(s.code == r.code);
    CHECK(s.message.rfind("write x: ", 0) == 0);
  }
  WriteStop e = stop_from_error(Error(Errc::io, "FS_IOC_SETFLAGS", "/x", EROFS), "flags-not-set");
  CHECK(e.outcome == Outcome::refused);
  CHECK(e.code == "read-only");
  e = stop_from_error(Error(Errc::io, "FS_IOC_SETFLAGS", "/x", EINVAL), "flags-not-set");
  CHECK(e.outcome == Outcome::failed);
  CHECK(e.code == "flags-not-set");
  e = stop_from_error(Error(Errc::usage, "not a backup", "/b"), "bad-backup");
  CHECK(e.outcome == Outcome::refused);
  CHECK(e.code == "bad-backup");
  CHECK_THROWS_AS(stop_on_errno(EROFS, "x", "y"), WriteStop);
}

TEST_CASE("write guard: refusals")
{
  CHECK(in_use_refusals({}, {}).empty());
  ImageUser u{42, "qemu-system-x86", 7, true, true};
  ImageLock l;
  l.kind = "OFDLCK";
  l.mode = "READ";
  l.start = 100;
  l.end = 100;
  l.qemu = true;
  auto r = in_use_refusals({u}, {l});
  REQUIRE(r.size() == 2);
  CHECK(r[0].code == "in-use");
  CHECK(r[0].message.find("qemu-system-x86[42] (write, O_DIRECT)") != std::string::npos);
  CHECK(r[1].code == "locked");
  CHECK(r[1].message.find("QEMU's image lock") != std::string::npos);
  CHECK(refuse_read_only().code == "read-only");
  CHECK(refuse_not_regular("fifo").code == "not-regular");
  CHECK(refuse_hard_links(3).message.find("3 hard links") != std::string::npos);
  CHECK(refuse_no_space(100, 60, 40, 10).code == "no-space");
}

TEST_CASE("write guard: the cancel check stops with the caller's words")
{
  std::atomic<bool> cancel{false};
  CancelCheck check(cancel, "interrupted: nothing changed", "someone opened it");
  CHECK_NOTHROW(check());
  cancel = true;
  try {
    check();
    FAIL("no stop");
  } catch (const WriteStop& s) {
    CHECK(s.outcome == Outcome::failed);
    CHECK(s.code == "interrupted");
    CHECK(s.message == "interrupted: nothing changed");
  }
}

TEST_CASE("write guard: an OFD lock held through another descriptor is found through ours")
{
  char path[] = "/tmp/vmcsum-unit-guard.XXXXXX";
  Fd holder(::mkstemp(path));
  REQUIRE(holder);
  struct flock fl
  {
  };
  fl.l_type = F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 100;
  fl.l_len = 1;
  REQUIRE(::fcntl(holder.get(), F_OFD_SETLK, &fl) == 0);
  Fd ours(::open(path, O_RDONLY | O_CLOEXEC));
  ImageUsers found = find_users(ours.get(), vmcsum::core::ProcScan{});
  ::unlink(path);
  REQUIRE(found.locks.size() == 1);
  CHECK(found.locks[0].kind == "OFDLCK");
  CHECK(found.locks[0].start == 100);
  CHECK(found.locks[0].qemu);
  CHECK(found.locks[0].seen_by == "F_OFD_GETLK");
  CHECK_FALSE(read_only_refusal(ours.get()));
}

TEST_CASE("write guard: repair and undo refuse an image in use with every reason, users listed")
{
  char path[] = "/tmp/vmcsum-unit-guard.XXXXXX";
  Fd holder(::mkstemp(path));
  REQUIRE(holder);
  Fd ours(::open(path, O_RDONLY | O_CLOEXEC));
  struct stat st = {};
  REQUIRE(::fstat(ours.get(), &st) == 0);
  std::vector<ImageUser> users;
  std::vector<ImageLock> locks;
  SUBCASE("nobody: no stop, nothing listed")
  {
    CHECK_NOTHROW(refuse_if_in_use(ours.get(), ProcScan{}, users, locks));
    CHECK(users.empty());
    CHECK(locks.empty());
  }
  SUBCASE("open by a VM that also holds QEMU's lock byte: one stop saying both")
  {
    struct flock fl
    {
    };
    fl.l_type = F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 100;
    fl.l_len = 1;
    REQUIRE(::fcntl(holder.get(), F_OFD_SETLK, &fl) == 0);
    ProcScan procs;
    OpenFile of;
    of.pid = 1; // never this process: find_users leaves its own descriptors out
    of.comm = "qemu-system-x86";
    of.fd = 7;
    of.dev = st.st_dev;
    of.ino = st.st_ino;
    of.flags = O_RDWR | O_DIRECT;
    procs.open_files.push_back(of);
    try {
      refuse_if_in_use(ours.get(), procs, users, locks);
      FAIL("no stop");
    } catch (const WriteStop& s) {
      CHECK(s.outcome == Outcome::refused);
      CHECK(s.code == refusal_code::in_use);
      CHECK(s.message.find("qemu-system-x86[1]") != std::string::npos);
      CHECK(s.message.find("; is locked: OFDLCK READ lock on bytes 100-100") != std::string::npos);
    }
    REQUIRE(users.size() == 1);
    CHECK(users[0].o_direct);
    CHECK(users[0].writable);
    CHECK(locks.size() == 1);
  }
  ::unlink(path);
}
