// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/dir_reader.hpp>
#include <vmcsum/sys/fd.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <map>
#include <memory>
#include <sstream>

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

namespace vmcsum::core {

namespace {
bool is_digit(char c)
{
  return c >= '0' && c <= '9';
}

bool parse_u64(std::string_view s, int base, uint64_t& out)
{
  if (s.empty()) {
    return false;
  }
  uint64_t v = 0;
  for (char c : s) {
    unsigned d = 0;
    if (is_digit(c)) {
      d = static_cast<unsigned>(c - '0');
    } else if (base == 16 && c >= 'a' && c <= 'f') {
      d = static_cast<unsigned>(c - 'a' + 10);
    } else if (base == 16 && c >= 'A' && c <= 'F') {
      d = static_cast<unsigned>(c - 'A' + 10);
    } else {
      return false;
    }
    if (d >= static_cast<unsigned>(base) ||
        v > (std::numeric_limits<uint64_t>::max() - d) / static_cast<unsigned>(base)) {
      return false;
    }
    v = v * static_cast<unsigned>(base) + d;
  }
  out = v;
  return true;
}

bool parse_u32(std::string_view s, int base, uint32_t& out)
{
  uint64_t v = 0;
  if (!parse_u64(s, base, v) || v > std::numeric_limits<uint32_t>::max()) {
    return false;
  }
  out = static_cast<uint32_t>(v);
  return true;
}

bool parse_int(std::string_view s, int& out)
{
  bool neg = s.starts_with('-');
  uint64_t v = 0;
  if (!parse_u64(neg ? s.substr(1) : s, 10, v) ||
      v > static_cast<uint64_t>(std::numeric_limits<int>::max()) + (neg ? 1 : 0)) {
    return false;
  }
  out = neg ? static_cast<int>(-static_cast<int64_t>(v)) : static_cast<int>(v);
  return true;
}

std::vector<std::string_view> split_ws(std::string_view line)
{
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
      ++i;
    }
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
      ++i;
    }
    if (i > start) {
      out.push_back(line.substr(start, i - start));
    }
  }
  return out;
}

std::optional<FileLock> parse_lock_line(std::string_view line)
{
  auto t = split_ws(line);
  FileLock l;
  size_t i = 0;
  // "N:" is the lock's ordinal; waiters blocked on it repeat it with "->".
  if (t.empty() || t[0].size() < 2 || !t[0].ends_with(':')) {
    return std::nullopt;
  }
  uint64_t ordinal = 0;
  if (!parse_u64(t[0].substr(0, t[0].size() - 1), 10, ordinal)) {
    return std::nullopt;
  }
  ++i;
  if (i < t.size() && t[i] == "->") {
    l.blocked = true;
    ++i;
  }
  if (t.size() - i != 7) {
    return std::nullopt;
  }
  auto upper = [](std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
  };
  if (!upper(t[i]) || !upper(t[i + 1])) {
    return std::nullopt;
  }
  l.kind = std::string(t[i]);
  l.advisory = t[i + 1] == "ADVISORY";
  if (t[i + 2] != "READ" && t[i + 2] != "WRITE" && t[i + 2] != "UNLCK") {
    return std::nullopt;
  }
  l.mode = std::string(t[i + 2]);
  int pid = 0;
  if (!parse_int(t[i + 3], pid)) {
    return std::nullopt;
  }
  // OFD locks belong to an open file description, not a process: the kernel prints -1.
  if (pid >= 0) {
    l.pid = pid;
  }
  // lock_get_status(): "%02x:%02x:%lu" (hex major:minor, decimal inode); "<none>:0" without
  // an inode is of no use for matching files and is skipped.
  std::string_view id = t[i + 4];
  size_t c1 = id.find(':');
  size_t c2 = c1 == std::string_view::npos ? c1 : id.find(':', c1 + 1);
  if (c2 == std::string_view::npos || !parse_u32(id.substr(0, c1), 16, l.dev_major) ||
      !parse_u32(id.substr(c1 + 1, c2 - c1 - 1), 16, l.dev_minor) ||
      !parse_u64(id.substr(c2 + 1), 10, l.inode)) {
    return std::nullopt;
  }
  if (!parse_u64(t[i + 5], 10, l.start)) {
    return std::nullopt;
  }
  if (t[i + 6] != "EOF") {
    uint64_t end = 0;
    if (!parse_u64(t[i + 6], 10, end) || end < l.start) {
      return std::nullopt;
    }
    l.end = end;
  }
  return l;
}

// --- QEMU options ---

// Dotted option name -> value, as QEMU's keyval/QemuOpts see them after flattening.
using Opts = std::map<std::string, std::string>;

// "a=b,c.d=e,,f,flag": ",," stands for a literal comma in a value; a bare word is "word=on".
void parse_keyval(std::string_view s, Opts& out)
{
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && s[i] != '=' && s[i] != ',') {
      ++i;
    }
    std::string key(s.substr(start, i - start));
    std::string value = "on";
    if (i < s.size() && s[i] == '=') {
      ++i;
      value.clear();
      while (i < s.size()) {
        if (s[i] == ',') {
          if (i + 1 < s.size() && s[i + 1] == ',') {
            value += ',';
            i += 2;
            continue;
          }
          break;
        }
        value += s[i++];
      }
    }
    if (i < s.size() && s[i] == ',') {
      ++i;
    }
    if (!key.empty()) {
      out[key] = std::move(value);
    }
  }
}

// Nested JSON ({"file": {"driver": "file", ...}}) to the same dotted names as key=value.
void flatten_json(const nlohmann::json& j, const std::string& key, Opts& out, int depth)
{
  // Real block graphs are a few levels deep; the bound keeps hostile input from recursing.
  if (depth > 16) {
    return;
  }
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      flatten_json(v, key.empty() ? k : key + "." + k, out, depth + 1);
    }
  } else if (j.is_string()) {
    out[key] = j.get<std::string>();
  } else if (j.is_boolean()) {
    out[key] = j.get<bool>() ? "on" : "off";
  } else if (j.is_number()) {
    out[key] = j.dump();
  }
}

bool parse_json_opts(std::string_view s, Opts& out)
{
  auto j = nlohmann::json::parse(s.begin(), s.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return false;
  }
  flatten_json(j, "", out, 0);
  return true;
}

std::optional<bool> parse_bool(const std::string& v)
{
  if (v == "on" || v == "yes" || v == "true" || v == "y") {
    return true;
  }
  if (v == "off" || v == "no" || v == "false" || v == "n") {
    return false;
  }
  return std::nullopt;
}

// Looks `name` up on the node at `prefix` ("file.file.") and then on its parents: inline child
// nodes inherit cache.* from their parent (bdrv_inherited_options()), and -drive's aio= is
// passed down to the protocol node.
const std::string* lookup_inherited(const Opts& o, std::string prefix, const std::string& name)
{
  for (;;) {
    auto it = o.find(prefix + name);
    if (it != o.end()) {
      return &it->second;
    }
    if (prefix.empty()) {
      return nullptr;
    }
    prefix.pop_back();
    size_t dot = prefix.rfind('.');
    prefix = dot == std::string::npos ? std::string() : prefix.substr(0, dot + 1);
  }
}

// path_has_protocol(): a ':' before the first '/' names a protocol ("nbd:", "rbd:").
std::optional<std::string> local_filename(std::string_view name)
{
  if (name.starts_with("file:")) {
    name.remove_prefix(5);
  } else {
    size_t p = name.find_first_of(":/");
    if (p != std::string_view::npos && name[p] == ':') {
      return std::nullopt;
    }
  }
  if (name.empty()) {
    return std::nullopt;
  }
  return std::string(name);
}

// The file-protocol nodes of one -drive (legacy = true) or -blockdev option set.
void drives_from_opts(const Opts& o, bool legacy, std::vector<DriveConfig>& out)
{
  auto fill = [&](DriveConfig d, const std::string& prefix) {
    if (const auto* v = lookup_inherited(o, prefix, "cache.direct")) {
      d.cache_direct = parse_bool(*v);
    }
    if (const auto* v = lookup_inherited(o, prefix, "aio")) {
      d.aio = *v;
    }
    if (legacy) {
      auto it = o.find("cache");
      if (it != o.end()) {
        d.cache = it->second;
      }
    }
    out.push_back(std::move(d));
  };

  if (legacy) {
    auto media = o.find("media");
    if (media != o.end() && media->second == "cdrom") {
      return;
    }
    auto file = o.find("file");
    if (file != o.end()) {
      if (auto name = local_filename(file->second)) {
        DriveConfig d;
        d.file = *name;
        fill(std::move(d), "");
      }
      return;
    }
  }
  for (const auto& [key, value] : o) {
    if (value != "file" || !(key == "driver" || key.ends_with(".driver"))) {
      continue;
    }
    std::string prefix = key.substr(0, key.size() - 6);
    auto fn = o.find(prefix + "filename");
    if (fn == o.end()) {
      continue;
    }
    std::string_view name = fn->second;
    if (name.starts_with("file:")) {
      name.remove_prefix(5);
    }
    if (name.empty()) {
      continue;
    }
    DriveConfig d;
    d.file = std::string(name);
    fill(std::move(d), prefix);
  }
}

void parse_drive_arg(std::string_view arg, bool legacy, std::vector<DriveConfig>& out)
{
  Opts o;
  if (!legacy && arg.starts_with('{')) {
    if (!parse_json_opts(arg, o)) {
      return;
    }
  } else {
    parse_keyval(arg, o);
  }
  // "file=json:{...}" describes the drive's top node in JSON (QEMU's parse_json_filename()).
  auto file = o.find("file");
  if (legacy && file != o.end() && std::string_view(file->second).starts_with("json:")) {
    std::string json = file->second.substr(5);
    o.erase(file);
    Opts inner;
    if (!parse_json_opts(json, inner)) {
      return;
    }
    for (auto& [k, v] : inner) {
      o[k] = std::move(v);
    }
  }
  drives_from_opts(o, legacy, out);
}

// --- reading a proc tree ---

sys::Fd open_dir_at(int dirfd, const std::string& name, int extra_flags, int& err)
{
  sys::Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | extra_flags));
  if (!fd) {
    err = errno;
  }
  return fd;
}

// Reads a small file below dirfd. O_NONBLOCK and the S_ISREG check keep a FIFO planted in a
// fixture tree from blocking the scan; /proc files are regular files.
std::optional<std::string> read_at(int dirfd, const std::string& name, size_t limit, int& err)
{
  sys::Fd fd(
    ::openat(dirfd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    err = errno;
    return std::nullopt;
  }
  struct stat st = {};
  if (::fstat(fd.get(), &st) != 0) {
    err = errno;
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    err = EINVAL;
    return std::nullopt;
  }
  std::string out;
  char buf[8192];
  while (out.size() < limit) {
    ssize_t n = ::read(fd.get(), buf, std::min(sizeof buf, limit - out.size()));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      err = errno;
      return std::nullopt;
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// A /proc directory entry that is a number (pid, fd), or nullopt.
std::optional<int> parse_number_entry(std::string_view name)
{
  uint64_t v = 0;
  if (!parse_u64(name, 10, v) || v > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
    return std::nullopt;
  }
  return static_cast<int>(v);
}

std::vector<std::string> list_names(int dirfd)
{
  std::vector<std::string> names;
  sys::DirReader entries(dirfd);
  while (const auto* ent = entries.next()) {
    std::string_view n = ent->d_name;
    if (n != "." && n != "..") {
      names.emplace_back(n);
    }
  }
  return names;
}

bool looks_like_qemu(std::string_view name)
{
  size_t slash = name.rfind('/');
  if (slash != std::string_view::npos) {
    name.remove_prefix(slash + 1);
  }
  // comm is cut to 15 bytes ("qemu-system-x86"); Proxmox runs QEMU as "kvm".
  return name.starts_with("qemu-system-") || name.starts_with("qemu-kvm") || name == "kvm";
}

constexpr size_t k_small_file = 64 * 1024;
constexpr size_t k_cmdline_limit = 4 * 1024 * 1024;

// The process's regular files open, by descriptor number (their comm left to the caller);
// `listed` says how many descriptors its fd directory held, -1 when it could not be listed.
std::vector<OpenFile> scan_fds(int pid_dirfd, int pid, ProcScan& out, long& listed)
{
  listed = -1;
  int err = 0;
  sys::Fd fd_dir = open_dir_at(pid_dirfd, "fd", O_NOFOLLOW, err);
  if (!fd_dir) {
    out.unreadable.push_back(std::to_string(pid) + ": fd: " + errno_text(err));
    return {};
  }
  listed = 0;
  // fdinfo is opened for the first regular file only: most processes (kernel threads, and
  // anything without a file open) have none, and a scan of /proc is mostly theirs.
  int fdinfo_err = 0;
  sys::Fd fdinfo;
  bool fdinfo_tried = false;
  std::vector<OpenFile> files;
  for (const auto& name : list_names(fd_dir.get())) {
    auto fdnum = parse_number_entry(name);
    if (!fdnum) {
      continue;
    }
    ++listed;
    OpenFile f;
    f.pid = pid;
    f.fd = *fdnum;
    const int dfd = fd_dir.get();
    // stat() through the link, never open(): a FIFO or a tape device must not block or act.
    struct stat st = {};
    if (::fstatat(dfd, name.c_str(), &st, 0) != 0 || !S_ISREG(st.st_mode)) {
      continue;
    }
    std::string target(8192, '\0'); // /proc fd links are at most PATH_MAX long
    ssize_t n = ::readlinkat(dfd, name.c_str(), target.data(), target.size());
    if (n < 0) {
      continue;
    }
    target.resize(static_cast<size_t>(n));
    f.target = std::move(target);
    f.dev = static_cast<uint64_t>(st.st_dev);
    f.ino = static_cast<uint64_t>(st.st_ino);
    if (!fdinfo_tried) {
      fdinfo_tried = true;
      fdinfo.reset(::openat(pid_dirfd, "fdinfo", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
      if (!fdinfo) {
        fdinfo_err = errno;
      }
    }
    if (fdinfo) {
      int e = 0;
      if (auto text = read_at(fdinfo.get(), name, k_small_file, e)) {
        f.flags = parse_fdinfo_flags(*text);
        f.locks = parse_fdinfo_locks(*text);
      }
    }
    files.push_back(std::move(f));
  }
  if (!fdinfo && !files.empty()) {
    out.unreadable.push_back(std::to_string(pid) + ": fdinfo: " + errno_text(fdinfo_err));
  }
  std::sort(files.begin(), files.end(),
            [](const OpenFile& a, const OpenFile& b) { return a.fd < b.fd; });
  return files;
}
} // namespace

std::vector<FileLock> parse_fdinfo_locks(std::string_view fdinfo)
{
  // fs/proc/fd.c show_fd_locks(): each lock as "lock:\t" + the /proc/locks line.
  std::vector<FileLock> out;
  for_each_line(fdinfo, [&](std::string_view line) {
    if (!line.starts_with("lock:")) {
      return;
    }
    line.remove_prefix(5);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
      line.remove_prefix(1);
    }
    if (auto l = parse_lock_line(line)) {
      out.push_back(std::move(*l));
    }
  });
  return out;
}

std::optional<uint32_t> parse_fdinfo_flags(std::string_view fdinfo)
{
  std::optional<uint32_t> result;
  bool seen = false;
  for_each_line(fdinfo, [&](std::string_view line) {
    if (seen || !line.starts_with("flags:")) {
      return;
    }
    seen = true;
    line.remove_prefix(6);
    auto t = split_ws(line);
    uint32_t v = 0;
    if (t.size() == 1 && parse_u32(t[0], 8, v)) {
      result = v;
    }
  });
  return result;
}

bool flags_have_o_direct(uint32_t flags)
{
  return (flags & static_cast<uint32_t>(O_DIRECT)) != 0;
}

bool flags_writable(uint32_t flags)
{
  uint32_t mode = flags & static_cast<uint32_t>(O_ACCMODE);
  return mode == static_cast<uint32_t>(O_WRONLY) || mode == static_cast<uint32_t>(O_RDWR);
}

bool is_qemu_lock(const FileLock& l)
{
  // raw_apply_lock_bytes() locks single bytes RAW_LOCK_PERM_BASE (100) + i and
  // RAW_LOCK_SHARED_BASE (200) + i; adjacent bytes of one description merge into one range.
  return l.kind == "OFDLCK" && l.end && l.start >= 100 && *l.end <= 299;
}

bool is_qemu_write_lock(const FileLock& l)
{
  // Byte 101 is BLK_PERM_WRITE held. Byte 201 only says "others may not write", which
  // read-only users such as backing files also claim.
  return is_qemu_lock(l) && l.start <= 101 && *l.end >= 101;
}

bool DriveConfig::o_direct() const
{
  // blockdev.c: an explicit cache.direct wins over what cache= implies.
  if (cache_direct) {
    return *cache_direct;
  }
  return cache == "none" || cache == "directsync";
}

std::vector<DriveConfig> parse_qemu_cmdline(const std::vector<std::string>& argv)
{
  std::vector<DriveConfig> out;
  for (size_t i = 1; i < argv.size() && out.size() < k_max_qemu_drives; ++i) {
    std::string_view a = argv[i];
    if (a.starts_with("--")) {
      a.remove_prefix(1);
    }
    bool has_value = i + 1 < argv.size();
    if (!has_value) {
      break;
    }
    if (a == "-drive") {
      parse_drive_arg(argv[++i], true, out);
    } else if (a == "-blockdev") {
      parse_drive_arg(argv[++i], false, out);
    } else if (a == "-hda" || a == "-hdb" || a == "-hdc" || a == "-hdd" || a == "-pflash") {
      if (auto name = local_filename(argv[++i])) {
        DriveConfig d;
        d.file = *name;
        out.push_back(std::move(d));
      }
    }
  }
  return out;
}

std::optional<uid_t> process_uid(int pid_dirfd)
{
  // status's "Uid:" line: real, effective, saved, filesystem. Not the owner of /proc/PID, which
  // is root for a process that made itself non-dumpable or has exited.
  int err = 0;
  if (auto status = read_at(pid_dirfd, "status", k_small_file, err)) {
    std::optional<uid_t> uid;
    for_each_line(*status, [&](std::string_view line) {
      if (!line.starts_with("Uid:")) {
        return;
      }
      std::istringstream in{std::string(line.substr(4))};
      unsigned long ids[4] = {};
      if (in >> ids[0] >> ids[1] >> ids[2] >> ids[3] && ids[0] == ids[1] && ids[1] == ids[2] &&
          ids[2] == ids[3]) {
        uid = static_cast<uid_t>(ids[0]);
      }
    });
    return uid;
  }
  // A fixture tree (no procfs) without status: its owner. Never on procfs, where a process
  // that is gone answers ESRCH and its directory root's ownership.
  struct statfs sf = {};
  struct stat st = {};
  if (err == ENOENT && ::fstatfs(pid_dirfd, &sf) == 0 && sf.f_type != PROC_SUPER_MAGIC &&
      ::fstat(pid_dirfd, &st) == 0) {
    return st.st_uid;
  }
  return std::nullopt;
}

std::vector<std::string> split_cmdline(std::string_view raw)
{
  std::vector<std::string> out;
  while (!raw.empty()) {
    size_t nul = raw.find('\0');
    out.emplace_back(raw.substr(0, nul));
    if (nul == std::string_view::npos) {
      break;
    }
    raw.remove_prefix(nul + 1);
  }
  return out;
}

ProcScan scan_proc(const std::string& proc_root)
{
  ProcScan out;
  int err = 0;
  sys::Fd root = open_dir_at(AT_FDCWD, proc_root, 0, err);
  if (!root) {
    throw_errno(err, "open", proc_root);
  }
  const int root_fd = root.get();

  std::vector<int> pids;
  for (const auto& name : list_names(root.get())) {
    if (auto pid = parse_number_entry(name); pid && *pid > 0) {
      pids.push_back(*pid);
    }
  }
  std::sort(pids.begin(), pids.end());
  // vmcsum itself is never a user of an image it looks at, and audit scans while its walk
  // opens files: its own entry is passed over. Its pid as this procfs numbers it (the "self"
  // magic link: right in another pid namespace and for any spelling of the path; a fixture's
  // "self" is no number, and nothing is skipped there).
  int self = -1;
  char self_link[32] = {};
  if (::readlinkat(root_fd, "self", self_link, sizeof self_link - 1) > 0) {
    self = parse_number_entry(self_link).value_or(-1);
  }

  for (int pid : pids) {
    if (pid == self) {
      continue;
    }
    std::string name = std::to_string(pid);
    sys::Fd pid_dir(
      ::openat(root_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (!pid_dir) {
      out.unreadable.push_back(name + ": " + errno_text(errno));
      continue;
    }
    long listed = -1;
    std::vector<OpenFile> files = scan_fds(pid_dir.get(), pid, out, listed);
    // Not one descriptor: a kernel thread (most of /proc) or a process that closed them all,
    // neither a user of an image nor QEMU (which holds its images, /dev/kvm, its monitor). Its
    // comm and cmdline are not read: two opens and reads per kernel thread were a third of
    // the scan's system calls. A fd directory that cannot be listed (not root) says nothing:
    // QEMU is still looked for in cmdline.
    if (listed == 0) {
      continue;
    }
    int e = 0;
    std::string comm = read_at(pid_dir.get(), "comm", k_small_file, e).value_or("");
    if (!comm.empty() && comm.back() == '\n') {
      comm.pop_back();
    }
    for (auto& f : files) {
      f.comm = comm;
      out.open_files.push_back(std::move(f));
    }
    std::vector<std::string> argv;
    if (auto raw = read_at(pid_dir.get(), "cmdline", k_cmdline_limit, e)) {
      argv = split_cmdline(*raw);
    }
    // Kernel threads have no argv; one could be called "kvm..." but is never QEMU.
    if (!argv.empty() && (looks_like_qemu(comm) || looks_like_qemu(argv[0]))) {
      out.qemus.push_back({pid, parse_qemu_cmdline(argv), process_uid(pid_dir.get())});
    }
  }

  return out;
}

ImageLock image_lock(const FileLock& l, std::optional<int> owner, std::string seen_by)
{
  ImageLock il;
  il.pid = l.pid ? l.pid : owner;
  il.kind = l.kind;
  il.mode = l.mode;
  il.start = l.start;
  il.end = l.end;
  il.qemu = is_qemu_lock(l);
  il.qemu_write = is_qemu_write_lock(l);
  il.seen_by = std::move(seen_by);
  return il;
}

ImageUsers users_in_scan(const ProcScan& procs, uint64_t dev, uint64_t ino, int skip_pid)
{
  ImageUsers out;
  for (const auto& of : procs.open_files) {
    if (of.dev != dev || of.ino != ino || of.pid == skip_pid) {
      continue;
    }
    const bool od = of.flags && flags_have_o_direct(*of.flags);
    const bool wr = of.flags && flags_writable(*of.flags);
    out.users.push_back({of.pid, of.comm, of.fd, od, wr});
    for (const auto& l : of.locks) {
      out.locks.push_back(image_lock(l, of.pid, "fdinfo"));
    }
  }
  return out;
}

} // namespace vmcsum::core
