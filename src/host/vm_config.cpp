// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/host/vm_config.hpp>
#include <vmcsum/report/text.hpp>

#include <vmcsum/error.hpp>
#include <vmcsum/sys/durable_file.hpp>

#include <pugixml.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include <sys/stat.h>

namespace vmcsum::core {

namespace {
std::string_view trim(std::string_view s)
{
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) {
    return {};
  }
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// Parses `xml` and returns its root element if it is called `root_name`.
std::optional<pugi::xml_node> load_root(pugi::xml_document& doc, std::string_view xml,
                                        const char* root_name)
{
  // pugixml never expands external entities or DTDs, so hostile XML cannot reach files.
  auto result = doc.load_buffer(xml.data(), xml.size(), pugi::parse_default, pugi::encoding_utf8);
  if (!result) {
    return std::nullopt;
  }
  pugi::xml_node root = doc.document_element();
  // libvirt's status files in /run/libvirt/qemu wrap the live domain: <domstatus><domain>.
  if (root && std::string_view(root.name()) == "domstatus") {
    root = root.child(root_name);
  }
  if (!root || std::string_view(root.name()) != root_name) {
    return std::nullopt;
  }
  return root;
}

bool all_digits(std::string_view s)
{
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// qemu-server drive keys: ideN, sataN, scsiN, virtioN, efidisk0, tpmstate0.
bool is_proxmox_drive_key(std::string_view key)
{
  for (std::string_view bus : {"ide", "sata", "scsi", "virtio"}) {
    if (key.starts_with(bus) && all_digits(key.substr(bus.size()))) {
      return true;
    }
  }
  return key == "efidisk0" || key == "tpmstate0";
}

std::string join(std::string_view dir, std::string_view rest)
{
  std::string out(dir);
  while (out.size() > 1 && out.back() == '/') {
    out.pop_back();
  }
  out += '/';
  out += rest;
  return out;
}

// PVE::Storage::Plugin::parse_volname() for images: "VMID/NAME", or for linked clones
// "BASEVMID/BASENAME/VMID/NAME". Returns the owner VMID and the file name.
std::optional<std::pair<std::string, std::string>> image_volname(std::string_view volname)
{
  std::vector<std::string_view> parts;
  for (;;) {
    size_t slash = volname.find('/');
    parts.push_back(volname.substr(0, slash));
    if (slash == std::string_view::npos) {
      break;
    }
    volname.remove_prefix(slash + 1);
  }
  if ((parts.size() != 2 && parts.size() != 4) || !all_digits(parts[parts.size() - 2])) {
    return std::nullopt;
  }
  if (parts.size() == 4 && !all_digits(parts[0])) {
    return std::nullopt;
  }
  std::string_view name = parts.back();
  if (name.empty() || name == "." || name == "..") {
    return std::nullopt;
  }
  return std::pair{std::string(parts[parts.size() - 2]), std::string(name)};
}

// The file behind "STORAGE:VOLNAME" (PVE::Storage::path()), nullopt when it is not a file
// vmcsum can find: unknown or non-file storage, ISO/template volumes, container subvolumes.
std::optional<std::string> resolve_volume(std::string_view volume,
                                          const std::vector<ProxmoxStorage>& storages,
                                          const ProxmoxStorage** storage)
{
  size_t colon = volume.find(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view id = volume.substr(0, colon);
  auto it = std::find_if(storages.begin(), storages.end(),
                         [&](const ProxmoxStorage& s) { return s.id == id; });
  if (it == storages.end()) {
    return std::nullopt;
  }
  *storage = &*it;
  auto image = image_volname(volume.substr(colon + 1));
  if (!image) {
    return std::nullopt;
  }
  const auto& [vmid, name] = *image;
  std::string dir = join(join(it->path, "images"), vmid);
  if (it->type == "btrfs") {
    // BTRFSPlugin keeps each raw disk in its own subvolume so that it can be snapshotted alone.
    if (std::string_view(name).ends_with(".raw")) {
      if (name.size() == 4) {
        return std::nullopt;
      }
      return join(join(dir, name.substr(0, name.size() - 4)), "disk.raw");
    }
    if (std::string_view(name).ends_with(".subvol")) {
      return std::nullopt;
    }
  }
  return join(dir, name);
}
} // namespace

std::optional<std::vector<ConfiguredDisk>> parse_libvirt_domain(std::string_view xml)
{
  pugi::xml_document doc;
  auto root = load_root(doc, xml, "domain");
  if (!root) {
    return std::nullopt;
  }
  std::string label = "libvirt:" + std::string(trim(root->child("name").child_value()));
  std::vector<ConfiguredDisk> out;
  for (pugi::xml_node disk : root->child("devices").children("disk")) {
    // virDomainDiskDefParseXML(): type defaults to file, device to disk.
    std::string_view type = disk.attribute("type").as_string("file");
    std::string_view device = disk.attribute("device").as_string("disk");
    if (device == "cdrom") {
      continue;
    }
    pugi::xml_node source = disk.child("source");
    ConfiguredDisk d;
    d.source = label;
    if (type == "file") {
      d.path = source.attribute("file").as_string();
      // A relative path would be resolved against vmcsum's cwd, not libvirt's.
      if (!d.path.starts_with('/')) {
        continue;
      }
    } else if (type == "volume") {
      d.pool = source.attribute("pool").as_string();
      d.volume = source.attribute("volume").as_string();
      if (d.pool.empty() || d.volume.empty()) {
        continue;
      }
    } else {
      continue;
    }
    pugi::xml_node driver = disk.child("driver");
    d.cache = driver.attribute("cache").as_string();
    d.io = driver.attribute("io").as_string();
    d.o_direct = d.cache == "none" || d.cache == "directsync";
    d.target = disk.child("target").attribute("dev").as_string();
    out.push_back(std::move(d));
  }
  return out;
}

std::string libvirt_domain_name(std::string_view xml)
{
  pugi::xml_document doc;
  auto root = load_root(doc, xml, "domain");
  if (!root) {
    return "";
  }
  return std::string(trim(root->child("name").child_value()));
}

std::optional<std::string> parse_libvirt_pool_target(std::string_view xml)
{
  pugi::xml_document doc;
  auto root = load_root(doc, xml, "pool");
  if (!root) {
    return std::nullopt;
  }
  std::string_view type = root->attribute("type").as_string();
  if (type != "dir" && type != "fs" && type != "netfs") {
    return std::nullopt;
  }
  std::string path(trim(root->child("target").child("path").child_value()));
  if (path.empty()) {
    return std::nullopt;
  }
  return path;
}

std::vector<ProxmoxStorage> parse_proxmox_storage_cfg(std::string_view text)
{
  std::vector<ProxmoxStorage> all;
  bool in_section = false;
  for_each_line(text, [&](std::string_view line) {
    std::string_view t = trim(line);
    if (t.empty() || t.starts_with('#')) {
      return;
    }
    if (line[0] != ' ' && line[0] != '\t') {
      // "TYPE: ID" starts a section (PVE::SectionConfig).
      size_t colon = t.find(':');
      in_section = false;
      if (colon == std::string_view::npos || colon == 0) {
        return;
      }
      std::string_view type = t.substr(0, colon);
      std::string_view id = trim(t.substr(colon + 1));
      if (id.empty() || id.find_first_of(" \t") != std::string_view::npos ||
          type.find_first_of(" \t") != std::string_view::npos) {
        return;
      }
      all.push_back({std::string(id), std::string(type), "", false});
      in_section = true;
      return;
    }
    if (!in_section) {
      return;
    }
    size_t sp = t.find_first_of(" \t");
    std::string_view key = t.substr(0, sp);
    std::string_view value = sp == std::string_view::npos ? "" : trim(t.substr(sp));
    if (key == "path") {
      all.back().path = std::string(value);
    } else if (key == "nocow") {
      all.back().nocow = value == "1";
    }
  });
  std::vector<ProxmoxStorage> out;
  for (auto& s : all) {
    if ((s.type == "dir" || s.type == "btrfs") && s.path.starts_with('/')) {
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::vector<ConfiguredDisk> parse_proxmox_vm(std::string_view text, const std::string& vmid,
                                             const std::vector<ProxmoxStorage>& storages)
{
  std::vector<ConfiguredDisk> out;
  bool current = true;
  for_each_line(text, [&](std::string_view line) {
    std::string_view t = trim(line);
    // "[snapname]", "[PENDING]", "[special:cloudinit]": everything after the first section
    // header belongs to snapshots or pending changes, not to the running configuration.
    if (t.starts_with('[')) {
      current = false;
    }
    if (!current || t.empty() || t.starts_with('#')) {
      return;
    }
    size_t colon = t.find(':');
    if (colon == std::string_view::npos) {
      return;
    }
    std::string_view key = t.substr(0, colon);
    if (!is_proxmox_drive_key(key)) {
      return;
    }
    std::string_view value = trim(t.substr(colon + 1));

    std::string volume;
    std::map<std::string, std::string, std::less<>> opts;
    bool first = true;
    for (;;) {
      size_t comma = value.find(',');
      std::string_view item = value.substr(0, comma);
      size_t eq = item.find('=');
      if (eq == std::string_view::npos) {
        if (first) {
          volume = std::string(item);
        }
      } else if (item.substr(0, eq) == "file") {
        volume = std::string(item.substr(eq + 1));
      } else {
        opts[std::string(item.substr(0, eq))] = std::string(item.substr(eq + 1));
      }
      first = false;
      if (comma == std::string_view::npos) {
        break;
      }
      value.remove_prefix(comma + 1);
    }
    auto opt = [&](std::string_view k) {
      auto it = opts.find(k);
      return it == opts.end() ? std::string() : it->second;
    };
    if (volume.empty() || volume == "none" || volume == "cdrom" || opt("media") == "cdrom") {
      return;
    }

    ConfiguredDisk d;
    d.source = "proxmox:" + vmid;
    d.target = std::string(key);
    d.cache = opt("cache");
    d.io = opt("aio");
    const ProxmoxStorage* storage = nullptr;
    if (volume.starts_with('/')) {
      d.path = volume;
    } else if (auto path = resolve_volume(volume, storages, &storage)) {
      d.path = *path;
    } else {
      return;
    }
    // qemu-server drive_uses_cache_direct(); efidisk0 is a pflash drive without a cache mode
    // (QEMU's default, writeback) and tpmstate0 is opened by swtpm, not QEMU.
    if (key == "efidisk0" || key == "tpmstate0") {
      d.o_direct = false;
    } else if (!d.cache.empty()) {
      d.o_direct = d.cache == "none" || d.cache == "directsync" || d.cache == "off";
    } else {
      d.o_direct = !(storage && storage->type == "btrfs" && !storage->nocow);
    }
    out.push_back(std::move(d));
  });
  return out;
}

namespace {

// A configuration file: symlinks followed (libvirt's autostart links), but never a FIFO or a
// device (a blocking open, or /dev/zero's endless bytes), and never more than 16 MiB.
std::optional<std::string> read_text(const std::string& path)
{
  try {
    return sys::read_small_file(path, 16 << 20, true);
  } catch (const Error&) {
    return std::nullopt;
  }
}

// The files of `dir` whose names end in `suffix`, sorted; none for a missing directory.
std::vector<std::string> files_in(const std::string& dir, const std::string& suffix)
{
  std::vector<std::string> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(dir + "/" + name);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string stem_of(const std::string& file)
{
  return std::filesystem::path(file).stem().string();
}

} // namespace

VmConfigScan scan_vm_configs(const VmConfigDirs& dirs)
{
  VmConfigScan scan;
  for (const auto& dir : {dirs.libvirt_dir + "/qemu", dirs.libvirt_run_dir + "/qemu"}) {
    for (const auto& file : files_in(dir, ".xml")) {
      auto xml = read_text(file);
      if (!xml) {
        scan.unreadable.push_back(file);
        continue;
      }
      auto disks = parse_libvirt_domain(*xml);
      if (!disks) {
        scan.notes.push_back(file + ": not a libvirt domain");
        continue;
      }
      for (auto& d : *disks) {
        scan.disks.push_back(std::move(d));
      }
    }
  }
  std::map<std::string, std::string> pool_by_name;
  for (const auto& file : files_in(dirs.libvirt_dir + "/storage", ".xml")) {
    if (auto xml = read_text(file)) {
      if (auto target = parse_libvirt_pool_target(*xml)) {
        scan.pool_targets.push_back(*target);
        // libvirt names the file after the pool (virStoragePoolObjSaveDef: <name>.xml).
        pool_by_name[stem_of(file)] = *target;
      }
    }
  }
  // <disk type='volume'>: the image is the volume's file in its pool's target directory.
  for (auto& c : scan.disks) {
    if (c.path.empty() && !c.pool.empty() && !c.volume.empty()) {
      if (auto it = pool_by_name.find(c.pool); it != pool_by_name.end()) {
        c.path = it->second + "/" + c.volume;
      }
    }
  }
  if (auto cfg = read_text(dirs.pve_dir + "/storage.cfg")) {
    scan.storages = parse_proxmox_storage_cfg(*cfg);
  }
  for (const auto& file : files_in(dirs.pve_dir + "/qemu-server", ".conf")) {
    if (auto text = read_text(file)) {
      for (auto& d : parse_proxmox_vm(*text, stem_of(file), scan.storages)) {
        scan.disks.push_back(std::move(d));
      }
    }
  }
  return scan;
}

namespace {
// (pid, st_dev, st_ino) of every file a process has open for writing.
using OpenForWriting = std::set<std::tuple<int, uint64_t, uint64_t>>;

// Whether the QEMU process `q` naming `file` can be that file's QEMU. A command line is
// anyone's to write (`exec -a qemu-system-x86_64 sleep 300 -drive file=X,cache=none`): a
// user's fake QEMU made root's damaged image a false mismatch (its cache=none the writer
// evidence) that repair would have rewritten, and made audit list (size, inode, format) files
// only root may read. So: a QEMU running as root or as the file's owner (q.uid: every one of
// its uids that one, process_uid(): a setuid program run under QEMU's name is neither), or
// one holding the file open for writing (a reader is no QEMU of it).
// `inode`: the file trusted, the one every later use must match (the path is looked up once).
bool drive_trusted(const OpenForWriting& writing, const ProcScan::Qemu& q, const std::string& file,
                   std::optional<std::pair<uint64_t, uint64_t>>& inode)
{
  struct stat st = {};
  if (::stat(file.c_str(), &st) != 0) {
    return q.uid == 0u; // a missing disk of root's QEMU is worth saying; anyone else's is not
  }
  const std::pair<uint64_t, uint64_t> id{st.st_dev, st.st_ino};
  inode = id;
  if (q.uid && (*q.uid == 0 || *q.uid == st.st_uid)) {
    return true;
  }
  return writing.count({q.pid, id.first, id.second}) > 0;
}

// A relative drive path is QEMU's: relative to its working directory when it opened the drive,
// which is not vmcsum's, and which -daemonize (chdir "/") or -chdir has changed since, so
// /proc/PID/cwd cannot say. It names the file that QEMU holds open whose path ends with it
// ("." dropped; past a "..", the part after it), when exactly one inode does; otherwise the
// drive is not used (a QEMU whose descriptors cannot be listed says nothing of it).
const OpenFile* held_drive(const ProcScan& procs, int pid, const std::string& rel)
{
  std::string suffix;
  size_t pos = 0;
  while (pos <= rel.size()) {
    const size_t end = std::min(rel.find('/', pos), rel.size());
    const std::string part = rel.substr(pos, end - pos);
    if (part == "..") {
      suffix.clear();
    } else if (!part.empty() && part != ".") {
      suffix += "/" + part;
    }
    pos = end + 1;
  }
  const OpenFile* found = nullptr;
  for (const auto& f : procs.open_files) {
    if (suffix.empty() || f.pid != pid || !f.target.ends_with(suffix)) {
      continue;
    }
    if (found && (found->dev != f.dev || found->ino != f.ino)) {
      return nullptr; // two files it holds fit the name: which one is unknown
    }
    found = &f;
  }
  return found;
}
} // namespace

std::vector<ConfiguredDisk> qemu_configured_disks(const ProcScan& procs)
{
  OpenForWriting writing;
  for (const auto& f : procs.open_files) {
    if (f.flags && flags_writable(*f.flags)) {
      writing.insert({f.pid, f.dev, f.ino});
    }
  }
  std::vector<ConfiguredDisk> out;
  // Every drive is a stat of a path anyone may have named: at most this many per scan
  // (k_max_qemu_drives bounds one command line, not a user's thousand processes).
  size_t looked = 0;
  for (const auto& q : procs.qemus) {
    for (const auto& d : q.drives) {
      if (d.file.empty() || looked >= k_max_qemu_drives_per_scan) {
        continue;
      }
      ++looked;
      std::optional<std::pair<uint64_t, uint64_t>> inode;
      std::string path = d.file;
      if (!path.starts_with('/')) {
        // Held open by this QEMU: its own (root's) or one it writes. Its owner is not asked:
        // the file is not looked up again by its name.
        const OpenFile* held = held_drive(procs, q.pid, path);
        if (!held || !(q.uid == 0u || writing.count({q.pid, held->dev, held->ino}) > 0)) {
          continue;
        }
        // The name is the kernel's in that QEMU's mount namespace: here it must name the file
        // it holds, or it is no name of it here (a user's bind mount in a namespace of their
        // own made root's audit report root's own file replaced: a review's finding).
        struct stat here = {};
        if (::stat(held->target.c_str(), &here) != 0 || here.st_dev != held->dev ||
            here.st_ino != held->ino) {
          continue;
        }
        path = held->target;
        inode = {held->dev, held->ino};
      } else if (!drive_trusted(writing, q, path, inode)) {
        continue;
      }
      ConfiguredDisk c;
      c.inode = inode;
      c.source = "qemu:" + std::to_string(q.pid);
      c.path = path;
      c.cache = d.cache;
      c.io = d.aio;
      c.o_direct = d.o_direct();
      out.push_back(std::move(c));
    }
  }
  return out;
}

} // namespace vmcsum::core
