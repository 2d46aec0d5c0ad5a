// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/image/file_facts.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>

#include <nlohmann/json.hpp>

namespace vmcsum::core {

namespace {

// Puts `value` or null; a null gets a reason in `unknown` (the specific one if recorded,
// otherwise `fallback`).
template <class T>
void put(nlohmann::ordered_json& j, nlohmann::ordered_json& unknown, const char* key,
         const std::optional<T>& value, const std::map<std::string, std::string>& reasons,
         const std::string& fallback)
{
  if (value) {
    j[key] = *value;
    return;
  }
  j[key] = nullptr;
  auto it = reasons.find(key);
  unknown[key] = it != reasons.end() ? it->second : fallback;
}

} // namespace

void to_json(nlohmann::ordered_json& j, const FileFacts& f)
{
  j = nlohmann::ordered_json::object();
  // File names are bytes; JSON strings are Unicode. Escape what is not valid UTF-8 so the
  // document stays valid and the name can still be recovered (\xNN, as ls -b does).
  j["path"] = escape_name(f.path);
  j["path_is_utf8"] = is_valid_utf8(f.path);
  j["canonical_path"] = f.canonical_path.empty()
                          ? nlohmann::ordered_json(nullptr)
                          : nlohmann::ordered_json(escape_name(f.canonical_path));
  j["symlink_target"] = f.symlink_target ? nlohmann::ordered_json(escape_name(*f.symlink_target))
                                         : nlohmann::ordered_json(nullptr);
  j["kind"] = f.kind;
  j["examined"] = f.examined;
  j["error"] = f.error ? nlohmann::ordered_json(*f.error) : nlohmann::ordered_json(nullptr);
  j["fs"] = f.fs.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(f.fs);
  j["mount_point"] = f.mount_point.empty() ? nlohmann::ordered_json(nullptr)
                                           : nlohmann::ordered_json(escape_name(f.mount_point));
  j["mount_options"] = f.mount_options.empty() ? nlohmann::ordered_json(nullptr)
                                               : nlohmann::ordered_json(f.mount_options);
  j["on_btrfs"] = f.on_btrfs;

  nlohmann::ordered_json unknown = nlohmann::ordered_json::object();
  const bool regular = f.kind == "file";
  std::string why_not;
  if (!f.examined) {
    why_not = f.error.value_or("not examined");
  } else if (!f.on_btrfs && (f.kind == "file" || f.kind == "directory")) {
    why_not = f.unknown.count("fs") ? f.unknown.at("fs") : "not on btrfs";
  } else if (!f.on_btrfs) {
    why_not = "not a regular file or directory";
  }

  put(j, unknown, "fsid", f.fsid, f.unknown, why_not);
  put(j, unknown, "subvolume_id", f.subvolume_id, f.unknown, why_not);
  put(j, unknown, "subvolume_path", f.subvolume_path, f.unknown, why_not);
  put(j, unknown, "nocow", f.nocow, f.unknown, why_not);
  put(j, unknown, "nodatasum", f.nodatasum, f.unknown, why_not);
  if (f.inode_flags) {
    j["inode_flags"] = btrfs::inode_flag_names(*f.inode_flags);
  } else {
    j["inode_flags"] = nullptr;
  }
  put(j, unknown, "compression", f.compression, f.unknown, why_not);
  j["compression_source"] = f.compression_source ? nlohmann::ordered_json(*f.compression_source)
                                                 : nlohmann::ordered_json(nullptr);
  put(j, unknown, "csum_type", f.csum_type, f.unknown, why_not);
  put(j, unknown, "sector_size", f.sector_size, f.unknown, why_not);
  if (!f.data_profiles.empty()) {
    j["data_profile"] = f.data_profiles.size() == 1 ? f.data_profiles.front() : "mixed";
    j["data_profiles"] = f.data_profiles;
  } else {
    j["data_profile"] = nullptr;
    j["data_profiles"] = nullptr;
    auto it = f.unknown.find("data_profile");
    unknown["data_profile"] = it != f.unknown.end() ? it->second : why_not;
  }
  if (f.examined) {
    j["size"] = f.size;
    j["allocated"] = f.allocated;
    j["inode"] = f.inode;
    j["nlink"] = f.nlink;
    j["uid"] = f.uid;
    j["gid"] = f.gid;
    j["mode"] = f.mode & 07777;
  } else {
    for (const char* k : {"size", "allocated", "inode", "nlink", "uid", "gid", "mode"}) {
      j[k] = nullptr;
      unknown[k] = why_not;
    }
  }
  if (regular || !why_not.empty()) {
    put(j, unknown, "extents", f.extents, f.unknown, why_not);
    put(j, unknown, "shared_bytes", f.shared_bytes, f.unknown, why_not);
    put(j, unknown, "compressed_bytes", f.compressed_bytes, f.unknown, why_not);
    put(j, unknown, "unwritten_bytes", f.unwritten_bytes, f.unknown, why_not);
  } else {
    // Extents belong to regular files: for a directory these are not unknown, just absent.
    for (const char* k : {"extents", "shared_bytes", "compressed_bytes", "unwritten_bytes"}) {
      j[k] = nullptr;
    }
  }
  j["notes"] = f.notes;
  j["unknown"] = unknown;
}

} // namespace vmcsum::core
