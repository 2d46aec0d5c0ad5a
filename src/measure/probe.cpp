// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "scratch.hpp"

#include <vmcsum/audit/audit.hpp>
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/btrfs/profile.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/host_context.hpp>
#include <vmcsum/measure/probe.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/mount_table.hpp>
#include <vmcsum/sys/signals.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

namespace vmcsum::core {

// --- trace lines and verdicts ---------------------------------------------------------------

bool OrderedExtentEvent::has_flag(std::string_view name) const
{
  return std::find(flags.begin(), flags.end(), name) != flags.end();
}

namespace {

// Leading decimal digits of `s` ("5(FS_TREE)" -> 5); false when there are none or on overflow.
bool leading_u64(std::string_view s, uint64_t& out)
{
  uint64_t v = 0;
  size_t i = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) {
      return false;
    }
    v = v * 10 + d;
  }
  out = v;
  return i > 0;
}

bool is_uuid(std::string_view s)
{
  if (s.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') {
        return false;
      }
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

std::string lower(std::string_view s)
{
  std::string out(s);
  for (auto& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string join(const std::vector<std::string>& v, const std::string& sep)
{
  std::string out;
  for (const auto& s : v) {
    out += (out.empty() ? "" : sep) + s;
  }
  return out;
}

} // namespace

std::optional<OrderedExtentEvent> parse_ordered_extent_line(std::string_view line)
{
  static constexpr std::string_view k_tag = "btrfs_ordered_extent_add: ";
  if (line.empty() || line.front() == '#') {
    return std::nullopt;
  }
  auto at = line.find(k_tag);
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view rest = line.substr(at + k_tag.size());
  OrderedExtentEvent ev;
  // TP_printk_btrfs() puts "<fsid>: " first (kernels since 4.x).
  if (auto colon = rest.find(": "); colon != std::string_view::npos) {
    if (is_uuid(rest.substr(0, colon))) {
      ev.fsid = lower(rest.substr(0, colon));
      rest.remove_prefix(colon + 2);
    }
  }
  bool have_ino = false;
  while (!rest.empty()) {
    auto space = rest.find(' ');
    std::string_view token = rest.substr(0, space);
    rest.remove_prefix(space == std::string_view::npos ? rest.size() : space + 1);
    auto eq = token.find('=');
    if (eq == std::string_view::npos) {
      continue;
    }
    std::string_view key = token.substr(0, eq);
    std::string_view value = token.substr(eq + 1);
    if (key == "root") {
      if (!leading_u64(value, ev.root)) {
        return std::nullopt;
      }
    } else if (key == "ino") {
      if (!leading_u64(value, ev.ino) || value.size() != std::to_string(ev.ino).size()) {
        return std::nullopt;
      }
      have_ino = true;
    } else if (key == "file_offset") {
      leading_u64(value, ev.file_offset);
    } else if (key == "len") {
      leading_u64(value, ev.len);
    } else if (key == "flags") {
      while (!value.empty()) {
        auto bar = value.find('|');
        std::string_view name = value.substr(0, bar);
        if (!name.empty()) {
          ev.flags.emplace_back(name);
        }
        value.remove_prefix(bar == std::string_view::npos ? value.size() : bar + 1);
      }
    }
  }
  if (!have_ino) {
    return std::nullopt;
  }
  return ev;
}

Verdict judge_trace(const std::vector<OrderedExtentEvent>& events, const std::string& what,
                    unsigned writes, uint64_t write_size)
{
  const std::string head =
    std::to_string(writes) + " O_DIRECT write(s) of " + human_bytes(write_size) + " to " + what;
  if (events.empty()) {
    return {DioWrite::unknown,
            head + " left no btrfs_ordered_extent_add event in the trace (not recorded or lost)"};
  }
  size_t direct = 0;
  std::set<std::string> kinds;
  for (const auto& e : events) {
    direct += e.has_flag("DIRECT") ? 1 : 0;
    kinds.insert(e.flags.empty() ? "none" : join(e.flags, "|"));
  }
  const std::string seen = head + " gave " + std::to_string(events.size()) +
                           " ordered extent(s) with flags " +
                           join(std::vector<std::string>(kinds.begin(), kinds.end()), ", ");
  if (direct == events.size()) {
    return {DioWrite::direct, seen + ": every one DIRECT, so the writes went to the device as "
                                     "direct IO"};
  }
  if (direct == 0) {
    return {DioWrite::buffered_fallback,
            seen + ": none DIRECT, so the data went through the page cache (buffered fallback)"};
  }
  return {DioWrite::unknown, seen + ": " + std::to_string(direct) + " of " +
                               std::to_string(events.size()) +
                               " DIRECT, a mix that gives no single answer"};
}

Verdict judge_race(const RaceObservation& obs)
{
  const std::string head = std::to_string(obs.writes) + " O_DIRECT write(s) of " +
                           human_bytes(obs.write_size) + " to a checksummed scratch file, " +
                           std::to_string(obs.raced_writes) +
                           " of them while another thread changed the buffer";
  if (obs.eio_offset) {
    return {DioWrite::direct,
            head + "; reading it back with O_DIRECT failed with EIO at offset " +
              std::to_string(*obs.eio_offset) +
              ": a false checksum mismatch, so the writes were zero-copy direct IO"};
  }
  if (obs.raced_writes == 0 || obs.raced_writes * 2 < (obs.per_pass ? obs.per_pass : obs.writes)) {
    return {DioWrite::unknown, head + "; too few writes raced with a change of their buffer for "
                                      "the absence of errors to prove anything"};
  }
  return {DioWrite::buffered_fallback,
          head + "; all " + human_bytes(obs.bytes_read) +
            " read back with valid checksums, so the kernel copied the data before checksumming "
            "it (buffered fallback, or bounce buffers on 7.3+)"};
}

Verdict combine_with_table(const Verdict& measured, DioWrite table, bool traced,
                           const std::string& release)
{
  Verdict v = measured;
  const std::string who = "Linux " + (release.empty() ? std::string("?") : release);
  const std::string bounces = "the version table says " + who +
                              " copies these writes into bounce buffers (e9b7b9d9e78e, 7.3)";
  if (traced) {
    if (measured.write == DioWrite::direct && table == DioWrite::bounce) {
      v.write = DioWrite::bounce;
      v.table_decided = true;
      v.evidence +=
        "; a write copied into bounce buffers is most likely traced as DIRECT too "
        "(docs/kernel-facts.md 1.4, unverified), so the tracepoint cannot tell bounce from "
        "zero-copy, and " +
        bounces + ": bounce, from the trace and the table together";
    } else if (measured.write == DioWrite::direct && table == DioWrite::direct) {
      v.evidence += " (bounce buffers might look the same, but the version table says " + who +
                    " has none for these writes)";
    } else if (measured.write == DioWrite::buffered_fallback && table == DioWrite::bounce) {
      v.evidence += "; but " + bounces +
                    ": either this kernel lacks them, or bounced writes are not traced as DIRECT "
                    "(unverified); both are safe copies";
    }
    return v;
  }
  if (measured.write == DioWrite::buffered_fallback && table == DioWrite::bounce) {
    v.write = DioWrite::bounce;
    v.table_decided = true;
    v.evidence += "; the race cannot tell bounce buffers from the buffered fallback (both copy "
                  "the data before checksumming it), and " +
                  bounces + ": bounce, from the race and the table together";
  }
  return v;
}

std::string probe_method_name(ProbeMethod m)
{
  switch (m) {
  case ProbeMethod::automatic:
    return "auto";
  case ProbeMethod::tracefs:
    return "tracefs";
  case ProbeMethod::race:
    return "race";
  }
  return "auto";
}

namespace {
bool any_duplication(const std::vector<std::string>& profiles)
{
  return std::any_of(profiles.begin(), profiles.end(),
                     [](const std::string& p) { return btrfs::profile_has_duplication(p); });
}
} // namespace

DioWrite table_answer(const DioPolicy& policy, bool nodatasum,
                      const std::vector<std::string>& profiles)
{
  if (profiles.empty()) {
    const DioWrite single = dio_write_for(policy, nodatasum, false);
    return single == dio_write_for(policy, nodatasum, true) ? single : DioWrite::unknown;
  }
  return dio_write_for(policy, nodatasum, any_duplication(profiles));
}

DioWrite table_nocow_answer(const DioPolicy& policy, const std::vector<std::string>& profiles)
{
  return table_answer(policy, true, profiles);
}

bool apply_probe(DioPolicy& policy, const FsProbe& fs)
{
  std::vector<std::string> said;
  if (fs.data_profiles.empty()) {
    return false; // which cells the answers belong to is unknown
  }
  const bool dup = any_duplication(fs.data_profiles);
  const std::string on = " on " + join(fs.data_profiles, "+");
  if (fs.checksummed != DioWrite::unknown) {
    (dup ? policy.checksummed_duplicated : policy.checksummed) = fs.checksummed;
    (dup ? policy.measured.checksummed_duplicated : policy.measured.checksummed) = true;
    said.push_back("O_DIRECT to checksummed files" + on + " is " + dio_write_name(fs.checksummed));
  }
  if (fs.nocow != DioWrite::unknown) {
    (dup ? policy.nodatasum_duplicated : policy.nodatasum_single) = fs.nocow;
    (dup ? policy.measured.nodatasum_duplicated : policy.measured.nodatasum_single) = true;
    said.push_back("to NOCOW files" + on + " " + dio_write_name(fs.nocow));
  }
  if (said.empty()) {
    return false;
  }
  policy.reason = "measured by vmcsum probe (" + fs.method + ") on " + fs.mount + ": " +
                  join(said, ", ") + "; otherwise the version table: " + policy.reason;
  return true;
}

std::string probe_summary(const FsProbe& fs)
{
  std::string s = "probe (" + fs.method + ") of " + fs.mount + ": checksummed " +
                  dio_write_name(fs.checksummed) + ", nocow " + dio_write_name(fs.nocow);
  for (const auto& [what, why] : fs.unknown) {
    s += "; " + what + " unknown: " + why;
  }
  return s;
}

// --- the measurement ------------------------------------------------------------------------

namespace {

constexpr uint64_t k_trace_write = 64 * 1024; // a multiple of every btrfs sectorsize
constexpr unsigned k_trace_writes = 4;
constexpr const char* k_instance_prefix = "vmcsum-probe-";

struct Interrupted
{
  int signal;
};

// Polls for a deferred stop signal; throws Interrupted, whose unwinding does the cleanup. It
// goes wherever the work goes, so it also tells the caller where the work is (progress).
class Stop
{
public:
  Stop(const sys::DeferSignals& signals, const MeasureProgressFn& progress, const std::string& path)
    : m_signals(signals)
    , m_progress(progress)
    , m_path(path)
  {
  }
  void check() const
  {
    if (int sig = m_signals.pending()) {
      throw Interrupted{sig};
    }
  }
  void report(const std::string& phase, uint64_t done, uint64_t total) const
  {
    if (m_progress) {
      m_progress({m_path, phase, done, total});
    }
  }

private:
  const sys::DeferSignals& m_signals;
  const MeasureProgressFn& m_progress;
  const std::string& m_path;
};

bool is_dir(const std::string& p)
{
  struct stat st
  {
  };
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void write_file(const std::string& path, std::string_view text)
{
  sys::Fd fd = sys::open_or_throw(path, O_WRONLY | O_TRUNC);
  ssize_t n = ::write(fd.get(), text.data(), text.size());
  if (n < 0) {
    throw_errno("write", path);
  }
  if (static_cast<size_t>(n) != text.size()) {
    throw Error(Errc::io, "short write", path);
  }
}

std::string read_file(const std::string& path)
{
  sys::Fd fd = sys::open_or_throw(path, O_RDONLY);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw_errno("read", path);
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool kernel_has_filesystem(const std::string& name)
{
  std::ifstream in("/proc/filesystems");
  std::string line;
  while (std::getline(in, line)) {
    auto tab = line.find('\t');
    if (line.substr(tab == std::string::npos ? 0 : tab + 1) == name) {
      return true;
    }
  }
  return false;
}

// Where tracefs can be used by this process, or "" with the reason in `why`. When it is not
// mounted, mounts it in a mount namespace of vmcsum's own (made once per process), so nothing
// changes for the rest of the system and the mount vanishes when vmcsum exits.
std::string find_tracefs(const std::string& mountinfo, std::string& why,
                         std::vector<std::string>& notes)
{
  static std::string s_private;
  if (!s_private.empty()) {
    return s_private;
  }
  try {
    sys::MountTable table(mountinfo);
    for (const auto& m : table.of_type("tracefs")) {
      if (is_dir(m.target + "/instances")) {
        return m.target;
      }
    }
  } catch (const Error&) {
    // No mount table: try to mount it ourselves.
  }
  if (!kernel_has_filesystem("tracefs")) {
    why = "this kernel has no tracefs (not in /proc/filesystems)";
    return {};
  }
  if (::geteuid() != 0) {
    why = "tracefs is not mounted, and mounting it needs root";
    return {};
  }
  const char* target = "/sys/kernel/tracing";
  // CLONE_NEWNS implies CLONE_FS, which needs a single-threaded caller: no thread runs here.
  if (::unshare(CLONE_NEWNS) != 0) {
    why = "tracefs is not mounted, and unshare(CLONE_NEWNS) failed: " + errno_text(errno);
    return {};
  }
  // Slave: mounts of the host still reach us, ours never reach the host.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) {
    why = "cannot make the private mount namespace a slave: " + errno_text(errno);
    return {};
  }
  if (::mount("tracefs", target, "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    why = std::string("cannot mount tracefs on ") + target + ": " + errno_text(errno);
    return {};
  }
  s_private = target;
  notes.push_back("tracefs was not mounted: mounted it in vmcsum's own mount namespace, which "
                  "nothing else sees and which ends with vmcsum");
  return s_private;
}

// Instances named by vmcsum runs that are gone (killed before they could clean up).
void remove_stale_instances(const std::string& tracefs, std::vector<std::string>& notes)
{
  const std::string dir = tracefs + "/instances";
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
  if (!d) {
    return;
  }
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (name.rfind(k_instance_prefix, 0) != 0) {
      continue;
    }
    uint64_t pid = 0;
    if (!leading_u64(name.substr(std::strlen(k_instance_prefix)), pid) || pid == 0 ||
        pid > static_cast<uint64_t>(INT32_MAX)) {
      continue;
    }
    if (::kill(static_cast<pid_t>(pid), 0) < 0 && errno == ESRCH) {
      stale.emplace_back(name);
    }
  }
  for (const auto& name : stale) {
    if (::rmdir((dir + "/" + name).c_str()) == 0) {
      notes.push_back("removed tracefs instance " + name + ", left by a vmcsum that was killed");
    }
  }
}

// A tracefs instance of our own (tracefs "instances/" directories have their own buffer and
// event switches, so the global ones are never touched). Removed by the destructor.
class TraceInstance
{
public:
  explicit TraceInstance(const std::string& tracefs)
  {
    static unsigned s_seq = 0;
    m_dir = tracefs + "/instances/" + k_instance_prefix + std::to_string(::getpid()) + "-" +
            std::to_string(++s_seq);
    if (::mkdir(m_dir.c_str(), 0700) != 0) {
      throw_errno("mkdir tracefs instance", m_dir);
    }
    m_made = true;
    m_event = m_dir + "/events/btrfs/btrfs_ordered_extent_add";
    if (!is_dir(m_event)) {
      throw Error(Errc::unsupported, "this kernel has no btrfs:btrfs_ordered_extent_add tracepoint",
                  m_dir);
    }
    try {
      write_file(m_dir + "/buffer_size_kb", "256"); // per CPU; a few dozen events are expected
    } catch (const Error&) {
      // The default size works too.
    }
  }
  ~TraceInstance()
  {
    if (m_enabled) {
      int fd = ::open((m_event + "/enable").c_str(), O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        [[maybe_unused]] auto n = ::write(fd, "0", 1);
        ::close(fd);
      }
    }
    if (m_made) {
      // EBUSY while a file of the instance is still open somewhere: retry for a second.
      for (int i = 0; i < 50 && ::rmdir(m_dir.c_str()) != 0 && errno == EBUSY; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }
  TraceInstance(const TraceInstance&) = delete;
  TraceInstance& operator=(const TraceInstance&) = delete;

  const std::string& dir() const { return m_dir; }
  // Kernel-side filter; false if refused (events are then matched here only).
  bool filter(const std::string& expr)
  {
    try {
      write_file(m_event + "/filter", expr);
      return true;
    } catch (const Error&) {
      return false;
    }
  }
  void enable(bool on)
  {
    m_enabled = on || m_enabled;
    write_file(m_event + "/enable", on ? "1" : "0");
    m_enabled = on;
  }
  std::string trace() const { return read_file(m_dir + "/trace"); }

private:
  std::string m_dir;
  std::string m_event;
  bool m_made = false;
  bool m_enabled = false;
};

struct FsContext
{
  std::string dir;
  uint64_t subvol = 0;
  std::string fsid;
};

void write_all(int fd, const unsigned char* buf, uint64_t size, uint64_t offset,
               const std::string& display)
{
  ssize_t n = ::pwrite(fd, buf, size, static_cast<off_t>(offset));
  if (n < 0) {
    throw_errno("O_DIRECT write", display);
  }
  if (static_cast<uint64_t>(n) != size) {
    throw Error(Errc::io, "short O_DIRECT write", display);
  }
}

// NODATASUM of a scratch inode from its inode item, after a commit so that the item is in the
// tree (docs/kernel-facts.md §3.3). Needs CAP_SYS_ADMIN; nullopt when it cannot be learnt.
std::optional<bool> scratch_nodatasum(const detail::ScratchFile& f, const FsContext& ctx)
{
  if (::geteuid() != 0 || ctx.subvol == 0) {
    return std::nullopt;
  }
  try {
    btrfs::sync_fs(f.fd(), f.display());
    auto item = btrfs::read_inode_item(f.fd(), ctx.subvol, f.ino(), f.display());
    if (!item) {
      return std::nullopt;
    }
    return (item->flags & btrfs::inode_flag::nodatasum) != 0;
  } catch (const Error&) {
    return std::nullopt;
  }
}

void record(FsProbe& fs, const std::string& what, const Verdict& v, DioWrite FsProbe::*field)
{
  fs.*field = v.write;
  fs.evidence.push_back(v.evidence);
  if (v.write == DioWrite::unknown) {
    fs.unknown[what] = v.evidence;
  }
}

// Returns whether the version table had to tell bounce from what the trace showed.
bool trace_method(FsProbe& fs, const FsContext& ctx, const std::string& tracefs, const Stop& stop)
{
  // The instance first: an interruption at any later point must find it to remove it.
  TraceInstance inst(tracefs);
  stop.check();
  constexpr uint64_t trace_total = 2 * k_trace_writes * k_trace_write;
  stop.report("trace", 0, trace_total);
  auto csum = detail::ScratchFile::create(ctx.dir, false);
  stop.check();
  auto nocow = detail::ScratchFile::create(ctx.dir, true);
  stop.check();
  bool filtered = inst.filter("ino == " + std::to_string(csum.ino()) +
                              " || ino == " + std::to_string(nocow.ino()));
  inst.enable(true);
  sys::AlignedBuffer buf(k_trace_write);
  std::memset(buf.data(), 0xa5, buf.size());
  uint64_t traced = 0;
  for (const auto* f : {&csum, &nocow}) {
    for (unsigned i = 0; i < k_trace_writes; ++i) {
      write_all(f->fd(), buf.data(), k_trace_write, i * k_trace_write, f->display());
      stop.report("trace", traced += k_trace_write, trace_total);
      stop.check();
    }
    if (::fdatasync(f->fd()) != 0) {
      throw_errno("fdatasync", f->display());
    }
  }
  inst.enable(false);
  const std::string text = inst.trace();
  stop.check();

  std::vector<OrderedExtentEvent> csum_events, nocow_events;
  std::istringstream lines(text);
  std::string line;
  const std::string fsid = lower(ctx.fsid);
  while (std::getline(lines, line)) {
    auto ev = parse_ordered_extent_line(line);
    if (!ev || (!ev->fsid.empty() && ev->fsid != fsid) ||
        (ev->root != 0 && ctx.subvol != 0 && ev->root != ctx.subvol)) {
      continue;
    }
    if (ev->ino == csum.ino()) {
      csum_events.push_back(std::move(*ev));
    } else if (ev->ino == nocow.ino()) {
      nocow_events.push_back(std::move(*ev));
    }
  }
  fs.evidence.push_back("traced btrfs:btrfs_ordered_extent_add in tracefs instance " + inst.dir() +
                        (filtered ? " (filtered on the scratch inodes)" : ""));

  const std::string csum_what =
    "a checksummed scratch file (inode " + std::to_string(csum.ino()) + ")";
  const std::string nocow_what = "a NOCOW scratch file (inode " + std::to_string(nocow.ino()) + ")";
  Verdict vc = judge_trace(csum_events, csum_what, k_trace_writes, k_trace_write);
  Verdict vn = judge_trace(nocow_events, nocow_what, k_trace_writes, k_trace_write);
  auto csum_nds = scratch_nodatasum(csum, ctx);
  auto nocow_nds = scratch_nodatasum(nocow, ctx);
  if (csum.nocow() || (csum_nds && *csum_nds)) {
    vc = {DioWrite::unknown, "the checksummed scratch file got no data checksums (NOCOW or "
                             "NODATASUM: mounted with nodatacow or nodatasum?), so it cannot "
                             "stand for a checksummed image"};
  }
  if (!nocow.nocow() || (nocow_nds && !*nocow_nds)) {
    vn = {DioWrite::unknown, "the NOCOW scratch file did not become NOCOW and NODATASUM"};
  }
  vc = combine_with_table(vc, fs.table_checksummed, true, fs.kernel_release);
  vn = combine_with_table(vn, fs.table_nocow, true, fs.kernel_release);
  record(fs, "checksummed", vc, &FsProbe::checksummed);
  record(fs, "nocow", vn, &FsProbe::nocow);
  return vc.table_decided || vn.table_decided;
}

// Reads one pass of the race file back with O_DIRECT, which bypasses the page cache and verifies
// every data checksum against the disk; the first EIO ends it (one is proof enough; reading on
// would only log more failures).
void read_back(const detail::ScratchFile& f, sys::AlignedBuffer& buf, RaceObservation& obs,
               const Stop& stop)
{
  const uint64_t wsize = obs.write_size;
  stop.report("read back", 0, obs.per_pass * wsize);
  for (uint64_t off = 0; off < obs.per_pass * wsize; off += wsize) {
    ssize_t n = ::pread(f.fd(), buf.data(), wsize, static_cast<off_t>(off));
    if (n < 0 && errno == EIO) {
      obs.eio_offset = off;
      return;
    }
    if (n < 0) {
      throw_errno("O_DIRECT read", f.display());
    }
    if (n == 0) {
      return;
    }
    obs.bytes_read += static_cast<uint64_t>(n);
    stop.report("read back", obs.bytes_read, obs.per_pass * wsize);
    stop.check();
  }
}

RaceObservation run_race(const detail::ScratchFile& f, uint64_t total, uint64_t wsize,
                         const Stop& stop)
{
  sys::AlignedBuffer buf(wsize);
  std::memset(buf.data(), 0x5a, buf.size());
  std::atomic<bool> done{false};
  std::atomic<uint64_t> changes{0};
  // Increments one byte of every 64-byte line, over and over. On a one-CPU kernel without
  // preemption (user-mode-linux) it must yield now and then, or the writer starves
  // (docs/reproducing-the-bug.md).
  auto modify = [&] {
    volatile unsigned char* p = buf.data();
    unsigned since_yield = 0;
    while (!done.load(std::memory_order_relaxed)) {
      for (size_t off = 0; off < wsize; off += 64) {
        p[off] = static_cast<unsigned char>(p[off] + 1);
        if ((++since_yield & 1023) == 0) {
          changes.fetch_add(1, std::memory_order_relaxed);
        }
        if (since_yield >= 100000) {
          since_yield = 0;
          ::sched_yield();
          if (done.load(std::memory_order_relaxed)) {
            break;
          }
        }
      }
    }
  };
  struct Joiner
  {
    std::atomic<bool>& done;
    std::thread thread;
    ~Joiner()
    {
      done.store(true);
      if (thread.joinable()) {
        thread.join();
      }
    }
  };

  RaceObservation obs;
  obs.write_size = wsize;
  obs.per_pass = total / wsize;
  {
    std::thread thread;
    try {
      thread = std::thread(modify);
    } catch (const std::system_error& e) {
      // No thread may be started (a cgroup's pids.max, RLIMIT_NPROC): without the modifier
      // there is no race to watch; the caller reports the method's answer as unknown.
      throw Error(errc_from_errno(e.code().value()),
                  std::string("no thread could be started to change the buffer (") + e.what() + ")",
                  f.display(), e.code().value());
    }
    Joiner modifier{done, std::move(thread)};
    // A write raced only if the modifier ran during it. On a busy machine it often does not get
    // a CPU in time (seen under load: too few raced writes, an honest "unknown"), so the file is
    // written over again, up to kMaxPasses times, until half a pass's worth of writes raced:
    // what proves the kernel copied is the number of raced writes that still read back, not
    // their share.
    constexpr unsigned kMaxPasses = 8;
    for (unsigned pass = 0; pass < kMaxPasses && obs.raced_writes * 2 < obs.per_pass; ++pass) {
      const std::string phase =
        pass == 0 ? "race write" : "race write, pass " + std::to_string(pass + 1);
      stop.report(phase, 0, obs.per_pass * wsize);
      for (uint64_t off = 0; off + wsize <= total; off += wsize) {
        uint64_t before = changes.load(std::memory_order_relaxed);
        write_all(f.fd(), buf.data(), wsize, off, f.display());
        if (changes.load(std::memory_order_relaxed) != before) {
          ++obs.raced_writes;
        }
        ++obs.writes;
        stop.report(phase, off + wsize, obs.per_pass * wsize);
        stop.check();
      }
    }
  }
  if (::fsync(f.fd()) != 0) {
    throw_errno("fsync", f.display());
  }
  stop.check();
  read_back(f, buf, obs, stop);
  return obs;
}

// Returns whether the version table had to tell bounce from what the race showed.
bool race_method(FsProbe& fs, const FsContext& ctx, const ProbeOptions& opts, const Stop& stop)
{
  const uint64_t need = opts.race_bytes * 4;
  if (detail::free_bytes(ctx.dir) < need) {
    fs.unknown["checksummed"] = "not enough free space in " + ctx.dir + " for the race method (" +
                                human_bytes(need) + " wanted)";
    return false;
  }
  stop.report("race write", 0, opts.race_bytes / opts.race_write_size * opts.race_write_size);
  auto f = detail::ScratchFile::create(ctx.dir, false);
  stop.check();
  RaceObservation obs = run_race(f, opts.race_bytes, opts.race_write_size, stop);
  Verdict v = judge_race(obs);
  auto nds = scratch_nodatasum(f, ctx);
  if (f.nocow() || (nds && *nds)) {
    v = {DioWrite::unknown, "the checksummed scratch file got no data checksums (mounted with "
                            "nodatacow or nodatasum?), so the race cannot show anything"};
  }
  if (v.write == DioWrite::direct) {
    fs.notes.push_back("the race left a false checksum mismatch in the scratch file (now freed): "
                       "the kernel log shows 'csum failed' for its inode " +
                       std::to_string(f.ino()) + " and the device's corruption counter went up");
  }
  v = combine_with_table(v, fs.table_checksummed, false, fs.kernel_release);
  record(fs, "checksummed", v, &FsProbe::checksummed);
  return v.table_decided;
}

void run_methods(FsProbe& fs, const FsContext& ctx, const ProbeOptions& opts, const Stop& stop)
{
  std::string trace_why;
  if (opts.method != ProbeMethod::race) {
    std::string root = find_tracefs(opts.mountinfo, trace_why, fs.notes);
    if (!root.empty()) {
      try {
        remove_stale_instances(root, fs.notes);
        fs.method = trace_method(fs, ctx, root, stop) ? "tracefs+version-table" : "tracefs";
        return;
      } catch (const Error& e) {
        trace_why = e.what();
        fs.evidence.clear();
        fs.unknown.clear();
      }
    }
    if (opts.method == ProbeMethod::tracefs) {
      fs.unknown["checksummed"] = "tracefs method: " + trace_why;
      fs.unknown["nocow"] = "tracefs method: " + trace_why;
      return;
    }
    fs.notes.push_back("tracefs method not possible (" + trace_why + "); used the race method");
  }
  fs.method = "race";
  try {
    if (race_method(fs, ctx, opts, stop)) {
      fs.method = "race+version-table";
    }
  } catch (const Error& e) {
    fs.unknown["checksummed"] = std::string("race method: ") + e.what();
  }
  fs.unknown["nocow"] = "the race method cannot tell: NOCOW files have no checksums, so a race "
                        "leaves no trace" +
                        (trace_why.empty() ? std::string() : "; tracefs method: " + trace_why);
  if (fs.checksummed == DioWrite::unknown && fs.evidence.empty()) {
    fs.method = "none";
  }
}

// Opens the directory for scratch files of `path` and checks that it is on btrfs.
sys::Fd open_btrfs_dir(const std::string& path, std::string& dir)
{
  dir = detail::scratch_dir_of(path);
  sys::Fd fd = sys::open_or_throw(dir, O_RDONLY | O_DIRECTORY);
  struct statfs sfs
  {
  };
  if (::fstatfs(fd.get(), &sfs) < 0) {
    throw_errno("statfs", dir);
  }
  if (static_cast<unsigned long>(sfs.f_type) != BTRFS_SUPER_MAGIC) {
    throw Error(Errc::not_btrfs, "not on btrfs: nothing to probe", path);
  }
  return fd;
}

} // namespace

FsProbe probe_filesystem(const std::string& path, const ProbeOptions& opts,
                         const MeasureProgressFn& progress)
{
  FsProbe fs;
  fs.paths.push_back(path);
  sys::Fd dfd = open_btrfs_dir(path, fs.scratch_dir);
  FsContext ctx;
  ctx.dir = fs.scratch_dir;
  auto info = btrfs::fs_info(dfd.get(), ctx.dir);
  fs.fsid = ctx.fsid = info.fsid;
  fs.sector_size = info.sectorsize;
  try {
    fs.data_profiles = btrfs::data_profiles(btrfs::space_info(dfd.get(), ctx.dir));
  } catch (const Error& e) {
    fs.notes.push_back("data profile unknown: " + e.detail());
  }
  try {
    ctx.subvol = btrfs::subvolume_id(dfd.get(), ctx.dir);
  } catch (const Error&) {
    ctx.subvol = 0; // trace events are then matched on fsid and inode only
  }
  try {
    sys::MountTable table(opts.mountinfo);
    if (auto m = table.find(ctx.dir)) {
      fs.mount = m->target;
    }
  } catch (const Error&) {
    // The directory names the filesystem well enough.
  }
  if (fs.mount.empty()) {
    fs.mount = ctx.dir;
  }
  const KernelContext kernel = kernel_context(opts.kernel_release);
  fs.kernel_release = kernel.release;
  fs.table_checksummed = table_answer(kernel.policy, false, fs.data_profiles);
  fs.table_nocow = table_answer(kernel.policy, true, fs.data_profiles);

  // Declared before everything that needs cleaning up, so it is destroyed (and a held-back
  // signal delivered) only after the instance and the scratch files are gone.
  sys::DeferSignals signals;
  Stop stop(signals, progress, path);
  try {
    stop.check();
    run_methods(fs, ctx, opts, stop);
  } catch (const Interrupted& i) {
    fs.interrupted = i.signal;
    fs.notes.push_back("interrupted by signal " + std::to_string(i.signal) +
                       " after removing the scratch files and the tracefs instance");
  }
  return fs;
}

ProbeResult probe(const ProbeOptions& opts, const MeasureProgressFn& progress)
{
  ProbeResult r;
  const KernelContext kernel = kernel_context(opts.kernel_release);
  r.kernel_release = kernel.release;
  r.version_table = kernel.policy;

  std::vector<std::string> paths = opts.paths;
  if (paths.empty()) {
    AuditOptions ao;
    ao.kernel_log.clear();
    ao.mountinfo = opts.mountinfo;
    AuditResult found = audit(ao);
    for (const auto& img : found.images) {
      if (img.facts.on_btrfs) {
        paths.push_back(img.facts.canonical_path);
      }
    }
    if (paths.empty()) {
      r.notes.push_back("no VM image on btrfs was found (the places audit searches); name a "
                        "path to probe its filesystem");
      return r;
    }
  }

  std::map<std::string, size_t> by_fsid;
  for (const auto& p : paths) {
    std::string fsid;
    try {
      std::string dir;
      sys::Fd fd = open_btrfs_dir(p, dir);
      fsid = btrfs::fs_info(fd.get(), dir).fsid;
    } catch (const Error& e) {
      r.problems.push_back({p, e.detail(), e.code() == Errc::not_btrfs});
      continue;
    }
    if (auto it = by_fsid.find(fsid); it != by_fsid.end()) {
      r.filesystems[it->second].paths.push_back(p);
      continue;
    }
    FsProbe fs;
    try {
      fs = probe_filesystem(p, opts, progress);
    } catch (const Error& e) {
      r.problems.push_back({p, e.detail(), e.code() == Errc::not_btrfs});
      continue;
    }
    by_fsid[fsid] = r.filesystems.size();
    r.filesystems.push_back(std::move(fs));
    if (r.filesystems.back().interrupted) {
      r.interrupted = r.filesystems.back().interrupted;
      break;
    }
  }
  return r;
}

} // namespace vmcsum::core
