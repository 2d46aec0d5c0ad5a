// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/host/vm_config.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace vmcsum::core;

namespace {
std::string read_fixture(const char* name)
{
  std::ifstream in(std::string(VMCSUM_TEST_DATA "/") + name, std::ios::binary);
  REQUIRE_MESSAGE(in, name);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const ConfiguredDisk& by_target(const std::vector<ConfiguredDisk>& disks, std::string_view target)
{
  auto it = std::find_if(disks.begin(), disks.end(),
                         [&](const ConfiguredDisk& d) { return d.target == target; });
  REQUIRE_MESSAGE(it != disks.end(), target);
  return *it;
}

bool has_target(const std::vector<ConfiguredDisk>& disks, std::string_view target)
{
  return std::any_of(disks.begin(), disks.end(),
                     [&](const ConfiguredDisk& d) { return d.target == target; });
}
} // namespace

TEST_CASE("libvirt domain: file and volume disks")
{
  std::string xml = read_fixture("libvirt_domain.xml");
  CHECK(libvirt_domain_name(xml) == "win11");
  auto disks = parse_libvirt_domain(xml);
  REQUIRE(disks);
  CHECK(disks->size() == 5);

  const auto& vda = by_target(*disks, "vda");
  CHECK(vda.source == "libvirt:win11");
  CHECK(vda.path == "/var/lib/libvirt/images/win11.qcow2");
  CHECK(vda.cache == "none");
  CHECK(vda.io == "native");
  CHECK(vda.o_direct);

  const auto& vdb = by_target(*disks, "vdb");
  CHECK(vdb.path == "/srv/vm/data disk.raw");
  CHECK(vdb.cache.empty()); // hypervisor default
  CHECK(vdb.io.empty());
  CHECK_FALSE(vdb.o_direct);

  // No type attribute: libvirt's default is a file disk.
  const auto& vdc = by_target(*disks, "vdc");
  CHECK(vdc.path == "/srv/vm/untyped.raw");
  CHECK(vdc.cache == "directsync");
  CHECK(vdc.io == "io_uring");
  CHECK(vdc.o_direct);

  const auto& vde = by_target(*disks, "vde");
  CHECK(vde.path.empty());
  CHECK(vde.pool == "default");
  CHECK(vde.volume == "extra.qcow2");
  CHECK(vde.cache == "writeback");
  CHECK_FALSE(vde.o_direct);

  CHECK(by_target(*disks, "fda").path == "/srv/vm/floppy.img");

  CHECK_FALSE(has_target(*disks, "sdb")); // cdrom
  CHECK_FALSE(has_target(*disks, "vdd")); // network (rbd)
  CHECK_FALSE(has_target(*disks, "vdf")); // block device
  CHECK_FALSE(has_target(*disks, "vdg")); // relative path
}

TEST_CASE("libvirt domain: edge cases")
{
  auto empty = parse_libvirt_domain("<domain type='kvm'><name> spaced </name></domain>");
  REQUIRE(empty);
  CHECK(empty->empty());
  CHECK(libvirt_domain_name("<domain type='kvm'><name> spaced </name></domain>") == "spaced");

  auto nameless = parse_libvirt_domain(
    "<domain><devices><disk type='file'><source file='/a.img'/></disk></devices></domain>");
  REQUIRE(nameless);
  REQUIRE(nameless->size() == 1);
  CHECK((*nameless)[0].source == "libvirt:");
  CHECK((*nameless)[0].target.empty());

  // A file disk without a source (an empty drive) is not an image.
  auto sourceless = parse_libvirt_domain(
    "<domain><devices><disk type='file' device='disk'><target dev='vda'/></disk></devices>"
    "</domain>");
  REQUIRE(sourceless);
  CHECK(sourceless->empty());
}

TEST_CASE("libvirt: garbage and other documents are rejected")
{
  CHECK_FALSE(parse_libvirt_domain(""));
  CHECK_FALSE(parse_libvirt_domain("not xml at all"));
  CHECK_FALSE(parse_libvirt_domain("<domain><devices><disk type='file'>"));
  CHECK_FALSE(parse_libvirt_domain("<domain></dom>"));
  CHECK_FALSE(parse_libvirt_domain(read_fixture("libvirt_pool.xml")));
  CHECK_FALSE(parse_libvirt_domain(std::string("<domain>\0</domain>", 18)));
  CHECK(libvirt_domain_name("garbage").empty());
  CHECK(libvirt_domain_name(read_fixture("libvirt_pool.xml")).empty());
}

TEST_CASE("libvirt pool target")
{
  CHECK(parse_libvirt_pool_target(read_fixture("libvirt_pool.xml")) == "/var/lib/libvirt/images");
  CHECK(parse_libvirt_pool_target("<pool type='fs'><target><path>/mnt/vm</path></target></pool>") ==
        "/mnt/vm");
  CHECK(parse_libvirt_pool_target(
          "<pool type='netfs'><target><path>\n  /mnt/nfs\n</path></target></pool>") == "/mnt/nfs");
  CHECK_FALSE(parse_libvirt_pool_target(
    "<pool type='logical'><target><path>/dev/vg0</path></target></pool>"));
  CHECK_FALSE(parse_libvirt_pool_target("<pool type='dir'><target/></pool>"));
  CHECK_FALSE(parse_libvirt_pool_target("<pool type='dir'><target><path/></target></pool>"));
  CHECK_FALSE(parse_libvirt_pool_target("<pool><target><path>/x</path></target></pool>"));
  CHECK_FALSE(parse_libvirt_pool_target(read_fixture("libvirt_domain.xml")));
  CHECK_FALSE(parse_libvirt_pool_target("<pool type='dir'"));
  CHECK_FALSE(parse_libvirt_pool_target(""));
}

TEST_CASE("Proxmox storage.cfg")
{
  auto storages = parse_proxmox_storage_cfg(read_fixture("proxmox_storage.cfg"));
  REQUIRE(storages.size() == 3);
  CHECK(storages[0].id == "local");
  CHECK(storages[0].type == "dir");
  CHECK(storages[0].path == "/var/lib/vz");
  CHECK_FALSE(storages[0].nocow);
  CHECK(storages[1].id == "local-btrfs");
  CHECK(storages[1].type == "btrfs");
  CHECK(storages[1].path == "/var/lib/pve/local-btrfs");
  CHECK_FALSE(storages[1].nocow);
  CHECK(storages[2].id == "fast-nocow");
  CHECK(storages[2].path == "/mnt/fast/");
  CHECK(storages[2].nocow);

  CHECK(parse_proxmox_storage_cfg("").empty());
  CHECK(parse_proxmox_storage_cfg("\tpath /orphan\n").empty());
  CHECK(parse_proxmox_storage_cfg("dir local\n\tpath /x\n").empty());
  CHECK(parse_proxmox_storage_cfg("dir: local\n\tpath relative\n").empty());
  // CRLF line ends.
  auto crlf = parse_proxmox_storage_cfg("dir: local\r\n\tpath /var/lib/vz\r\n");
  REQUIRE(crlf.size() == 1);
  CHECK(crlf[0].path == "/var/lib/vz");
}

TEST_CASE("Proxmox VM config")
{
  auto storages = parse_proxmox_storage_cfg(read_fixture("proxmox_storage.cfg"));
  auto disks = parse_proxmox_vm(read_fixture("proxmox_100.conf"), "100", storages);
  CHECK(disks.size() == 7);
  for (const auto& d : disks) {
    CHECK(d.source == "proxmox:100");
  }

  // btrfs storage: one subvolume per raw disk; no cache mode on btrfs without nocow means
  // qemu-server does not add cache=none.
  const auto& scsi0 = by_target(disks, "scsi0");
  CHECK(scsi0.path == "/var/lib/pve/local-btrfs/images/100/vm-100-disk-0/disk.raw");
  CHECK(scsi0.cache.empty());
  CHECK_FALSE(scsi0.o_direct);

  // nocow btrfs storage: the default becomes cache=none again.
  const auto& scsi1 = by_target(disks, "scsi1");
  CHECK(scsi1.path == "/mnt/fast/images/100/vm-100-disk-4/disk.raw");
  CHECK(scsi1.o_direct);

  const auto& efi = by_target(disks, "efidisk0");
  CHECK(efi.path == "/var/lib/pve/local-btrfs/images/100/vm-100-disk-1/disk.raw");
  CHECK_FALSE(efi.o_direct);
  const auto& tpm = by_target(disks, "tpmstate0");
  CHECK(tpm.path == "/var/lib/pve/local-btrfs/images/100/vm-100-disk-2/disk.raw");
  CHECK_FALSE(tpm.o_direct);

  // dir storage keeps the file under images/VMID.
  const auto& sata0 = by_target(disks, "sata0");
  CHECK(sata0.path == "/var/lib/vz/images/100/vm-100-disk-3.qcow2");
  CHECK(sata0.cache == "writeback");
  CHECK_FALSE(sata0.o_direct);

  const auto& virtio1 = by_target(disks, "virtio1");
  CHECK(virtio1.path == "/mnt/images/extra.qcow2");
  CHECK(virtio1.cache == "none");
  CHECK(virtio1.io == "native");
  CHECK(virtio1.o_direct);

  // A linked clone: "file=" key, owner VMID from the volume name.
  const auto& virtio2 = by_target(disks, "virtio2");
  CHECK(virtio2.path == "/var/lib/vz/images/101/vm-101-disk-0.qcow2");
  CHECK(virtio2.cache == "directsync");
  CHECK(virtio2.io == "io_uring");
  CHECK(virtio2.o_direct);

  CHECK_FALSE(has_target(disks, "ide2"));    // cdrom
  CHECK_FALSE(has_target(disks, "ide0"));    // none
  CHECK_FALSE(has_target(disks, "scsi2"));   // LVM thin: not a file
  CHECK_FALSE(has_target(disks, "virtio3")); // NFS storage: not one of ours
  CHECK_FALSE(has_target(disks, "unused0")); // detached
  CHECK_FALSE(has_target(disks, "virtio5")); // only in the snapshot section
}

TEST_CASE("Proxmox VM config: defaults without storages and odd lines")
{
  std::vector<ProxmoxStorage> none;
  auto disks = parse_proxmox_vm("scsi0: /srv/a.raw\n"
                                "scsi1: local:100/vm-100-disk-0.raw\n"
                                "virtio0: /srv/b.raw,cache=unsafe\n"
                                "scsi10: /srv/c.raw,cache=off\n"
                                "scsix: /srv/d.raw\n"
                                "sata1: local-btrfs:iso/x.iso\n"
                                "ide1: cdrom,media=cdrom\n"
                                "nonsense\n"
                                "[PENDING]\n"
                                "scsi3: /srv/pending.raw\n",
                                "100", none);
  REQUIRE(disks.size() == 3);
  CHECK(disks[0].path == "/srv/a.raw");
  CHECK(disks[0].o_direct); // qemu-server's default outside btrfs storages: cache=none
  CHECK(disks[1].path == "/srv/b.raw");
  CHECK_FALSE(disks[1].o_direct);
  CHECK(disks[2].target == "scsi10");
  CHECK(disks[2].o_direct);

  CHECK(parse_proxmox_vm("", "1", none).empty());

  std::vector<ProxmoxStorage> btrfs = {{"b", "btrfs", "/b", false}};
  auto odd = parse_proxmox_vm("scsi0: b:100/.raw\n"
                              "scsi1: b:100/vm-100-disk-0.subvol\n"
                              "scsi2: b:100/vm-100-disk-1.qcow2\n"
                              "scsi3: b:x/vm-100-disk-2.raw\n"
                              "scsi4: b:100/vm-100-disk-3.raw/extra\n"
                              "scsi5: b:100/..\n",
                              "100", btrfs);
  REQUIRE(odd.size() == 1);
  CHECK(odd[0].path == "/b/images/100/vm-100-disk-1.qcow2");
}

TEST_CASE("libvirt status files wrap the domain in <domstatus>")
{
  auto disks = parse_libvirt_domain(
    "<domstatus state='running' pid='1'><domain type='kvm'><name>x</name><devices>"
    "<disk type='file' device='disk'><driver name='qemu' cache='none'/>"
    "<source file='/var/lib/libvirt/images/x.qcow2'/><target dev='vda'/></disk>"
    "</devices></domain></domstatus>");
  REQUIRE(disks);
  REQUIRE(disks->size() == 1);
  CHECK((*disks)[0].path == "/var/lib/libvirt/images/x.qcow2");
  CHECK((*disks)[0].o_direct);
  CHECK_FALSE(parse_libvirt_domain("<domstatus><pool/></domstatus>"));
}

TEST_CASE("scan_vm_configs: libvirt domains (defined and running), pool volumes, Proxmox VMs")
{
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "vmcsum-unit-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  const fs::path root = tmpl;
  auto put = [&](const fs::path& rel, const std::string& text) {
    fs::create_directories((root / rel).parent_path());
    std::ofstream(root / rel, std::ios::binary) << text;
  };
  put("libvirt/qemu/a.xml", "<domain><name>a</name><devices><disk type='file' device='disk'>"
                            "<driver cache='none'/><source file='/img/a.raw'/><target dev='vda'/>"
                            "</disk><disk type='volume' device='disk'><driver cache='writeback'/>"
                            "<source pool='p' volume='v.qcow2'/><target dev='vdb'/></disk>"
                            "</devices></domain>");
  put("libvirt/qemu/broken.xml", "<domain>");
  put("libvirt/storage/p.xml", "<pool type='dir'><name>p</name><target><path>/pool</path>"
                               "</target></pool>");
  put("run/qemu/a.xml", "<domstatus><domain><name>a</name><devices><disk type='file'>"
                        "<driver cache='directsync'/><source file='/img/a.raw'/></disk>"
                        "</devices></domain></domstatus>");
  put("pve/storage.cfg", "btrfs: b\n\tpath /b\n");
  put("pve/qemu-server/100.conf", "scsi0: b:100/vm-100-disk-0.raw,cache=none\n");
  auto scan = scan_vm_configs(
    {(root / "libvirt").string(), (root / "run").string(), (root / "pve").string()});
  REQUIRE(scan.disks.size() == 4);
  CHECK(scan.disks[0].path == "/img/a.raw");
  CHECK(scan.disks[0].o_direct);
  CHECK(scan.disks[1].path == "/pool/v.qcow2"); // the volume resolved through its pool
  CHECK_FALSE(scan.disks[1].o_direct);
  CHECK(scan.disks[2].cache == "directsync");
  CHECK(scan.disks[2].o_direct);
  CHECK(scan.disks[3].path == "/b/images/100/vm-100-disk-0/disk.raw");
  CHECK(scan.disks[3].source == "proxmox:100");
  CHECK(scan.pool_targets == std::vector<std::string>{"/pool"});
  REQUIRE(scan.storages.size() == 1);
  REQUIRE(scan.notes.size() == 1);
  CHECK(scan.notes[0].find("broken.xml: not a libvirt domain") != std::string::npos);

  auto none = scan_vm_configs({(root / "missing").string(), "", ""});
  CHECK(none.disks.empty());
  CHECK(none.notes.empty());
  std::error_code ec;
  fs::remove_all(root, ec);
}

TEST_CASE("qemu_configured_disks: drives of running QEMUs with their cache modes")
{
  ProcScan procs;
  ProcScan::Qemu q;
  q.pid = 42;
  q.uid = 0;
  DriveConfig d;
  d.file = "/img/q.raw";
  d.cache = "none";
  q.drives.push_back(d);
  q.drives.push_back(DriveConfig{}); // no file: skipped
  procs.qemus.push_back(q);
  auto disks = qemu_configured_disks(procs);
  REQUIRE(disks.size() == 1);
  CHECK(disks[0].source == "qemu:42");
  CHECK(disks[0].o_direct);
}

// A scan that found one QEMU process with one drive.
static ProcScan one_qemu(int pid, std::optional<uid_t> uid, const std::string& file,
                         const std::string& cache = "")
{
  ProcScan procs;
  ProcScan::Qemu q;
  q.pid = pid;
  q.uid = uid;
  DriveConfig d;
  d.file = file;
  d.cache = cache;
  q.drives.push_back(d);
  procs.qemus.push_back(q);
  return procs;
}

TEST_CASE("qemu_configured_disks: a drive counts only from a QEMU that can be its QEMU")
{
  // The decision table: the process's uid (root, the file's owner, another, unknown), whether
  // the file exists, whether the process has it open.
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "vmcsum-unit-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  const fs::path dir = tmpl;
  const std::string file = (dir / "img.raw").string();
  std::ofstream(file) << "x";
  struct stat st = {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  const uid_t owner = st.st_uid;
  const uid_t other = owner + 1000;
  // open: 0 not open, 1 open read-only, 2 open for writing
  auto counted = [&](std::optional<uid_t> uid, const std::string& path, int open) {
    ProcScan procs = one_qemu(7, uid, path);
    if (open) {
      OpenFile f;
      f.pid = 7;
      f.dev = st.st_dev;
      f.ino = st.st_ino;
      f.flags = open == 2 ? O_RDWR : O_RDONLY;
      procs.open_files.push_back(f);
    }
    return qemu_configured_disks(procs).size() == 1;
  };
  {
    // The trusted drive carries the file's identity: it is matched by that, not by its path.
    ProcScan procs;
    ProcScan::Qemu q;
    q.pid = 7;
    q.uid = 0u;
    DriveConfig d;
    d.file = file;
    q.drives.push_back(d);
    procs.qemus.push_back(q);
    const auto disks = qemu_configured_disks(procs);
    REQUIRE(disks.size() == 1);
    REQUIRE(disks[0].inode.has_value());
    CHECK(disks[0].inode->first == static_cast<uint64_t>(st.st_dev));
    CHECK(disks[0].inode->second == static_cast<uint64_t>(st.st_ino));
  }
  CHECK(counted(0u, file, 0));                 // root's QEMU
  CHECK(counted(owner, file, 0));              // the owner's QEMU
  CHECK_FALSE(counted(other, file, 0));        // anyone else's command line: not evidence
  CHECK(counted(other, file, 2));              // ... unless it holds the file open for writing
  CHECK_FALSE(counted(other, file, 1));        // a reader is no QEMU of it
  CHECK_FALSE(counted(std::nullopt, file, 0)); // mixed uids (a setuid program) or unreadable
  CHECK(counted(std::nullopt, file, 2));
  const std::string missing = (dir / "missing.raw").string();
  CHECK(counted(0u, missing, 0));          // root's missing disk: audit says so
  CHECK_FALSE(counted(other, missing, 0)); // anyone else's: not a finding to make
  CHECK_FALSE(counted(owner == 0 ? other : owner, missing, 0));
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST_CASE("qemu_configured_disks: a relative drive path is the file that QEMU holds open")
{
  // QEMU resolved it against its working directory at start (changed since by -daemonize or
  // -chdir, and never vmcsum's): only the file it holds whose path ends with it can be it, and
  // only if that path names that file here too (not in another mount namespace only).
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "vmcsum-unit-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  const std::string v = tmpl;
  for (const char* d : {"/vm", "/vm/images", "/vm/x", "/vm/y"}) {
    REQUIRE(::mkdir((v + d).c_str(), 0755) == 0);
  }
  for (const char* f : {"/kvm", "/vm/images/a.raw", "/vm/x/a.raw", "/vm/y/a.raw"}) {
    std::ofstream(v + f) << f;
  }
  auto ino_of = [&](const std::string& rel) {
    struct stat st = {};
    REQUIRE(::stat((v + rel).c_str(), &st) == 0);
    return st;
  };
  // fds: (the name /proc/PID/fd gives, below v; the file it is, below v; open flags)
  using F = std::vector<std::tuple<std::string, std::string, int>>;
  auto held = [&](const std::string& rel, std::optional<uid_t> uid, const F& fds) {
    ProcScan procs = one_qemu(9, uid, rel, "none");
    for (const auto& t : fds) {
      const struct stat st = ino_of(std::get<1>(t));
      OpenFile f;
      f.pid = 9;
      f.target = v + std::get<0>(t);
      f.dev = st.st_dev;
      f.ino = st.st_ino;
      f.flags = static_cast<uint32_t>(std::get<2>(t));
      procs.open_files.push_back(f);
    }
    auto disks = qemu_configured_disks(procs);
    if (disks.empty()) {
      return std::string("-");
    }
    const bool same = disks[0].inode->second ==
                      static_cast<uint64_t>(ino_of(disks[0].path.substr(v.size())).st_ino);
    return disks[0].path.substr(v.size()) + (same ? "" : " (another inode)");
  };
  const std::string a = "/vm/images/a.raw";
  const F one = {{"/kvm", "/kvm", O_RDWR}, {a, a, O_RDWR}};
  CHECK(held("a.raw", 0u, one) == a);
  CHECK(held("./images/a.raw", 0u, one) == a);
  CHECK(held("../images/a.raw", 0u, one) == a);
  CHECK(held("b.raw", 0u, one) == "-");                    // not held: not known
  CHECK(held("ges/a.raw", 0u, one) == "-");                // a path component is matched whole
  CHECK(held("a.raw", 0u, F{}) == "-");                    // descriptors not listed: says nothing
  CHECK(held("a.raw", 1000u, one) == a);                   // held for writing: its QEMU
  CHECK(held("a.raw", 1000u, F{{a, a, O_RDONLY}}) == "-"); // a reader is no QEMU of it
  CHECK(held("a.raw", 0u,
             F{{"/vm/x/a.raw", "/vm/x/a.raw", O_RDWR}, {"/vm/y/a.raw", "/vm/y/a.raw", O_RDWR}}) ==
        "-");
  CHECK(held("a.raw", 0u,
             F{{"/vm/x/a.raw", "/vm/x/a.raw", O_RDWR}, {"/vm/x/a.raw", "/vm/x/a.raw", O_RDONLY}}) ==
        "/vm/x/a.raw"); // the same file twice
  // Its name there names another file here (a bind mount in the QEMU's own mount namespace):
  // no name of it here.
  CHECK(held("a.raw", 0u, F{{a, "/vm/x/a.raw", O_RDWR}}) == "-");
  CHECK(held("..", 0u, one) == "-");
  std::error_code ec;
  fs::remove_all(v, ec);
}

TEST_CASE("process_uid: one uid when real, effective, saved and filesystem agree")
{
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "vmcsum-unit-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  const fs::path dir = tmpl;
  auto uid_with = [&](const std::string& status) {
    if (status.empty()) {
      fs::remove(dir / "status");
    } else {
      std::ofstream(dir / "status") << "Name:\tqemu-system-x86\n" << status << "Gid:\t0\t0\t0\t0\n";
    }
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    auto uid = process_uid(fd);
    ::close(fd);
    return uid;
  };
  CHECK(uid_with("Uid:\t107\t107\t107\t107\n") == 107u);
  CHECK(uid_with("Uid:\t0\t0\t0\t0\n") == 0u);
  // chfn run by nobody under QEMU's name, waiting at its prompt: euid 0, real 65534.
  CHECK_FALSE(uid_with("Uid:\t65534\t0\t0\t0\n").has_value());
  CHECK_FALSE(uid_with("Uid:\tgarbage\n").has_value());
  // No status in a tree that is not procfs (a fixture): its owner.
  struct stat st = {};
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK(uid_with("") == st.st_uid);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST_CASE("parse_qemu_cmdline keeps at most k_max_qemu_drives drives")
{
  std::vector<std::string> argv = {"qemu-system-x86_64"};
  for (size_t i = 0; i < k_max_qemu_drives + 10; ++i) {
    argv.push_back("-drive");
    argv.push_back("file=/img/" + std::to_string(i) + ".raw");
  }
  CHECK(parse_qemu_cmdline(argv).size() == k_max_qemu_drives);
}
