// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/error.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/sys/fd.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace vmcsum::core;
namespace fs = std::filesystem;

namespace {
std::string read_fixture(const char* name)
{
  std::ifstream in(std::string(VMCSUM_TEST_DATA "/") + name, std::ios::binary);
  REQUIRE_MESSAGE(in, name);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string octal(uint32_t v)
{
  char buf[32];
  std::snprintf(buf, sizeof buf, "%o", v);
  return buf;
}

// A temporary directory that is removed with everything in it.
class TempDir
{
public:
  TempDir()
  {
    std::string tmpl = (fs::temp_directory_path() / "vmcsum-unit-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    m_path = tmpl;
  }
  ~TempDir()
  {
    std::error_code ec;
    fs::remove_all(m_path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return m_path; }

private:
  fs::path m_path;
};

void write_file(const fs::path& p, std::string_view content)
{
  std::ofstream out(p, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  REQUIRE(out);
}

std::string nul_joined(std::initializer_list<std::string_view> args)
{
  std::string s;
  for (auto a : args) {
    s += a;
    s += '\0';
  }
  return s;
}

const DriveConfig* find_drive(const std::vector<DriveConfig>& drives, std::string_view file)
{
  auto it = std::find_if(drives.begin(), drives.end(),
                         [&](const DriveConfig& d) { return d.file == file; });
  return it == drives.end() ? nullptr : &*it;
}
} // namespace

TEST_CASE("fdinfo lock lines are the locks held through that open file")
{
  auto locks = parse_fdinfo_locks(read_fixture("fdinfo_qemu.txt"));
  REQUIRE(locks.size() == 3);
  CHECK(locks[0].kind == "OFDLCK");
  CHECK_FALSE(locks[0].pid);
  CHECK(locks[0].inode == 257);
  CHECK(is_qemu_lock(locks[0]));
  CHECK_FALSE(is_qemu_write_lock(locks[0]));
  CHECK(is_qemu_write_lock(locks[1]));       // byte 101: QEMU holds the write permission
  CHECK_FALSE(is_qemu_write_lock(locks[2])); // byte 201: "others may not write"
  CHECK(parse_fdinfo_locks("pos:\t0\nflags:\t02\n").empty());
  CHECK(parse_fdinfo_locks("lock:\tgarbage\n").empty());
}

TEST_CASE("fdinfo flags")
{
  auto flags = parse_fdinfo_flags(read_fixture("fdinfo_qemu.txt"));
  REQUIRE(flags);
  CHECK(*flags == 02140002u);
  CHECK(flags_writable(*flags));
  CHECK(flags_have_o_direct(*flags) == ((02140002u & static_cast<uint32_t>(O_DIRECT)) != 0));
#if defined(__x86_64__)
  CHECK(flags_have_o_direct(*flags));
#endif

  // Built from this architecture's constants, so the checks hold everywhere.
  uint32_t direct_ro = static_cast<uint32_t>(O_RDONLY | O_DIRECT | O_CLOEXEC);
  auto ro = parse_fdinfo_flags("pos:\t4096\nflags:\t" + octal(direct_ro) + "\nmnt_id:\t31\n");
  REQUIRE(ro);
  CHECK(flags_have_o_direct(*ro));
  CHECK_FALSE(flags_writable(*ro));
  CHECK(flags_writable(static_cast<uint32_t>(O_WRONLY)));
  CHECK_FALSE(flags_have_o_direct(static_cast<uint32_t>(O_RDWR | O_CLOEXEC)));

  CHECK(parse_fdinfo_flags("flags:\t0100002") == 0100002u); // no trailing newline
  CHECK(parse_fdinfo_flags("flags: 0\n") == 0u);
  CHECK(parse_fdinfo_flags("pos:\t0\nflags:\t02\nflags:\t04\n") == 02u);
  CHECK_FALSE(parse_fdinfo_flags(""));
  CHECK_FALSE(parse_fdinfo_flags("pos:\t0\nmnt_id:\t29\n"));
  CHECK_FALSE(parse_fdinfo_flags("flags:\t\n"));
  CHECK_FALSE(parse_fdinfo_flags("flags:\t0128\n"));           // not octal
  CHECK_FALSE(parse_fdinfo_flags("flags:\t0x8002\n"));         // not octal
  CHECK_FALSE(parse_fdinfo_flags("flags:\t02 04\n"));          // garbled
  CHECK_FALSE(parse_fdinfo_flags("flags:\t77777777777777\n")); // > 32 bits
  CHECK_FALSE(parse_fdinfo_flags(" flags:\t02\n"));
  // fanotify's "fanotify flags:" is not the fd's flags line.
  CHECK_FALSE(parse_fdinfo_flags("fanotify flags:10 event-flags:0\n"));
}

namespace {
// fdinfo's "lock:" lines for the /proc/locks lines of `text` (fs/proc/fd.c show_fd_locks()
// prints each as "lock:\t" and the line /proc/locks would show).
std::string as_fdinfo_locks(std::string_view text)
{
  std::string out = "pos:\t0\nflags:\t0100002\nmnt_id:\t30\nino:\t257\n";
  size_t at = 0;
  while (at < text.size()) {
    const size_t nl = std::min(text.find('\n', at), text.size());
    out += "lock:\t" + std::string(text.substr(at, nl - at)) + "\n";
    at = nl + 1;
  }
  return out;
}
std::vector<FileLock> parse_lines(std::string_view lines)
{
  return parse_fdinfo_locks(as_fdinfo_locks(lines));
}
} // namespace

TEST_CASE("fdinfo lock: lines (the /proc/locks format)")
{
  auto locks = parse_lines(read_fixture("proc_locks.txt"));
  REQUIRE(locks.size() == 12);

  const auto& ofd = locks[0];
  CHECK(ofd.kind == "OFDLCK");
  CHECK(ofd.mode == "READ");
  CHECK(ofd.advisory);
  CHECK_FALSE(ofd.pid);
  CHECK(ofd.dev_major == 0);
  CHECK(ofd.dev_minor == 0x2b);
  CHECK(ofd.inode == 257);
  CHECK(ofd.start == 100);
  CHECK(ofd.end == 101u);
  CHECK_FALSE(ofd.blocked);
  CHECK(is_qemu_lock(ofd));
  CHECK(is_qemu_write_lock(ofd));

  // The "others may not write" byte alone is not a writer (read-only backing files set it).
  CHECK(is_qemu_lock(locks[1]));
  CHECK_FALSE(is_qemu_write_lock(locks[1]));
  CHECK(is_qemu_lock(locks[2]));
  CHECK_FALSE(is_qemu_write_lock(locks[2]));
  CHECK_FALSE(is_qemu_write_lock(locks[3]));

  const auto& posix = locks[4];
  CHECK(posix.kind == "POSIX");
  CHECK(posix.mode == "WRITE");
  CHECK(posix.pid == 1234);
  CHECK(posix.dev_major == 8);
  CHECK(posix.dev_minor == 1);
  CHECK(posix.inode == 1311);
  CHECK_FALSE(posix.end);
  CHECK_FALSE(is_qemu_lock(posix));

  CHECK(locks[5].blocked);
  CHECK(locks[5].pid == 1240);
  CHECK(locks[6].kind == "FLOCK");
  CHECK(locks[7].blocked); // "6:  -> FLOCK": the newer indented waiter form
  CHECK(locks[7].pid == 900);

  CHECK(locks[8].kind == "LEASE");
  CHECK_FALSE(locks[8].advisory); // ACTIVE
  CHECK(locks[8].dev_major == 0xfd);
  CHECK(locks[8].inode == 2621449);

  CHECK(locks[9].dev_major == 0x103);
  CHECK(locks[9].dev_minor == 2);
  CHECK(locks[9].start == 1073741824u);
  CHECK(locks[9].end == 1073741825u);

  CHECK(locks[10].kind == "DELEG");
  CHECK(locks[10].pid == 0);

  // An OFD lock on the whole file is not one of QEMU's.
  CHECK(locks[11].kind == "OFDLCK");
  CHECK_FALSE(is_qemu_lock(locks[11]));

  CHECK(parse_lines("").empty());
  CHECK(parse_lines("1: OFDLCK ADVISORY READ -1 00:2b:257 100").empty());
  CHECK(parse_lines("1: OFDLCK ADVISORY READ x 00:2b:257 100 101").empty());
  CHECK(parse_lines("1: OFDLCK ADVISORY READ -1 00:2b 100 101").empty());
  CHECK(parse_lines("1: OFDLCK ADVISORY READ -1 zz:2b:257 100 101").empty());
  CHECK(parse_lines("1: OFDLCK ADVISORY SHARE -1 00:2b:257 100 101").empty());
  CHECK(parse_lines("x: OFDLCK ADVISORY READ -1 00:2b:257 100 101").empty());
  CHECK(parse_lines("1 OFDLCK ADVISORY READ -1 00:2b:257 100 101").empty());
}

TEST_CASE("QEMU lock ranges")
{
  FileLock l;
  l.kind = "OFDLCK";
  l.start = 100;
  l.end = 100;
  CHECK(is_qemu_lock(l));
  CHECK_FALSE(is_qemu_write_lock(l));
  l.end = 103;
  CHECK(is_qemu_write_lock(l));
  l.start = 101;
  l.end = 101;
  CHECK(is_qemu_write_lock(l));
  l.start = 99;
  CHECK_FALSE(is_qemu_lock(l));
  l.start = 200;
  l.end = 300;
  CHECK_FALSE(is_qemu_lock(l));
  l.start = 100;
  l.end.reset();
  CHECK_FALSE(is_qemu_lock(l));
  l.kind = "POSIX";
  l.end = 101;
  CHECK_FALSE(is_qemu_lock(l));
}

TEST_CASE("users_in_scan: the open files and fdinfo locks of one inode")
{
  ProcScan scan;
  OpenFile qemu;
  qemu.pid = 40;
  qemu.comm = "qemu-system-x86";
  qemu.fd = 12;
  qemu.dev = 7;
  qemu.ino = 257;
  qemu.flags = static_cast<uint32_t>(O_RDWR | O_DIRECT);
  FileLock ofd;
  ofd.kind = "OFDLCK";
  ofd.mode = "READ";
  ofd.start = 101;
  ofd.end = 101;
  qemu.locks.push_back(ofd);
  FileLock posix = ofd;
  posix.kind = "POSIX";
  posix.pid = 41;
  posix.start = 0;
  posix.end.reset();
  qemu.locks.push_back(posix);
  OpenFile other = qemu; // another inode on the same device
  other.ino = 258;
  OpenFile self = qemu; // the caller itself
  self.pid = 99;
  self.flags = static_cast<uint32_t>(O_RDONLY);
  self.locks.clear();
  OpenFile reader = self; // a reader with unknown flags
  reader.pid = 50;
  reader.flags.reset();
  scan.open_files = {qemu, other, self, reader};

  auto u = users_in_scan(scan, 7, 257, 99);
  REQUIRE(u.users.size() == 2);
  CHECK(u.users[0].pid == 40);
  CHECK(u.users[0].comm == "qemu-system-x86");
  CHECK(u.users[0].fd == 12);
  CHECK(u.users[0].o_direct);
  CHECK(u.users[0].writable);
  CHECK(u.users[1].pid == 50);
  CHECK_FALSE(u.users[1].o_direct); // unknown flags claim nothing
  CHECK_FALSE(u.users[1].writable);
  REQUIRE(u.locks.size() == 2);
  CHECK(u.locks[0].pid == 40); // an OFD lock has no pid of its own: its holder's
  CHECK(u.locks[0].qemu);
  CHECK(u.locks[0].qemu_write);
  CHECK(u.locks[0].seen_by == "fdinfo");
  CHECK(u.locks[1].pid == 41);
  CHECK_FALSE(u.locks[1].qemu);
  CHECK_FALSE(u.locks[1].end.has_value());

  CHECK(users_in_scan(scan, 7, 257).users.size() == 3); // nobody skipped
  CHECK(users_in_scan(scan, 8, 257).users.empty());
}

TEST_CASE("cmdline splitting")
{
  CHECK(split_cmdline("").empty());
  CHECK(split_cmdline(nul_joined({"qemu", "-m", "1G"})) ==
        std::vector<std::string>{"qemu", "-m", "1G"});
  // A missing final NUL (setproctitle) and empty arguments are kept as they are.
  CHECK(split_cmdline(std::string_view("a\0b", 3)) == std::vector<std::string>{"a", "b"});
  CHECK(split_cmdline(std::string_view("a\0\0b\0", 5)) == std::vector<std::string>{"a", "", "b"});
  CHECK(split_cmdline(std::string_view("\0", 1)) == std::vector<std::string>{""});
}

TEST_CASE("qemu -drive, key=value")
{
  // What qemu-server runs for a Proxmox VM.
  std::vector<std::string> argv = {
    "/usr/bin/kvm",
    "-id",
    "100",
    "-name",
    "vm100,debug-threads=on",
    "-drive",
    "file=/var/lib/vz/images/100/vm-100-disk-0.qcow2,if=none,id=drive-scsi0,cache=none,"
    "aio=io_uring,discard=on,format=qcow2,detect-zeroes=unmap",
    "-drive",
    "if=none,id=drive-ide2,media=cdrom,aio=io_uring",
    "-drive",
    "file=/var/lib/vz/template/iso/debian.iso,if=none,id=drive-ide3,media=cdrom",
    "-drive",
    "file=/mnt/a,,b.img,if=none,cache=writeback,aio=threads",
    "--drive",
    "file=/srv/dsync.raw,cache=directsync",
    "-drive",
    "file=/srv/override.raw,cache=none,cache.direct=off",
    "-drive",
    "file=file:/srv/proto.raw,cache.direct=on",
    "-drive",
    "file=nbd://host:10809/export,if=virtio,cache=none",
    "-drive",
    "file=rbd:pool/image:conf=/etc/ceph.conf,cache=none",
    "-hda",
    "/srv/legacy.img",
    "-device",
    "virtio-blk-pci,drive=drive-virtio0",
    "-drive"};
  auto drives = parse_qemu_cmdline(argv);
  REQUIRE(drives.size() == 6);

  const auto* scsi0 = find_drive(drives, "/var/lib/vz/images/100/vm-100-disk-0.qcow2");
  REQUIRE(scsi0);
  CHECK(scsi0->cache == "none");
  CHECK(scsi0->aio == "io_uring");
  CHECK_FALSE(scsi0->cache_direct);
  CHECK(scsi0->o_direct());

  const auto* comma = find_drive(drives, "/mnt/a,b.img");
  REQUIRE(comma);
  CHECK(comma->cache == "writeback");
  CHECK(comma->aio == "threads");
  CHECK_FALSE(comma->o_direct());

  REQUIRE(find_drive(drives, "/srv/dsync.raw"));
  CHECK(find_drive(drives, "/srv/dsync.raw")->o_direct());

  const auto* over = find_drive(drives, "/srv/override.raw");
  REQUIRE(over);
  CHECK(over->cache_direct == false);
  CHECK_FALSE(over->o_direct());

  const auto* proto = find_drive(drives, "/srv/proto.raw");
  REQUIRE(proto);
  CHECK(proto->o_direct());

  const auto* legacy = find_drive(drives, "/srv/legacy.img");
  REQUIRE(legacy);
  CHECK(legacy->cache.empty());
  CHECK_FALSE(legacy->o_direct());
}

TEST_CASE("qemu -blockdev, JSON and key=value")
{
  // libvirt's form: a protocol node and a format node referring to it by name.
  std::vector<std::string> argv = {
    "/usr/bin/qemu-system-x86_64",
    "-blockdev",
    R"({"driver":"file","filename":"/var/lib/libvirt/images/win.qcow2","node-name":"libvirt-2-storage","auto-read-only":true,"discard":"unmap","cache":{"direct":true,"no-flush":false},"aio":"native"})",
    "-blockdev",
    R"({"node-name":"libvirt-2-format","read-only":false,"cache":{"direct":true,"no-flush":false},"driver":"qcow2","file":"libvirt-2-storage"})",
    "-blockdev",
    R"({"driver":"qcow2","node-name":"fmt","cache":{"direct":true},"file":{"driver":"file","filename":"/srv/nested.qcow2"}})",
    "-blockdev",
    R"({"driver":"file","filename":"/srv/buffered.raw","cache":{"direct":false}})",
    "-blockdev",
    R"({"driver":"host_device","filename":"/dev/sdb"})",
    "-blockdev",
    R"({"driver":"file", broken json)",
    "-blockdev",
    "driver=file,node-name=n1,filename=/srv/kv.raw,cache.direct=on,aio=threads",
    "--blockdev",
    "driver=qcow2,node-name=n2,file.driver=file,file.filename=/srv/a,,b.qcow2",
    "-blockdev",
    "driver=file,node-name=n3",
    "-device",
    "virtio-blk-pci,drive=libvirt-2-format"};
  auto drives = parse_qemu_cmdline(argv);
  REQUIRE(drives.size() == 5);

  const auto* win = find_drive(drives, "/var/lib/libvirt/images/win.qcow2");
  REQUIRE(win);
  CHECK(win->cache_direct == true);
  CHECK(win->aio == "native");
  CHECK(win->cache.empty());
  CHECK(win->o_direct());

  // Inline children inherit cache.direct from the node that defines them.
  const auto* nested = find_drive(drives, "/srv/nested.qcow2");
  REQUIRE(nested);
  CHECK(nested->o_direct());

  const auto* buffered = find_drive(drives, "/srv/buffered.raw");
  REQUIRE(buffered);
  CHECK_FALSE(buffered->o_direct());

  const auto* kv = find_drive(drives, "/srv/kv.raw");
  REQUIRE(kv);
  CHECK(kv->o_direct());
  CHECK(kv->aio == "threads");

  const auto* kv2 = find_drive(drives, "/srv/a,b.qcow2");
  REQUIRE(kv2);
  CHECK_FALSE(kv2->cache_direct);
  CHECK_FALSE(kv2->o_direct());
}

TEST_CASE("qemu -drive file=json: pseudo-protocol")
{
  std::vector<std::string> argv = {
    "qemu-system-x86_64", "-drive",
    R"(file=json:{"driver":"qcow2",,"file":{"driver":"file",,"filename":"/srv/j.qcow2"}},cache=none,aio=native)"};
  auto drives = parse_qemu_cmdline(argv);
  REQUIRE(drives.size() == 1);
  CHECK(drives[0].file == "/srv/j.qcow2");
  CHECK(drives[0].cache == "none");
  CHECK(drives[0].aio == "native");
  CHECK(drives[0].o_direct());

  CHECK(parse_qemu_cmdline({"qemu", "-drive", "file=json:{nope},cache=none"}).empty());
  CHECK(parse_qemu_cmdline({}).empty());
  CHECK(parse_qemu_cmdline({"qemu"}).empty());
  CHECK(parse_qemu_cmdline({"qemu", "-drive", ""}).empty());
  CHECK(parse_qemu_cmdline({"qemu", "-drive", ",,,=,"}).empty());
}

TEST_CASE("scan_proc over a fixture tree")
{
  TempDir tmp;
  const fs::path images = tmp.path() / "images";
  const fs::path proc = tmp.path() / "proc";
  fs::create_directories(images);
  write_file(images / "vm.qcow2", "QFI\xfb");
  write_file(images / "data.raw", "");
  REQUIRE(::mkfifo((tmp.path() / "fifo").c_str(), 0600) == 0);

  // A QEMU process with an O_DIRECT image, a buffered one, and fds that must not be opened.
  const fs::path q = proc / "4242";
  fs::create_directories(q / "fd");
  fs::create_directories(q / "fdinfo");
  write_file(q / "comm", "qemu-system-x86\n");
  write_file(q / "cmdline",
             nul_joined({"/usr/bin/qemu-system-x86_64", "-drive",
                         "file=" + (images / "vm.qcow2").string() + ",cache=none,aio=native"}));
  fs::create_symlink(images / "vm.qcow2", q / "fd" / "3");
  fs::create_symlink(tmp.path() / "fifo", q / "fd" / "4");
  fs::create_symlink(tmp.path() / "missing", q / "fd" / "5");
  fs::create_symlink(images, q / "fd" / "6");
  fs::create_symlink("/dev/null", q / "fd" / "7");
  fs::create_symlink(images / "data.raw", q / "fd" / "10");
  fs::create_symlink(images / "data.raw", q / "fd" / "0");
  uint32_t direct_rw = static_cast<uint32_t>(O_RDWR | O_DIRECT | O_CLOEXEC);
  write_file(q / "fdinfo" / "3", "pos:\t0\nflags:\t" + octal(direct_rw) + "\nmnt_id:\t29\n");
  write_file(q / "fdinfo" / "4", "pos:\t0\nflags:\t00\n");
  write_file(q / "fdinfo" / "10", "pos:\t0\nflags:\t0100000\n");
  // fdinfo/0 is missing: the file is still reported, without flags.

  // Proxmox runs QEMU as "kvm"; recognised by argv[0] even though comm is something else.
  fs::create_directories(proc / "100" / "fd");
  fs::create_symlink("/dev/kvm", proc / "100" / "fd" / "9"); // not a regular file: not listed
  write_file(proc / "100" / "comm", "CPU 0/KVM\n");
  write_file(proc / "100" / "cmdline", nul_joined({"/usr/bin/kvm", "-id", "100"}));

  // A kernel thread: a QEMU-like comm but no argv.
  fs::create_directories(proc / "2" / "fd");
  write_file(proc / "2" / "comm", "kvm\n");
  write_file(proc / "2" / "cmdline", "");
  // No descriptor open at all (its comm and cmdline are not read): neither a user nor QEMU,
  // which always holds its images and /dev/kvm.
  fs::create_directories(proc / "3" / "fd");
  write_file(proc / "3" / "comm", "qemu-system-x86\n");
  write_file(proc / "3" / "cmdline", nul_joined({"/usr/bin/qemu-system-x86_64", "-m", "1G"}));

  // A process whose fd directory cannot be read.
  fs::create_directories(proc / "77");
  write_file(proc / "77" / "comm", "bash\n");
  write_file(proc / "77" / "cmdline", nul_joined({"-bash"}));

  // comm and cmdline replaced by FIFOs: reading them must neither block nor throw.
  fs::create_directories(proc / "88" / "fd");
  fs::create_symlink("/dev/null", proc / "88" / "fd" / "1");
  REQUIRE(::mkfifo((proc / "88" / "comm").c_str(), 0600) == 0);
  REQUIRE(::mkfifo((proc / "88" / "cmdline").c_str(), 0600) == 0);

  // Not processes.
  fs::create_directories(proc / "notapid" / "fd");
  fs::create_directory_symlink(q, proc / "self");

  ProcScan scan = scan_proc(proc.string());

  REQUIRE(scan.open_files.size() == 3);
  const auto& f0 = scan.open_files[0];
  CHECK(f0.pid == 4242);
  CHECK(f0.fd == 0);
  CHECK_FALSE(f0.flags);
  const auto& f3 = scan.open_files[1];
  CHECK(f3.pid == 4242);
  CHECK(f3.comm == "qemu-system-x86");
  CHECK(f3.fd == 3);
  CHECK(f3.target == (images / "vm.qcow2").string());
  struct stat st
  {
  };
  REQUIRE(::stat((images / "vm.qcow2").c_str(), &st) == 0);
  CHECK(f3.dev == static_cast<uint64_t>(st.st_dev));
  CHECK(f3.ino == static_cast<uint64_t>(st.st_ino));
  REQUIRE(f3.flags);
  CHECK(flags_have_o_direct(*f3.flags));
  CHECK(flags_writable(*f3.flags));
  const auto& f10 = scan.open_files[2];
  CHECK(f10.fd == 10);
  CHECK(f10.flags == 0100000u);

  REQUIRE(scan.qemus.size() == 2);
  CHECK(scan.qemus[0].pid == 100);
  CHECK(scan.qemus[0].drives.empty());
  CHECK(scan.qemus[1].pid == 4242);
  REQUIRE(scan.qemus[1].drives.size() == 1);
  CHECK(scan.qemus[1].drives[0].file == (images / "vm.qcow2").string());
  CHECK(scan.qemus[1].drives[0].o_direct());

  REQUIRE(scan.unreadable.size() == 1);
  CHECK(scan.unreadable[0].starts_with("77: fd: "));
}

TEST_CASE("scan_proc: an empty proc directory and a missing root")
{
  TempDir tmp;
  auto scan = scan_proc(tmp.path().string());
  CHECK(scan.open_files.empty());
  CHECK(scan.qemus.empty());
  CHECK(scan.unreadable.empty());
  CHECK_THROWS_AS(scan_proc((tmp.path() / "nope").string()), vmcsum::Error);
}

TEST_CASE("scan_proc on the real /proc sees a file another process holds open, never its own")
{
  TempDir tmp;
  const fs::path file = tmp.path() / "held.raw";
  write_file(file, "x");
  vmcsum::sys::Fd mine(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(mine);
  struct stat st
  {
  };
  REQUIRE(::fstat(mine.get(), &st) == 0);
  // A child holds the file open (fd 9, read-only) until the parent closes `go`.
  int ready[2], go[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(go) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    ::close(go[1]); // else the read below never sees the parent close it
    const int held = ::open(file.c_str(), O_RDONLY);
    ::dup2(held, 9);
    char c = 'r';
    (void)!::write(ready[1], &c, 1);
    (void)!::read(go[0], &c, 1);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(go[0]);
  // Whatever fails below, the child is let go and reaped.
  struct Holder
  {
    pid_t pid;
    int go, ready;
    ~Holder()
    {
      ::close(go);
      ::close(ready);
      ::waitpid(pid, nullptr, 0);
    }
  } holder{child, go[1], ready[0]};
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);

  auto scan = scan_proc("/proc");

  auto it = std::find_if(scan.open_files.begin(), scan.open_files.end(),
                         [&](const OpenFile& f) { return f.pid == child && f.fd == 9; });
  REQUIRE(it != scan.open_files.end());
  CHECK(it->ino == static_cast<uint64_t>(st.st_ino));
  CHECK(it->target == file.string());
  REQUIRE(it->flags);
  CHECK_FALSE(flags_writable(*it->flags));
  // vmcsum is never a user of what it looks at: its own descriptors are not scanned.
  const int self = static_cast<int>(::getpid());
  CHECK(std::none_of(scan.open_files.begin(), scan.open_files.end(),
                     [&](const OpenFile& f) { return f.pid == self; }));
}
