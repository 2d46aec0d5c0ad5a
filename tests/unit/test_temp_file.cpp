// SPDX-License-Identifier: GPL-2.0-or-later
// sys::TempFile and the stale-temp clean-up: a leftover is removed only with proof that vmcsum
// made it (issue 12 #3); an image that is merely named like a temp file is never deleted.
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/temp_file.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

using namespace vmcsum::sys;

namespace {

// A scratch directory, removed with what is left in it.
struct Scratch
{
  Scratch()
  {
    char tmpl[] = "/tmp/vmcsum-unit-temp.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
    fd = Fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(fd);
  }
  ~Scratch() { std::system(("rm -rf '" + path + "'").c_str()); }
  bool exists(const std::string& name) const
  {
    struct stat st
    {
    };
    return ::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  }
  void write(const std::string& name, const std::string& content) const
  {
    Fd f(::openat(fd.get(), name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(f);
    REQUIRE(::write(f.get(), content.data(), content.size()) ==
            static_cast<ssize_t>(content.size()));
  }
  std::string read(const std::string& name) const
  {
    Fd f(::openat(fd.get(), name.c_str(), O_RDONLY | O_CLOEXEC));
    char buf[256];
    ssize_t n = f ? ::read(f.get(), buf, sizeof buf) : -1;
    return n < 0 ? std::string("<unreadable>") : std::string(buf, static_cast<size_t>(n));
  }
  std::string path;
  Fd fd;
};

// The marker this process can set: trusted.* as root, user.* otherwise.
const char* my_marker()
{
  return ::geteuid() == 0 ? k_temp_marker_trusted : k_temp_marker_user;
}

} // namespace

TEST_CASE("temp file: created marked and locked under a reserved name, removed unless committed")
{
  Scratch s;
  std::string name;
  {
    TempFile t(s.fd.get(), "disk.raw", s.path);
    name = t.name();
    CHECK(is_temp_name_for(name, "disk.raw"));
    CHECK(t.display_path() == s.path + "/" + name);
    CHECK(s.exists(name));
    char buf[300];
    ssize_t n = ::fgetxattr(t.fd(), my_marker(), buf, sizeof buf);
    REQUIRE(n > 0);
    CHECK(std::string(buf, static_cast<size_t>(n)) == name);
    // Another open of the name sees the lock a running vmcsum holds.
    Fd other(::openat(s.fd.get(), name.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(other);
    CHECK(::flock(other.get(), LOCK_EX | LOCK_NB) < 0);
    // ... so the clean-up keeps it.
    auto kept = remove_stale_temp(s.fd.get(), name, false);
    REQUIRE(kept);
    CHECK_FALSE(kept->removed);
    CHECK(kept->why.find("another vmcsum") != std::string::npos);
  }
  CHECK_FALSE(s.exists(name));
}

TEST_CASE("temp file: commit replaces the target, without the marker")
{
  Scratch s;
  s.write("disk.raw", "old");
  std::string name;
  {
    TempFile t(s.fd.get(), "disk.raw", s.path);
    name = t.name();
    REQUIRE(::pwrite(t.fd(), "new", 3, 0) == 3);
    t.commit("disk.raw");
  }
  CHECK_FALSE(s.exists(name));
  CHECK(s.read("disk.raw") == "new");
  Fd f(::openat(s.fd.get(), "disk.raw", O_RDONLY | O_CLOEXEC));
  char buf[300];
  CHECK(::fgetxattr(f.get(), my_marker(), buf, sizeof buf) < 0);
}

TEST_CASE("stale temps: only a marked, unlocked file named for itself is removed")
{
  Scratch s;
  // A leftover of a killed run: TempFile's inode and name, its lock gone with the process.
  std::string dead;
  {
    TempFile t(s.fd.get(), "a.raw", s.path);
    dead = t.name();
    t.arm(false);
  }
  REQUIRE(s.exists(dead));
  // An image that a user named like a temp file: no marker.
  const std::string image = ".a.raw.vmcsum-tmp.AbC123";
  s.write(image, "precious");
  // A temp file renamed: its marker names another name.
  std::string moved;
  {
    TempFile t(s.fd.get(), "a.raw", s.path);
    t.arm(false);
    moved = ".a.raw.vmcsum-tmp.Moved1";
    REQUIRE(::renameat(s.fd.get(), t.name().c_str(), s.fd.get(), moved.c_str()) == 0);
  }
  // A marker set by someone who may not (user.* as root; only an unprivileged run trusts it).
  const std::string forged = ".a.raw.vmcsum-tmp.Forge1";
  s.write(forged, "forged");
  {
    Fd f(::openat(s.fd.get(), forged.c_str(), O_RDONLY | O_CLOEXEC));
    ::fsetxattr(f.get(), k_temp_marker_user, forged.data(), forged.size(), 0);
  }

  auto dry = remove_stale_temps(
    s.fd.get(), [](const std::string& n) { return is_temp_name_for(n, "a.raw"); }, true);
  CHECK(s.exists(dead));
  for (const auto& t : dry) {
    CHECK_FALSE(t.removed);
  }

  auto done = remove_stale_temps(
    s.fd.get(), [](const std::string& n) { return is_temp_name_for(n, "a.raw"); }, false);
  CHECK(done.size() == 4);
  for (const auto& t : done) {
    INFO(t.name << ": " << t.why);
    CHECK(t.removed == (t.name == dead || (t.name == forged && ::geteuid() != 0)));
  }
  CHECK_FALSE(s.exists(dead));
  CHECK(s.read(image) == "precious");
  CHECK(s.exists(moved));
  CHECK(s.exists(forged) == (::geteuid() == 0));
}

TEST_CASE("stale temps: not regular files are not reported")
{
  Scratch s;
  const std::string fifo = ".x.vmcsum-tmp.Fifo12";
  REQUIRE(::mkfifoat(s.fd.get(), fifo.c_str(), 0600) == 0);
  CHECK_FALSE(remove_stale_temp(s.fd.get(), fifo, false));
  CHECK_FALSE(remove_stale_temp(s.fd.get(), ".x.vmcsum-tmp.Gone12", false));
  CHECK(s.exists(fifo));
}

TEST_CASE("temp file: marker xattrs are recognised so they are never copied")
{
  CHECK(is_temp_marker_xattr("trusted.vmcsum.temp"));
  CHECK(is_temp_marker_xattr("user.vmcsum.temp"));
  CHECK_FALSE(is_temp_marker_xattr("user.vmcsum.temp2"));
  CHECK_FALSE(is_temp_marker_xattr("security.selinux"));
  CHECK(random_alnum(6).size() == 6);
}
