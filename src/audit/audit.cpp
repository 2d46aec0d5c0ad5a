// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "look_pool.hpp"

#include <vmcsum/audit/audit.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/host_context.hpp>
#include <vmcsum/host/kernel_log.hpp>
#include <vmcsum/host/kernel_log_reader.hpp>
#include <vmcsum/host/kernel_record.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/image/image_format.hpp>
#include <vmcsum/measure/probe.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/scrub/scrub_state.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/walk.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace vmcsum::core {

namespace {

// Which files of a walked tree are worth opening to look for an image header: anything of a
// megabyte or more, and smaller files only when their name says image (a fresh VDI made by
// qemu-img is 1.5 KiB, a dynamic VHD 25 KiB). This keeps an audit of a tree full of small
// files close to the cost of find(1). Files named on the command line are always examined.
constexpr uint64_t sniff_any_size = 1024 * 1024;
constexpr uint64_t min_image_size = 512;
// Directories the walk reads ahead at once in a cold tree (sys::WalkOptions::prefetch_threads):
// with the looks' threads grown to 16, a cold audit of bench/audit_tree.sh's tree took 1.1x
// find's time where it took 1.5x-1.6x without (2 CPUs; 4 did about as well, 2 less).
constexpr unsigned walk_prefetch_threads = 8;

// `fn` run on a thread of its own, or when its result is asked for where no thread may be
// started (RLIMIT_NPROC, a cgroup's pids.max): slower, never a failed audit.
template <class Fn>
auto beside(Fn fn) -> std::future<decltype(fn())>
{
  try {
    return std::async(std::launch::async, fn);
  } catch (const std::system_error&) {
    return std::async(std::launch::deferred, std::move(fn));
  }
}

// A file name's extension of at most 8 bytes, ASCII lower case, as one number (a name has no
// NUL byte, so no two extensions share one); 0 for a longer one, which no set holds.
constexpr uint64_t packed_extension(std::string_view ext)
{
  if (ext.size() > sizeof(uint64_t)) {
    return 0;
  }
  uint64_t v = 0;
  for (const char c : ext) {
    v = v << 8 | static_cast<uint8_t>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  return v;
}

// A set of extensions (lower case, without the dot), sorted as numbers when compiled. The test
// runs for every file a walk meets: a search of the strings called memcmp for each, 5% of the
// walking thread's time on a tree of 100k files (perf).
template <size_t N>
class ExtensionSet
{
public:
  explicit constexpr ExtensionSet(const std::array<std::string_view, N>& exts)
  {
    for (size_t i = 0; i < N; ++i) {
      m_packed[i] = packed_extension(exts[i]);
    }
    std::sort(m_packed.begin(), m_packed.end());
  }
  // Whether `ext`, ignoring ASCII case, is one of the set's.
  bool contains(std::string_view ext) const
  {
    return std::binary_search(m_packed.begin(), m_packed.end(), packed_extension(ext));
  }

private:
  std::array<uint64_t, N> m_packed{};
};

constexpr ExtensionSet<10> image_extensions(std::array<std::string_view, 10>{
  "qcow2", "qcow", "qed", "vmdk", "vdi", "vhd", "vhdx", "img", "raw", "disk"});

// Names that say "not a disk image". A raw image named like this is still audited when named on
// the command line.
constexpr ExtensionSet<66> not_image_extensions(std::array<std::string_view, 66>{
  "txt",  "log",  "xml", "json", "yaml",  "yml", "conf", "cfg",     "ini",     "md",   "rst",
  "html", "htm",  "css", "js",   "py",    "pyc", "sh",   "c",       "h",       "cc",   "cpp",
  "hpp",  "go",   "rs",  "java", "class", "jar", "pl",   "rb",      "php",     "sql",  "csv",
  "tsv",  "pdf",  "png", "jpg",  "jpeg",  "gif", "svg",  "ico",     "mp3",     "mp4",  "mkv",
  "avi",  "zip",  "gz",  "xz",   "bz2",   "zst", "tar",  "deb",     "rpm",     "so",   "o",
  "a",    "lock", "pid", "sock", "xsl",   "po",  "mo",   "desktop", "service", "timer"});

bool has_image_extension(std::string_view path)
{
  const auto dot = path.find_last_of("./");
  if (dot == std::string_view::npos || path[dot] != '.') {
    return false;
  }
  return image_extensions.contains(path.substr(dot + 1));
}

// Names that say "not a disk image" are passed over without even a stat, which is what keeps
// a walk of a large tree close to find(1).
bool skip_by_name(std::string_view name)
{
  const auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) {
    return false;
  }
  return not_image_extensions.contains(name.substr(dot + 1));
}

bool worth_sniffing(std::string_view name, uint64_t size)
{
  return size >= sniff_any_size || (size >= min_image_size && has_image_extension(name));
}

// The head and tail of an open file, and its name, say its format. A read that fails sets
// `read_errno` (EIO: no copy of those sectors matches its checksum, or the medium failed): the
// name still tells whether it is an image to report, and the report says its format is unknown.
ImageFormat sniff_fd(const sys::Fd& owned, uint64_t size, const std::string& name, int& read_errno)
{
  if (!owned) {
    return detect_image_format({}, {}, name);
  }
  uint8_t head[image_head_bytes];
  uint8_t tail[image_tail_bytes];
  ssize_t h = ::pread(owned.get(), head, sizeof head, 0);
  if (h < 0) {
    read_errno = errno;
  }
  std::span<const uint8_t> head_span(head, h > 0 ? size_t(h) : 0);
  ImageFormat by_head = detect_image_format(head_span, {}, name);
  // Only raw-looking or unknown heads need the tail: a fixed VHD is a raw disk (MBR and all)
  // with its footer in the last 512 bytes. Every other format says so in its first bytes.
  if (by_head != ImageFormat::raw && by_head != ImageFormat::unknown) {
    return by_head;
  }
  ssize_t t = 0;
  if (size >= image_tail_bytes) {
    t = ::pread(owned.get(), tail, sizeof tail, static_cast<off_t>(size - image_tail_bytes));
    if (t < 0 && read_errno == 0) {
      read_errno = errno;
    }
  }
  return detect_image_format(head_span, std::span<const uint8_t>(tail, t > 0 ? size_t(t) : 0),
                             name);
}

// An entry of a walk opened for reading relative to its directory, and only if it is still the
// regular file the walk examined (a FIFO or symlink swapped in is not read); empty when it
// cannot be read. O_NOATIME where allowed; `st` is its fstat.
sys::Fd open_entry(sys::WalkEntry& e, struct stat& st)
{
  try {
    return e.open_regular(O_RDONLY | O_NOATIME, &st);
  } catch (const Error& err) {
    if (err.sys_errno() == EPERM) {
      try {
        return e.open_regular(O_RDONLY, &st); // O_NOATIME is only for the owner or CAP_FOWNER
      } catch (const Error&) {
      }
    }
  }
  return {};
}

// The NOCOW attribute of a directory (new files there inherit it).
std::optional<bool> dir_nocow_of(int dirfd)
{
  int flags = 0;
  if (dirfd < 0 || ::ioctl(dirfd, FS_IOC_GETFLAGS, &flags) < 0) {
    return std::nullopt;
  }
  return (flags & FS_NOCOW_FL) != 0;
}

// The NOCOW attribute of the directories the look threads asked last, for the next images found
// in the same directories: the walk hands the looks over in its order, a directory's entries
// one after the other, and the threads work on a few neighbours at once (bench/audit_tree.sh's
// tree: 1000 images in 201 directories, 1000 FS_IOC_GETFLAGS before, 201 now).
class DirNocowMemo
{
public:
  std::optional<bool> of(const std::shared_ptr<const sys::Fd>& dir)
  {
    if (!dir) {
      return std::nullopt;
    }
    // Asked under the lock: threads looking at one directory's images at the same time wait for
    // one answer instead of each asking.
    std::lock_guard<std::mutex> lock(m_mu);
    for (const auto& [d, nocow] : m_recent) {
      if (d == dir) {
        return nocow;
      }
    }
    // Held: a descriptor's number cannot name another directory while it is remembered.
    m_recent[m_next] = {dir, dir_nocow_of(dir->get())};
    const auto answer = m_recent[m_next].second;
    m_next = (m_next + 1) % m_recent.size();
    return answer;
  }

private:
  std::mutex m_mu;
  // More than the look threads (four): one per thread, and the directory they are leaving.
  std::array<std::pair<std::shared_ptr<const sys::Fd>, std::optional<bool>>, 8> m_recent;
  size_t m_next = 0;
};

// A walked file (not named on the command line) as the walk's LookPool looks at it: worth a
// look by name and size, its format from its head, and an image's facts collected through the
// descriptor the head was read from, so that it is opened once (and nothing the walk and the
// open already said is asked again; `canonical_root`: the walk's root is canonical, and so is
// every path found below it, since no symlink is followed).
Looked look_at(sys::WalkEntry& e, FactCollector& collector, bool canonical_root,
               DirNocowMemo& dir_nocow)
{
  Looked found;
  found.path = e.path();
  const struct stat* lst = e.lstat();
  if (!lst) {
    // Gone since the directory was listed (a temp file, an image deleted meanwhile): nothing
    // left to audit, and no reason to call the audit incomplete.
    if (errno != ENOENT) {
      found.problem = errno_text(errno);
    }
    return found;
  }
  const auto size = static_cast<uint64_t>(lst->st_size);
  if (!worth_sniffing(e.name(), size)) {
    return found;
  }
  struct stat st = {};
  sys::Fd fd = open_entry(e, st);
  found.format = sniff_fd(fd, size, std::string(e.name()), found.read_errno);
  if (found.format != ImageFormat::unknown) {
    found.ref = e.ref();
    if (fd) {
      found.facts = collector.collect_fd(fd.get(), found.path, -1, {&st, canonical_root, true});
    }
    // Asked of the descriptor the walk listed the image in, here in a look thread: after the
    // walk it was a path opened again, three calls per directory on the walk's thread alone.
    found.dir_nocow = dir_nocow.of(e.dir());
  }
  return found;
}

struct Candidate
{
  std::string path; // for display; opened by name only when `ref` is empty
  std::vector<std::string> found_via;
  bool explicit_path = false;
  std::optional<ImageFormat> format; // when the walk already looked
  // Below a root given on the command line: reopened below that root's descriptor and kept
  // only if it is the inode found there (issue 12). Without it, `path` comes from the command
  // line or a VM configuration and is resolved once (sys::open_regular_at).
  std::optional<sys::FileRef> ref;
  std::pair<dev_t, ino_t> inode; // what was found; the file opened must be this one
  // Collected by the walk's LookPool through the descriptor the format was read from.
  std::optional<FileFacts> facts;
  // Its directory's NOCOW, when the walk's LookPool asked the directory it listed.
  std::optional<std::optional<bool>> dir_nocow;
  int read_errno = 0; // the walk's read of its head or tail failed (sniff_fd)
};

// A candidate opened once for the whole examination.
struct OpenImage
{
  sys::Fd fd;            // readable, or O_PATH when it could not be read (not root)
  bool readable = false; // its content (format) can be read
};

// The directory holding `relpath` (below the walk's root), as openat_beneath may reach it.
std::string rel_parent(const std::string& relpath)
{
  const auto slash = relpath.rfind('/');
  return slash == std::string::npos ? std::string(".") : relpath.substr(0, slash);
}

// Whether `f` is a file a QEMU process has open for writing: its images (and maybe firmware).
bool qemu_writes(const ProcScan& procs, const OpenFile& f)
{
  bool is_qemu = std::any_of(procs.qemus.begin(), procs.qemus.end(),
                             [&](const ProcScan::Qemu& q) { return q.pid == f.pid; });
  return is_qemu && f.flags && flags_writable(*f.flags);
}

// Whether `path` is one of the canonical paths `asked` or lies below one of them.
bool under_any(const std::vector<std::string>& asked, const std::string& path)
{
  const std::string c = sys::canonical_path(path);
  return std::any_of(asked.begin(), asked.end(), [&](const std::string& a) {
    return c == a || (a == "/" && c.size() > 1) ||
           (c.size() > a.size() && c.compare(0, a.size(), a) == 0 && c[a.size()] == '/');
  });
}

// One audit, one method per phase in the order run() calls them: the host, the candidates
// (from the paths asked for or from the default roots), the kernel log, then each candidate
// examined (its users, its logged errors, its probe, its findings).
class Auditor
{
public:
  explicit Auditor(const AuditOptions& opts)
    : opts_(opts)
  {
  }

  AuditResult run()
  {
    if (::geteuid() != 0) {
      result_.unprivileged = true;
      result_.notes.push_back(
        "not run as root: NODATASUM (read by a tree search, which needs CAP_SYS_ADMIN), other "
        "users' processes (who has an image open, with O_DIRECT) and the kernel log may not "
        "be readable, so an image can look safer than it is; run vmcsum audit as root");
    }
    gather_host();
    if (!opts_.paths.empty()) {
      candidates_from_paths();
    } else {
      candidates_from_default_roots();
    }
    read_kernel_log();
    examine_all();
    result_.interrupted = cancelled();
    return std::move(result_);
  }

private:
  bool cancelled() const { return opts_.cancel && opts_.cancel->load(std::memory_order_relaxed); }

  // --- the host, gathered once: the kernel, the VM configurations (libvirt domains and pools,
  // Proxmox) and the processes (open files, locks, QEMU command lines, whose drives are appended
  // to the configured disks). The /proc scan runs on its own thread while the paths are walked
  // (about 10 ms of syscalls on a quiet host, more on a busy one); only the walk's results wait
  // for it (join_host) ---
  void gather_host()
  {
    HostContextOptions ho;
    ho.proc_root = opts_.proc_dir;
    ho.vm_configs = opts_.vm_configs;
    ho.kernel_release = opts_.kernel_release;
    ho.scan_procs = false;
    procs_ = beside([dir = opts_.proc_dir] { return scan_proc(dir); });
    klog_ = beside([this] {
      KernelLogRead k;
      k.boot_id = current_boot_id();
      k.printk_epoch = printk_epoch_offset_us();
      if (!opts_.kernel_log.empty()) {
        k.events = read_kernel_log_timed(opts_.kernel_log, k.notes);
      }
      return k;
    });
    host_ = gather_host_context(ho);
    result_.kernel.release = host_.kernel.release;
    result_.kernel.policy = host_.kernel.policy;
    for (const auto& file : host_.configs.unreadable) {
      result_.problems.push_back({file, "cannot read"});
    }
    result_.notes.insert(result_.notes.end(), host_.configs.notes.begin(),
                         host_.configs.notes.end());
  }

  // The /proc scan, waited for (and its error rethrown) where processes are first needed.
  void join_host()
  {
    add_process_scan(host_, procs_.get());
    configured_ = std::move(host_.configs.disks);
    // One note per reason, not per process: as non-root, every other user's process is
    // unreadable (over 200 notes on a desktop).
    std::map<std::string, std::vector<std::string>> by_reason;
    for (const auto& u : host_.procs.unreadable) {
      const auto colon = u.find(": ");
      by_reason[colon == std::string::npos ? u : u.substr(colon + 2)].push_back(u.substr(0, colon));
    }
    constexpr size_t k_listed = 10;
    for (const auto& [reason, pids] : by_reason) {
      std::string list;
      for (size_t i = 0; i < pids.size() && i < k_listed; ++i) {
        list += (i ? ", " : "") + pids[i];
      }
      if (pids.size() > k_listed) {
        list += ", ...";
      }
      result_.notes.push_back(std::to_string(pids.size()) + " process(es) not readable (" + reason +
                              "; " + list + "): the images they have open are not known");
    }
  }

  // --- what to look at ---
  // One candidate per inode; a second way of finding it is added to its found_via.
  void add_candidate(Candidate c)
  {
    if (auto it = by_inode_.find(c.inode); it != by_inode_.end()) {
      Candidate& had = candidates_[it->second];
      auto& have = had.found_via;
      if (std::find(have.begin(), have.end(), c.found_via[0]) == have.end()) {
        have.push_back(c.found_via[0]);
      }
      had.explicit_path = had.explicit_path || c.explicit_path;
      return;
    }
    by_inode_[c.inode] = candidates_.size();
    candidates_.push_back(std::move(c));
  }

  // A file found by the walk: reopened later below the walk's root, never by name.
  void add_walked(sys::WalkEntry& e, const std::string& via, bool explicit_path,
                  std::optional<ImageFormat> format)
  {
    Candidate c{e.path(), {via}, explicit_path, format, e.ref(), {}, std::nullopt, std::nullopt};
    c.inode = {c.ref->dev, c.ref->ino};
    add_candidate(std::move(c));
  }

  // A file named by a VM configuration, a process or a symlink on the command line. Below a
  // path asked for, it is reached below that root's descriptor like a walked file, so a
  // directory swapped for a symlink cannot redirect it; elsewhere (no path given: the host's
  // own configuration names it) its path is resolved once when it is examined.
  void add_named(const std::string& path, const std::string& via, bool explicit_path,
                 std::optional<std::pair<dev_t, ino_t>> inode = std::nullopt)
  {
    struct stat st = {};
    if (!inode) {
      if (::stat(path.c_str(), &st) < 0) {
        result_.problems.push_back({path, via + ": " + errno_text(errno)});
        return;
      }
      inode = {st.st_dev, st.st_ino};
    }
    Candidate c{path,         {via},  explicit_path, std::nullopt,
                std::nullopt, *inode, std::nullopt,  std::nullopt};
    if (!explicit_path) {
      c.ref = beneath_asked(path, *inode);
    }
    add_candidate(std::move(c));
  }

  // A running QEMU's drive is the file it named when it was trusted (ConfiguredDisk::inode):
  // the candidate opened must be that one, whatever its path names by then.
  static std::optional<std::pair<dev_t, ino_t>> inode_of(const ConfiguredDisk& c)
  {
    if (!c.inode) {
      return std::nullopt;
    }
    return std::make_pair(static_cast<dev_t>(c.inode->first), static_cast<ino_t>(c.inode->second));
  }

  // `path` as a FileRef below the asked root holding it (nothing when it is none of them).
  std::optional<sys::FileRef> beneath_asked(const std::string& path,
                                            std::pair<dev_t, ino_t> inode) const
  {
    const std::string c = sys::canonical_path(path);
    for (const auto& [root, fd] : asked_roots_) {
      const std::string prefix = root == "/" ? root : root + "/";
      if (c.size() > prefix.size() && c.compare(0, prefix.size(), prefix) == 0) {
        sys::FileRef ref;
        ref.root = fd;
        ref.relpath = c.substr(prefix.size());
        ref.path = path;
        ref.dev = inode.first;
        ref.ino = inode.second;
        return ref;
      }
    }
    return std::nullopt;
  }

  void walk_root(const std::string& given_root, bool explicit_root)
  {
    // Walk from the canonical root so that every path found is canonical too.
    // (Unresolved, as given, when realpath fails: EACCES above it, a name too long. Then the
    // paths found are not known to be canonical, and the facts ask the kernel for theirs.)
    const auto resolved = sys::resolved_path(given_root);
    const std::string root = resolved.value_or(given_root);
    walk_from(root, nullptr, resolved.has_value(), explicit_root);
  }

  // A user's own image directory (`path`, below their home directory), walked only if that user
  // owns the directory it leads to. The daily audit runs as root: a symlink a user put there,
  // to a directory they cannot read themselves, must not make root look into it (and count its
  // images in a world-readable metrics file). A directory of theirs elsewhere (images moved to a
  // bigger disk) is still audited. Opened once, and walked from that descriptor.
  void walk_user_root(const std::string& path, uid_t owner)
  {
    auto dir =
      std::make_shared<const sys::Fd>(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st = {};
    if (!*dir || ::fstat(**dir, &st) < 0) {
      return; // absent: the usual case
    }
    const std::string root = sys::path_of_fd(**dir, path);
    if (st.st_uid != owner) {
      result_.notes.push_back(escape_name(path) + " leads to " + escape_name(root) +
                              ", which its user (uid " + std::to_string(owner) +
                              ") does not own: not audited (name it to audit it)");
      return;
    }
    walk_from(root, std::move(dir), root.front() == '/', false);
  }

  // The walk of one root: by its path (`dir` null: resolved once by walk_tree), or from the
  // directory the caller opened.
  void walk_from(const std::string& root, std::shared_ptr<const sys::Fd> dir, bool canonical_root,
                 bool explicit_root,
                 std::optional<std::pair<dev_t, ino_t>> only_inode = std::nullopt)
  {
    result_.searched.push_back(root);
    sys::WalkOptions wo;
    wo.stop = opts_.cancel;
    wo.prefetch_threads = walk_prefetch_threads;
    DirNocowMemo dir_nocow; // outlives the pool's threads
    LookPool pool(
      [canonical_root, &dir_nocow](sys::WalkEntry& e, FactCollector& c) {
        return look_at(e, c, canonical_root, dir_nocow);
      },
      opts_.mountinfo, syncs_);
    const auto visit = [&](sys::WalkEntry& e) {
      const struct stat* ls = only_inode ? e.lstat() : nullptr;
      if (only_inode &&
          (!ls || ls->st_dev != only_inode->first || ls->st_ino != only_inode->second)) {
        result_.problems.push_back({e.path(), "replaced since it was looked up: refused"});
        return;
      }
      walk_entry(e, root, explicit_root, pool);
    };
    const auto problem = [&](const std::string& path, const std::string& why) {
      // The usual places are often absent; only say so for what was asked for.
      if (explicit_root || path != root) {
        result_.problems.push_back({path, why});
      }
    };
    if (dir) {
      sys::walk_tree(std::move(dir), root, visit, problem, wo);
    } else if (only_inode) {
      sys::walk_named(root, visit, problem, wo);
    } else {
      sys::walk_tree(root, visit, problem, wo);
    }
    add_looked(pool.finish(), "walk:" + root);
  }

  // Passes over what the name says is no image; gives the rest to the pool (the root itself,
  // named on the command line, is always a candidate).
  void walk_entry(sys::WalkEntry& e, const std::string& root, bool explicit_root, LookPool& pool)
  {
    // Depth 0: the root itself, a file (compared without building the entry's path).
    const bool named = explicit_root && e.depth() == 0;
    if (e.d_type() != DT_REG) {
      if (named) {
        const struct stat* st = e.lstat();
        result_.problems.push_back(
          {e.path(),
           "not a regular file (" + (st ? kind_of_mode(st->st_mode) : "?") + "): not examined"});
      }
      return;
    }
    if (named) {
      if (!e.lstat()) {
        result_.problems.push_back({e.path(), errno_text(errno)});
        return;
      }
      add_walked(e, "walk:" + root, true, std::nullopt);
      return;
    }
    if (skip_by_name(e.name())) {
      return;
    }
    try {
      pool.submit(e.keep());
    } catch (const Error& err) {
      result_.problems.push_back({e.path(), err.detail()});
    }
  }

  // The pool's findings, in walk order: problems, and the images as candidates.
  void add_looked(std::deque<Looked> found, const std::string& via)
  {
    // Each look let go of once taken: the memory it frees holds the next candidates (fresh
    // pages cost a page fault each, which a guest pays dearly: 1000 images' copies were 15% of
    // an audit's faults).
    for (; !found.empty(); found.pop_front()) {
      Looked& f = found.front();
      if (f.problem) {
        result_.problems.push_back({f.path, *f.problem});
      } else if (f.format != ImageFormat::unknown && f.ref) {
        Candidate c{f.path,     {via}, false, f.format, std::move(f.ref), {}, std::move(f.facts),
                    f.dir_nocow};
        c.inode = {c.ref->dev, c.ref->ino};
        c.read_errno = f.read_errno;
        add_candidate(std::move(c));
      }
    }
  }

  void candidates_from_paths()
  {
    std::vector<std::string> asked;
    for (const auto& p : opts_.paths) {
      // Looked up once (sys::open_named): another user's symlink on the way is not followed (a
      // world-readable metrics file would count what it led root to), a symlink named is
      // followed once (like find -H), never those below.
      sys::NamedPath named = sys::open_named(p);
      struct stat st = {};
      if (!named.fd || ::fstat(named.fd.get(), &st) < 0) {
        // Still asked for: the configured disks below a directory that is gone are named.
        asked.push_back(sys::canonical_path(p));
        result_.searched.push_back(p);
        result_.problems.push_back({p, named.dangling ? "a symlink to nothing (dangling)"
                                       : named.fd     ? errno_text(errno)
                                                      : named.why});
        continue;
      }
      // Listed under the kernel's name of what was found, as every image is (and the format a
      // raw image's name gives is its own name's, not the link's).
      const std::string canonical = sys::path_of_fd(named.fd.get(), p);
      asked.push_back(canonical);
      if (S_ISDIR(st.st_mode)) {
        // Walked from the directory found, not its path again.
        auto dir = std::make_shared<const sys::Fd>(
          ::openat(named.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!*dir) {
          result_.searched.push_back(canonical);
          result_.problems.push_back({p, errno_text(errno)});
          continue;
        }
        asked_roots_.emplace(canonical,
                             std::make_shared<const sys::Fd>(
                               ::openat(named.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
        walk_from(canonical, std::move(dir), canonical.front() == '/', true);
      } else if (S_ISREG(st.st_mode) && named.last_link) {
        // Still only the inode the lookup found.
        add_named(canonical, "argument", true, std::make_pair(st.st_dev, st.st_ino));
      } else {
        // Visited as an entry of its directory (sys::walk_named: reopened by the kernel's name
        // with no symlink followed), and only if that entry is the inode found here.
        walk_from(canonical, nullptr, canonical.front() == '/', true,
                  std::make_pair(st.st_dev, st.st_ino));
      }
    }
    join_host();
    // Every disk a domain, a Proxmox VM or a running QEMU names under the paths asked for is
    // audited, whatever its name and size: the walk passes over small files without an image
    // extension (a fresh qcow2 named guest.data, OpenStack's "disk"), and those are exactly the
    // configured ones an admin needs to see (issue 19, "Audit must not miss the most exposed
    // image").
    // A configured disk that does not exist is named too (a problem, as without paths): a VM
    // that cannot start, or a disk moved away behind its configuration's back.
    for (const auto& c : configured_) {
      if (!c.path.empty() && under_any(asked, c.path)) {
        add_named(c.path, c.source, false, inode_of(c));
      }
    }
    for (const auto& f : host_.procs.open_files) {
      if (qemu_writes(host_.procs, f) && under_any(asked, f.target)) {
        add_named(f.target, "open:" + std::to_string(f.pid), false,
                  std::make_pair(static_cast<dev_t>(f.dev), static_cast<ino_t>(f.ino)));
      }
    }
  }

  void candidates_from_default_roots()
  {
    std::vector<std::string> roots = {"/var/lib/libvirt/images", "/var/lib/vz/images"};
    for (const auto& t : host_.configs.pool_targets) {
      roots.push_back(t);
    }
    for (const auto& s : host_.configs.storages) {
      roots.push_back(s.path + "/images");
    }
    std::vector<std::pair<std::string, uid_t>> homes;
    setpwent();
    while (passwd* pw = getpwent()) {
      if (pw->pw_dir && std::string(pw->pw_dir) != "/" && pw->pw_dir[0] == '/') {
        homes.emplace_back(pw->pw_dir, pw->pw_uid);
      }
    }
    endpwent();
    std::set<std::string> done;
    for (const auto& r : roots) {
      if (done.insert(r).second && ::access(r.c_str(), F_OK) == 0) {
        walk_root(r, false);
      }
    }
    for (const auto& [home, uid] : homes) {
      for (const char* rel : {"/.local/share/libvirt/images", "/.local/share/gnome-boxes/images"}) {
        if (done.insert(home + rel).second) {
          walk_user_root(home + rel, uid);
        }
      }
    }
    join_host();
    for (const auto& c : configured_) {
      if (!c.path.empty()) {
        add_named(c.path, c.source, false, inode_of(c));
      }
    }
    for (const auto& f : host_.procs.open_files) {
      // Files a QEMU process has open are its images (and maybe firmware): look at them too.
      if (qemu_writes(host_.procs, f)) {
        add_named(f.target, "open:" + std::to_string(f.pid), false,
                  std::make_pair(static_cast<dev_t>(f.dev), static_cast<ino_t>(f.ino)));
      }
    }
  }

  // --- kernel log ---
  // The kernel log, read on its own thread while the paths are walked (gather_host); its notes
  // follow the walk's. What the kernel logs after the run began is not in it (the history is of
  // the past: a mismatch logged during the walk is this run's news for the next one).
  void read_kernel_log()
  {
    KernelLogRead k = klog_.get();
    boot_id_ = std::move(k.boot_id);
    printk_epoch_ = k.printk_epoch;
    log_events_ = std::move(k.events);
    result_.notes.insert(result_.notes.end(), k.notes.begin(), k.notes.end());
  }

  // What scrub and repair remember: outcomes per image and vmcsum's own read windows.
  const ScrubState* state_of(const std::string& fsid)
  {
    if (opts_.state_dir.empty()) {
      return nullptr;
    }
    auto it = states_.find(fsid);
    if (it == states_.end()) {
      ScrubState s;
      try {
        s = load_scrub_state(opts_.state_dir, fsid);
      } catch (const Error& e) {
        result_.notes.push_back(std::string("scrub state not used: ") + e.what());
      }
      it = states_.emplace(fsid, std::move(s)).first;
    }
    return &it->second;
  }

  // --- examine ---
  void examine_all()
  {
    FactCollector collector(opts_.mountinfo, syncs_);
    for (size_t i = 0; i < configured_.size(); ++i) {
      struct stat cst = {};
      if (auto id = inode_of(configured_[i])) {
        configured_by_inode_[*id].push_back(i);
      } else if (!configured_[i].path.empty() && ::stat(configured_[i].path.c_str(), &cst) == 0) {
        configured_by_inode_[{cst.st_dev, cst.st_ino}].push_back(i);
      }
    }
    // Each candidate let go of once examined, like the looks in add_looked(); nothing needs
    // candidates_ (or by_inode_) after this.
    by_inode_.clear();
    for (; !candidates_.empty(); candidates_.pop_front()) {
      if (cancelled()) {
        return; // a safe point: every image reported so far is whole
      }
      examine(collector, candidates_.front());
    }
  }

  // Every fact of the image comes from one descriptor, opened once: non-blocking, and refused
  // unless it is the regular file that was found (issue 12). The walk's LookPool already read
  // a walked image's facts through the descriptor it read the head from; the image is opened
  // again only for what is asked once per filesystem (kernel record, device names).
  void examine(FactCollector& collector, Candidate& cand)
  {
    ImageReport rep;
    std::optional<uint64_t> last_logged;
    LazyImage img{cand, std::nullopt};
    sys::Fd dir;
    const bool looked = cand.facts.has_value(); // read through a readable descriptor
    if (looked) {
      rep.facts = std::move(*cand.facts);
    } else {
      try {
        img.open = open_candidate(cand);
      } catch (const Error& e) {
        // A file only the walk found and that is gone since (not one named on the command
        // line, by a VM configuration or by a process, whose absence is a finding): nothing
        // left to audit.
        const bool walked_only =
          !cand.explicit_path &&
          std::all_of(cand.found_via.begin(), cand.found_via.end(),
                      [](const std::string& v) { return v.rfind("walk:", 0) == 0; });
        if (!(walked_only && e.sys_errno() == ENOENT)) {
          result_.problems.push_back({cand.path, e.detail()});
        }
        return;
      }
      if (!img.open->readable) {
        dir = open_dir_of(cand, sys::path_of_fd(img.open->fd.get(), ""));
      }
      rep.facts = collector.collect_fd(img.open->fd.get(), cand.path, dir.get());
    }
    rep.found_via = cand.found_via;
    if (!rep.facts.examined) {
      result_.problems.push_back({cand.path, rep.facts.error.value_or("cannot examine")});
      return;
    }
    // A file vmcsum could not open has no known format: a guess from its name is not a fact.
    // (Not value_or: its argument would be evaluated, reading the head of every image again.)
    ImageFormat format = ImageFormat::unknown;
    int read_errno = cand.read_errno;
    if (looked || img.open->readable) {
      format = cand.format
                 ? *cand.format
                 : sniff_fd(img.open->fd, rep.facts.size, sys::base_name(cand.path), read_errno);
    }
    if (read_errno != 0) {
      rep.read_error = errno_text(read_errno);
      rep.read_error_eio = read_errno == EIO;
      format = ImageFormat::unknown; // a guess from its name is no fact
    }
    rep.format = format_name(format);
    note_users(rep, cand, dir);
    if (rep.facts.on_btrfs && rep.facts.fsid) {
      record_once(rep, img);
      if (!log_events_.empty()) {
        last_logged = match_kernel_log(rep, img);
        note_scrub_state(rep);
      }
    }
    probe_once(rep);
    add_findings(rep, last_logged);
    result_.images.push_back(std::move(rep));
  }

  // A candidate's descriptor, opened when first needed.
  struct LazyImage
  {
    const Candidate& cand;
    std::optional<OpenImage> open;
  };
  // Not readable (or gone since) when it cannot be opened now: what needs it is skipped.
  const OpenImage& image_of(LazyImage& img) const
  {
    if (!img.open) {
      try {
        img.open = open_candidate(img.cand);
      } catch (const Error&) {
        img.open = OpenImage{};
      }
    }
    return *img.open;
  }

  // Opens `cand` as found (sys::FileRef below its walk's root, or its path resolved once) and
  // checks it is the inode found. Not readable (not root): opened O_PATH, which reads nothing
  // and still answers fstat. Throws Error when it is gone, replaced, or not a regular file.
  OpenImage open_candidate(const Candidate& cand) const
  {
    OpenImage img;
    for (int flags : {O_RDONLY | O_NOATIME, O_RDONLY}) {
      try {
        img.fd = open_checked(cand, flags);
        img.readable = true;
        return img;
      } catch (const Error& e) {
        // O_NOATIME is only for the owner or CAP_FOWNER (EPERM); EACCES: no read permission.
        if (e.sys_errno() != EPERM && e.sys_errno() != EACCES) {
          throw;
        }
      }
    }
    img.fd = open_checked(cand, O_PATH);
    return img;
  }

  sys::Fd open_checked(const Candidate& cand, int flags) const
  {
    if (!cand.ref) {
      // Looked up once (sys::open_named) and opened only when it is the inode it was found as:
      // a file put in its place is not even opened.
      return sys::open_regular_at(cand.path, flags, nullptr, &cand.inode);
    }
    struct stat st = {};
    sys::Fd fd;
    if (flags == O_PATH) {
      // openat2 takes no other flags with O_PATH, so FileRef::open cannot serve here.
      fd.reset(sys::openat_beneath(cand.ref->root->get(), cand.ref->relpath, O_PATH));
      if (!fd || ::fstat(fd.get(), &st) < 0) {
        throw_errno("open", cand.path);
      }
      if (!S_ISREG(st.st_mode)) {
        throw Error(Errc::unsupported, "not a regular file (" + kind_of_mode(st.st_mode) + ")",
                    cand.path);
      }
    } else {
      fd = cand.ref->open(flags, &st);
    }
    if (st.st_dev != cand.inode.first || st.st_ino != cand.inode.second) {
      throw Error(Errc::unsupported, "replaced by another file since it was found: refused",
                  cand.path);
    }
    return fd;
  }

  // The directory holding the candidate, reached the way the candidate is: for its NOCOW
  // attribute, and for the filesystem questions when the image itself is not readable.
  // `canonical`: the kernel's name of the image opened. A named image's directory is reopened
  // by it with no symlink followed: the configured path looked up again could lead elsewhere.
  static sys::Fd open_dir_of(const Candidate& cand, const std::string& canonical)
  {
    if (cand.ref) {
      return sys::Fd(sys::openat_beneath(cand.ref->root->get(), rel_parent(cand.ref->relpath),
                                         O_RDONLY | O_DIRECTORY));
    }
    return sys::Fd(sys::open_canonical_dir(sys::parent_dir(canonical), O_RDONLY | O_NONBLOCK));
  }

  // Who has the image open or locked, which configurations name it, and its directory's NOCOW.
  void note_users(ImageReport& rep, const Candidate& cand, sys::Fd& dir)
  {
    // (vmcsum's own pid is not scanned; skipped here too, should /proc not say which it is)
    auto u = users_in_scan(host_.procs, rep.facts.dev, rep.facts.inode, self_pid_);
    rep.open_by = std::move(u.users);
    rep.locks = std::move(u.locks);
    if (auto it = configured_by_inode_.find(
          {static_cast<dev_t>(rep.facts.dev), static_cast<ino_t>(rep.facts.inode)});
        it != configured_by_inode_.end()) {
      for (size_t i : it->second) {
        rep.configured.push_back(configured_[i]);
      }
    }
    if (cand.dir_nocow) {
      rep.dir_nocow = *cand.dir_nocow;
      return;
    }
    const std::string dir_name = sys::parent_dir(rep.facts.canonical_path);
    auto dn = dir_nocow_.find(dir_name);
    if (dn == dir_nocow_.end()) {
      if (!dir) {
        dir = open_dir_of(cand, rep.facts.canonical_path);
      }
      dn = dir_nocow_.emplace(dir_name, dir_nocow_of(dir.get())).first;
    }
    rep.dir_nocow = dn->second;
  }

  // The basenames of the devices of the filesystem with `fsid`, looked up once per filesystem.
  const std::set<std::string>& devices_of(const ImageReport& rep, LazyImage& lazy)
  {
    auto& devs = fs_devices_[*rep.facts.fsid];
    if (devs.empty() && image_of(lazy).readable) {
      const OpenImage& img = image_of(lazy);
      try {
        auto info = btrfs::fs_info(img.fd.get(), rep.facts.path);
        for (const auto& d : btrfs::dev_infos(img.fd.get(), info, rep.facts.path)) {
          devs.insert(sys::base_name(d.path));
          devs.insert(sys::base_name(sys::canonical_path(d.path)));
        }
      } catch (const Error&) {
        // Without device names log lines cannot be tied to this filesystem.
      }
    }
    return devs;
  }

  // Counts the logged checksum errors of this image (and vmcsum's own reads among them); returns
  // the time of the last one, or nothing when any of them has no known time.
  std::optional<uint64_t> match_kernel_log(ImageReport& rep, LazyImage& img)
  {
    const std::set<std::string>& devs = devices_of(rep, img);
    const ScrubState* state = state_of(*rep.facts.fsid);
    std::optional<uint64_t> last_logged;
    std::set<uint64_t> offsets;
    bool all_timed = true;
    for (const auto& te : log_events_) {
      const auto& ev = te.event;
      if (!is_error_of(ev, rep, devs)) {
        continue;
      }
      std::optional<uint64_t> when;
      if (te.since_boot_us) {
        when = kmsg_time_to_epoch_us(*te.since_boot_us, printk_epoch_);
      }
      if (state && ev.kind == CsumLogEvent::Kind::read_csum_failed &&
          in_own_window(*state, te, when)) {
        ++rep.logged_own_reads; // vmcsum's own kernel pass: no alarm
        continue;
      }
      ++rep.logged_csum_errors;
      if (when) {
        last_logged = std::max(last_logged.value_or(0), *when);
      } else {
        all_timed = false;
      }
      if (ev.offset && offsets.size() < 64) {
        offsets.insert(*ev.offset);
      }
    }
    if (!all_timed) {
      last_logged.reset(); // an event of unknown time may be later than any repair
    }
    rep.logged_offsets.assign(offsets.begin(), offsets.end());
    return last_logged;
  }

  // Whether `ev` is a checksum error logged for this image's inode on this filesystem.
  static bool is_error_of(const CsumLogEvent& ev, const ImageReport& rep,
                          const std::set<std::string>& devs)
  {
    if (ev.kind != CsumLogEvent::Kind::read_csum_failed &&
        ev.kind != CsumLogEvent::Kind::scrub_error) {
      return false;
    }
    // The device name, and the filesystem the log bound it to when it was logged: a loop
    // device reused by another filesystem since must not lend it the old one's events.
    return !((ev.fsid && *ev.fsid != *rep.facts.fsid) || !devs.count(sys::base_name(ev.device)) ||
             !ev.root || !ev.ino || !rep.facts.subvolume_id ||
             *ev.root != static_cast<int64_t>(*rep.facts.subvolume_id) ||
             *ev.ino != rep.facts.inode);
  }

  // Whether a read_csum_failed event falls in one of vmcsum's own recorded read windows.
  bool in_own_window(const ScrubState& state, const TimedLogEvent& te,
                     std::optional<uint64_t> when) const
  {
    const auto& ev = te.event;
    EventWhen w;
    w.device = sys::base_name(ev.device);
    w.root = ev.root;
    w.ino = ev.ino;
    w.offset = ev.offset;
    w.boot_id = boot_id_;
    w.mono_us = te.since_boot_us;
    w.real_us = when;
    return std::any_of(state.windows.begin(), state.windows.end(),
                       [&](const ReadWindow& rw) { return event_in_window(w, rw); });
  }

  // When scrub last found the image clean, and when repair last healed it.
  void note_scrub_state(ImageReport& rep)
  {
    const ScrubState* state = state_of(*rep.facts.fsid);
    if (!state || !rep.facts.subvolume_id) {
      return;
    }
    for (const auto& o : state->outcomes) {
      if (o.subvolume == *rep.facts.subvolume_id && o.inode == rep.facts.inode) {
        // A later scrub that found it bad again outweighs the repair.
        const bool bad_since =
          o.scrubbed_at_us && !o.clean && o.repaired_at_us && *o.scrubbed_at_us > *o.repaired_at_us;
        if (!bad_since) {
          rep.repaired_at_us = o.repaired_at_us;
        }
        if (o.clean) {
          rep.scrubbed_clean_at_us = o.scrubbed_at_us;
        }
        rep.healed = healed_of(o);
      }
    }
  }

  // The kernel record gains an entry for each btrfs audited, as at every scrub and repair, so
  // later verdicts know which kernel wrote what (issue 19: "record ... whenever vmcsum runs").
  // Only root writes it, only into a private state directory (record_now refuses any other);
  // an audit never fails over it, it says so in a note.
  void record_once(const ImageReport& rep, LazyImage& lazy)
  {
    if (opts_.state_dir.empty() || recorded_.count(*rep.facts.fsid) || ::geteuid() != 0 ||
        !image_of(lazy).readable) {
      return;
    }
    recorded_.insert(*rep.facts.fsid);
    try {
      const auto r = record_now(image_of(lazy).fd.get(), rep.facts.path, opts_.state_dir, "run",
                                opts_.kernel_release);
      if (r.restarted()) {
        result_.notes.push_back("kernel record of " + *rep.facts.fsid + ": " + *r.restarted());
      }
    } catch (const Error& e) {
      result_.notes.push_back("kernel record of " + *rep.facts.fsid + " not updated: " + e.what());
    }
  }

  // --probe measures each btrfs filesystem once, the first time one of its images is examined.
  void probe_once(const ImageReport& rep)
  {
    if (!opts_.probe || !rep.facts.on_btrfs || !rep.facts.fsid ||
        !probed_.insert(*rep.facts.fsid).second) {
      return;
    }
    ProbeOptions po;
    po.mountinfo = opts_.mountinfo;
    try {
      FsProbe m = probe_filesystem(rep.facts.canonical_path, po);
      if (apply_probe(result_.kernel.policy, m)) {
        result_.kernel.source = "probe";
      }
      result_.notes.push_back(probe_summary(m));
    } catch (const Error& e) {
      result_.notes.push_back("probe of " + rep.facts.mount_point + ": " + e.what());
    }
  }

  void add_findings(ImageReport& rep, std::optional<uint64_t> last_logged) const
  {
    if (rep.facts.on_btrfs) {
      rep.findings = assess(risk_inputs(rep, last_logged));
    } else {
      rep.findings.push_back({"not-btrfs", Severity::info,
                              "not on btrfs (" + rep.facts.fs + "): btrfs checksums do not apply",
                              "nothing to do"});
    }
    if (rep.read_error) {
      // Audit reads a few KiB of each image through btrfs to know its format: when that fails,
      // the image is damaged where it starts (or ends) now, whatever the kernel log says later.
      rep.findings.push_back(
        {"read-error", rep.read_error_eio ? Severity::critical : Severity::warning,
         "reading its first (or last) KiB through btrfs failed (" + *rep.read_error +
           (rep.read_error_eio ? ": no copy matches its checksum, or the medium failed"
                               : std::string()) +
           "); its format is unknown",
         "run vmcsum scrub on it: it names the bad sectors and tells a false mismatch from "
         "media damage"});
    }
    if (rep.facts.open_error) {
      // Never "ok" for what could not be looked at (issue 12, "Also weak").
      rep.findings.push_back({"not-readable", Severity::warning,
                              "vmcsum could not open the image (" + *rep.facts.open_error +
                                "): its format, flags and checksums were not examined",
                              "run vmcsum audit as root"});
    }
  }

  RiskInputs risk_inputs(const ImageReport& rep, std::optional<uint64_t> last_logged) const
  {
    RiskInputs in;
    in.nocow = rep.facts.nocow.value_or(false);
    in.nodatasum = rep.facts.nodatasum;
    in.data_profiles = rep.facts.data_profiles;
    in.shared_bytes = rep.facts.shared_bytes.value_or(0);
    for (const auto& c : rep.configured) {
      in.o_direct_configured = in.o_direct_configured || c.o_direct;
    }
    for (const auto& o : rep.open_by) {
      in.o_direct_open = in.o_direct_open || o.o_direct;
      in.writer_open = in.writer_open || o.writable;
    }
    in.dir_nocow = rep.dir_nocow;
    in.logged_csum_errors = rep.logged_csum_errors;
    in.last_logged_us = last_logged;
    if (rep.healed) {
      in.healed_at_us = rep.healed->at_us;
      in.healed_by = rep.healed->by;
    }
    in.policy = result_.kernel.policy;
    in.kernel_release = result_.kernel.release;
    in.policy_source = result_.kernel.source;
    return in;
  }

  const AuditOptions& opts_;
  AuditResult result_;
  HostContext host_;
  std::future<ProcScan> procs_; // gather_host() to join_host()
  struct KernelLogRead
  {
    std::string boot_id;
    uint64_t printk_epoch = 0;
    std::vector<TimedLogEvent> events;
    std::vector<std::string> notes;
  };
  std::future<KernelLogRead> klog_; // gather_host() to read_kernel_log()
  // The filesystems synced in this run, shared by the look threads' and examine's collectors.
  std::shared_ptr<FsSyncs> syncs_ = std::make_shared<FsSyncs>();
  std::vector<ConfiguredDisk> configured_; // moved out of host_.configs.disks
  std::deque<Candidate> candidates_;       // a deque: growing it never moves the facts they carry
  std::map<std::pair<dev_t, ino_t>, size_t> by_inode_; // candidates_ index by inode
  const int self_pid_ = static_cast<int>(::getpid());  // once: glibc asks the kernel each time
  std::vector<TimedLogEvent> log_events_;
  std::string boot_id_;
  uint64_t printk_epoch_ = 0;
  std::map<std::string, ScrubState> states_; // by fsid
  std::set<std::string> probed_;             // fsids measured for --probe
  std::set<std::string> recorded_;           // fsids given a kernel record entry
  // The paths asked for that are directories, canonical, open: configured disks below them are
  // reached through these descriptors.
  std::map<std::string, std::shared_ptr<const sys::Fd>> asked_roots_;
  std::map<std::pair<dev_t, ino_t>, std::vector<size_t>> configured_by_inode_;
  std::map<std::string, std::optional<bool>> dir_nocow_;    // parent directory -> its NOCOW
  std::map<std::string, std::set<std::string>> fs_devices_; // fsid -> device basenames
};

} // namespace

AuditResult audit(const AuditOptions& opts)
{
  return Auditor(opts).run();
}

} // namespace vmcsum::core
