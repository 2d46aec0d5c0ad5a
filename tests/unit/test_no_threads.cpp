// SPDX-License-Identifier: GPL-2.0-or-later
// Where no thread may be started (a cgroup's pids.max, RLIMIT_NPROC: clone(2) fails with
// EAGAIN), every part that starts threads does its work on the calling thread and gives what
// it gives with threads: scrub's CopyReader and CsumPrefetch, audit's LookPool, the walk's
// read-ahead, the JSON document's second writer. Each case runs in a child process whose clone(2)
// and clone3(2) a seccomp filter refuses with EAGAIN (the oracle that it does: std::thread throws
// there), against the same work done with threads in this process.
#include "audit/look_pool.hpp"
#include "cli/output.hpp"
#include "scrub/copy_reader.hpp"
#include "scrub/csum_prefetch.hpp"

#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/checksum.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/walk.hpp>

#include <doctest/doctest.h>

#include "scratch_dir.hpp"
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace vmcsum;

namespace {

// The ABI whose system call numbers __NR_clone and __NR_clone3 are (0: not known here, no
// check of it).
#if defined(__x86_64__) && !defined(__ILP32__)
constexpr uint32_t k_audit_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t k_audit_arch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t k_audit_arch = 0;
#endif

// Runs `fn` in a child process where clone(2) and clone3(2) fail with EAGAIN; returns what
// `fn` returned (empty when its checks held) or why it could not be run.
std::string without_threads(const std::function<std::string()>& fn)
{
  int pipefd[2];
  REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
  std::fflush(nullptr); // the child's exit must not write this process's buffers again
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
  }
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(pipefd[0]);
    // A hang (the deadlock this guards against) ends the child: "the child died" below.
    ::alarm(60);
    // Calls of another ABI (x32, int 0x80) are refused outright: only this ABI's clone
    // numbers are known here.
    std::vector<struct sock_filter> filter;
    if (k_audit_arch != 0) {
      filter = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, k_audit_arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      };
    }
    filter.insert(filter.end(),
                  {
                    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 2, 0),
                    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 1, 0),
                    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
                    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
                  });
    struct sock_fprog prog = {static_cast<unsigned short>(filter.size()), filter.data()};
    std::string out;
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
      out = std::string("seccomp: ") + std::strerror(errno);
    } else {
      bool refused = false;
      try {
        std::thread t([] {});
        t.join();
      } catch (const std::system_error&) {
        refused = true;
      }
      if (!refused) {
        out = "a thread was started despite the filter";
      } else {
        try {
          out = fn();
        } catch (const std::exception& e) {
          out = std::string("threw: ") + e.what();
        }
      }
    }
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::write(pipefd[1], out.data() + done, out.size() - done);
      if (n <= 0) {
        break;
      }
      done += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return "the child died (status " + std::to_string(status) + ")";
  }
  return out;
}

constexpr uint32_t k_ss = 4096;

// `count` sectors, sector i filled with byte i + 1, and their crc32c csums; from 3 sectors on,
// sector 1's stored csum is wrong and sector 2 has none.
struct Sectors
{
  sys::Fd fd;
  btrfs::RangeCsums cs;
};

Sectors sectors(const Scratch& t, size_t count)
{
  const std::string path = t.path() + "/sectors";
  Sectors s{sys::Fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)), {}};
  REQUIRE(s.fd.get() >= 0);
  Checksummer sum(0);
  s.cs.sectorsize = k_ss;
  s.cs.csum_size = static_cast<uint16_t>(sum.size());
  s.cs.present.assign(count, 1);
  s.cs.csums.resize(count * sum.size());
  for (size_t i = 0; i < count; ++i) {
    std::vector<uint8_t> b(k_ss, static_cast<uint8_t>(i + 1));
    REQUIRE(::pwrite(s.fd.get(), b.data(), b.size(), static_cast<off_t>(i * k_ss)) == k_ss);
    sum.compute(b, s.cs.csums.data() + i * sum.size());
  }
  if (count >= 3) {
    s.cs.csums[1 * s.cs.csum_size] ^= 0xff;
    s.cs.present[2] = 0;
  }
  return s;
}

// Reads of the sectors on three devices, more than the pool holds at once, each at a shift
// (its last sectors past the end of the file: unreadable); what each copy found bad, in order.
std::vector<std::vector<uint8_t>> read_copies(const Sectors& s)
{
  constexpr size_t n = 12;
  core::CopyReader reader(4, 8 * k_ss, 0);
  std::vector<core::CopyRead> reads(n);
  std::vector<std::vector<uint8_t>> bad;
  size_t waited = 0;
  for (size_t i = 0; i < n; ++i) {
    if (reader.free_buffers() == 0) {
      reader.wait(reads[waited++]);
    }
    reads[i] = {i % 3, s.fd.get(), (i % 5) * k_ss, 8 * k_ss, &s.cs, {}, false, nullptr};
    reader.submit(reads[i]);
  }
  while (waited < n) {
    reader.wait(reads[waited++]);
  }
  for (const auto& r : reads) {
    bad.push_back(r.bad);
  }
  return bad;
}

std::string describe(const std::vector<std::vector<uint8_t>>& bad)
{
  std::string out;
  for (const auto& b : bad) {
    for (const uint8_t x : b) {
      out += static_cast<char>('0' + x);
    }
    out += ' ';
  }
  return out;
}

// The files below `root` in walk order, walked with read-ahead from the start and each looked
// at by a LookPool (its look: the entry's path and its size as the problem text).
std::string walk_and_look(const std::string& root)
{
  sys::WalkOptions wo;
  wo.sorted = true;
  wo.prefetch_threads = 4;
  wo.prefetch_from_start = true;
  core::LookPool pool(
    [](sys::WalkEntry& e, core::FactCollector&) {
      core::Looked l;
      l.path = e.path();
      const struct stat* st = e.lstat();
      l.problem = st ? std::to_string(st->st_size) : std::string("no stat");
      return l;
    },
    "/proc/self/mountinfo", nullptr);
  std::string walked;
  sys::walk_tree(
    root,
    [&](sys::WalkEntry& e) {
      if (e.d_type() == DT_REG) {
        walked += e.path() + ";";
        pool.submit(e.keep());
      }
    },
    [&](const std::string& path, const std::string& why) { walked += "!" + path + why + ";"; }, wo);
  std::string looked;
  for (const auto& l : pool.finish()) {
    looked += l.path + "=" + l.problem.value_or("") + ";";
  }
  return walked + "\n" + looked;
}

} // namespace

TEST_CASE("without threads: CopyReader reads and verifies on the submitting thread, the same "
          "verdicts")
{
  Scratch t;
  const Sectors s = sectors(t, 8);
  const std::string threaded = describe(read_copies(s));
  // Shift 0: sector 1's stored csum is wrong; other shifts: every sector holds another's bytes,
  // sector 2 (no csum) never judged, and the sectors past the end unreadable.
  CHECK(threaded.substr(0, 9) == "01000000 ");
  CHECK(threaded.substr(9, 9) == "11011111 ");
  CHECK(without_threads([&] {
          const std::string alone = describe(read_copies(s));
          return alone == threaded ? std::string() : "without threads: " + alone;
        }) == "");
}

TEST_CASE("without threads: CsumPrefetch starts none and the pass goes on")
{
  Scratch t;
  const Sectors s = sectors(t, 1);
  btrfs::FsInfo info;
  CHECK(without_threads([&] {
          // 64 MiB: enough for the prefetch to want its threads (it searches nothing here: the
          // file is on no btrfs, and without threads it never tries).
          core::CsumPrefetch prefetch(s.fd.get(), info, {{0, 64u << 20}});
          prefetch.reached(32u << 20);
          prefetch.reached(64u << 20);
          return std::string();
        }) == "");
}

TEST_CASE("without threads: the walk's read-ahead and audit's LookPool give what they give "
          "with threads")
{
  Scratch t;
  for (int d = 0; d < 6; ++d) {
    const std::string dir = t.path() + "/d" + std::to_string(d) + "/sub";
    std::filesystem::create_directories(dir);
    for (int f = 0; f < 7; ++f) {
      std::ofstream(dir + "/f" + std::to_string(f)) << std::string(size_t(d * 7 + f), 'x');
    }
  }
  const std::string threaded = walk_and_look(t.path());
  CHECK(std::count(threaded.begin(), threaded.end(), '=') == 42);
  CHECK(without_threads([&] {
          const std::string alone = walk_and_look(t.path());
          return alone == threaded ? std::string() : "without threads:\n" + alone;
        }) == "");
}

TEST_CASE("without threads: a large JSON document is written whole by one thread")
{
  using Json = nlohmann::ordered_json;
  const Json doc = {{"schema", "vmcsum.x/1"}, {"images", Json::array()}};
  // 2000 elements: two threads write them where one may be started (cli/output.cpp).
  const cli::StreamedArray array{"images", 2000, [](size_t i) {
                                   return Json{{"path", "/i/" + std::to_string(i)}, {"n", i}};
                                 }};
  std::ostringstream threaded;
  cli::write_document(threaded, doc, false, &array);
  CHECK(nlohmann::json::parse(threaded.str())["images"].size() == 2000);
  CHECK(without_threads([&] {
          std::ostringstream alone;
          cli::write_document(alone, doc, false, &array);
          return alone.str() == threaded.str() ? std::string() : "without threads: differs";
        }) == "");
}
