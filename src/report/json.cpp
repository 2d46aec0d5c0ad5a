// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/host/vm_config.hpp>
#include <vmcsum/image/file_facts.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/scrub/scrub.hpp>
#include <vmcsum/write/guard.hpp>

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
    add_new_key(j, key, *value);
    return;
  }
  add_new_key(j, key, nullptr);
  auto it = reasons.find(key);
  unknown[key] = it != reasons.end() ? it->second : fallback;
}

} // namespace

namespace {

using Json = nlohmann::ordered_json;

Json name_or_null(const std::string& s)
{
  return s.empty() ? Json(nullptr) : Json(escape_name(s));
}

// Where the file is and what it is: always known once it could be stat'ed.
void put_identity(Json& j, const FileFacts& f)
{
  // File names are bytes; JSON strings are Unicode. Escape what is not valid UTF-8 so the
  // document stays valid and the name can still be recovered (\xNN, as ls -b does).
  add_new_key(j, "path", escape_name(f.path));
  add_new_key(j, "path_is_utf8", is_valid_utf8(f.path));
  add_new_key(j, "canonical_path", name_or_null(f.canonical_path));
  add_new_key(j, "symlink_target",
              f.symlink_target ? Json(escape_name(*f.symlink_target)) : Json(nullptr));
  add_new_key(j, "kind", f.kind);
  add_new_key(j, "examined", f.examined);
  add_new_key(j, "error", f.error ? Json(*f.error) : Json(nullptr));
  add_new_key(j, "fs", f.fs.empty() ? Json(nullptr) : Json(f.fs));
  add_new_key(j, "mount_point", name_or_null(f.mount_point));
  add_new_key(j, "mount_options", f.mount_options.empty() ? Json(nullptr) : Json(f.mount_options));
  add_new_key(j, "on_btrfs", f.on_btrfs);
}

// Why the btrfs facts are all unknown, or "" when each fact says for itself.
std::string why_not_of(const FileFacts& f)
{
  if (!f.examined) {
    return f.error.value_or("not examined");
  }
  if (f.kind != "file" && f.kind != "directory") {
    return "not a regular file or directory";
  }
  if (!f.on_btrfs) {
    return f.unknown.count("fs") ? f.unknown.at("fs") : "not on btrfs";
  }
  return "";
}

void put_btrfs(Json& j, Json& unknown, const FileFacts& f, const std::string& why_not)
{
  put(j, unknown, "fsid", f.fsid, f.unknown, why_not);
  put(j, unknown, "subvolume_id", f.subvolume_id, f.unknown, why_not);
  put(j, unknown, "subvolume_path", f.subvolume_path, f.unknown, why_not);
  put(j, unknown, "nocow", f.nocow, f.unknown, why_not);
  put(j, unknown, "nodatasum", f.nodatasum, f.unknown, why_not);
  add_new_key(j, "inode_flags",
              f.inode_flags ? Json(btrfs::inode_flag_names(*f.inode_flags)) : Json(nullptr));
  put(j, unknown, "compression", f.compression, f.unknown, why_not);
  add_new_key(j, "compression_source",
              f.compression_source ? Json(*f.compression_source) : Json(nullptr));
  put(j, unknown, "csum_type", f.csum_type, f.unknown, why_not);
  put(j, unknown, "sector_size", f.sector_size, f.unknown, why_not);
  if (!f.data_profiles.empty()) {
    add_new_key(j, "data_profile", f.data_profiles.size() == 1 ? f.data_profiles.front() : "mixed");
    add_new_key(j, "data_profiles", f.data_profiles);
  } else {
    add_new_key(j, "data_profile", nullptr);
    add_new_key(j, "data_profiles", nullptr);
    auto it = f.unknown.find("data_profile");
    unknown["data_profile"] = it != f.unknown.end() ? it->second : why_not;
  }
}

void put_stat(Json& j, Json& unknown, const FileFacts& f, const std::string& why_not)
{
  if (f.examined) {
    add_new_key(j, "size", f.size);
    add_new_key(j, "allocated", f.allocated);
    add_new_key(j, "inode", f.inode);
    add_new_key(j, "nlink", f.nlink);
    add_new_key(j, "uid", f.uid);
    add_new_key(j, "gid", f.gid);
    add_new_key(j, "mode", f.mode & 07777);
    return;
  }
  for (const char* k : {"size", "allocated", "inode", "nlink", "uid", "gid", "mode"}) {
    add_new_key(j, k, nullptr);
    unknown[k] = why_not;
  }
}

void put_extents(Json& j, Json& unknown, const FileFacts& f, const std::string& why_not)
{
  if (f.kind == "file" || !why_not.empty()) {
    put(j, unknown, "extents", f.extents, f.unknown, why_not);
    put(j, unknown, "shared_bytes", f.shared_bytes, f.unknown, why_not);
    put(j, unknown, "compressed_bytes", f.compressed_bytes, f.unknown, why_not);
    put(j, unknown, "unwritten_bytes", f.unwritten_bytes, f.unknown, why_not);
    return;
  }
  // Extents belong to regular files: for a directory these are not unknown, just absent.
  for (const char* k : {"extents", "shared_bytes", "compressed_bytes", "unwritten_bytes"}) {
    add_new_key(j, k, nullptr);
  }
}

} // namespace

void to_json(nlohmann::ordered_json& j, const FileFacts& f)
{
  j = Json::object();
  // An ordered_json object is a vector: room for every key at once instead of five regrowths
  // (audit writes one per image).
  j.get_ref<Json::object_t&>().reserve(48);
  put_identity(j, f);
  Json unknown = Json::object();
  const std::string why_not = why_not_of(f);
  put_btrfs(j, unknown, f, why_not);
  put_stat(j, unknown, f, why_not);
  put_extents(j, unknown, f, why_not);
  add_new_key(j, "notes", f.notes);
  add_new_key(j, "unknown", std::move(unknown));
}
Json configured_json(const std::vector<ConfiguredDisk>& disks)
{
  auto out = Json::array();
  for (const auto& c : disks) {
    // cache and io are "" when the hypervisor's default applies.
    out.push_back({{"source", escape_name(c.source)},
                   {"cache", c.cache},
                   {"io", c.io},
                   {"o_direct", c.o_direct},
                   {"target", c.target}});
  }
  return out;
}

Json users_json(const std::vector<ImageUser>& users)
{
  auto out = Json::array();
  for (const auto& u : users) {
    out.push_back({{"pid", u.pid},
                   {"comm", escape_name(u.comm)},
                   {"fd", u.fd},
                   {"o_direct", u.o_direct},
                   {"writable", u.writable}});
  }
  return out;
}
Json locks_json(const std::vector<ImageLock>& locks)
{
  auto out = Json::array();
  for (const auto& l : locks) {
    out.push_back({{"pid", json_or_null(l.pid)},
                   {"kind", l.kind},
                   {"mode", l.mode},
                   {"start", l.start},
                   {"end", json_or_null(l.end)},
                   {"qemu", l.qemu},
                   {"seen_by", l.seen_by}});
  }
  return out;
}
void put_evidence(Json& j, const std::vector<Evidence>& ev)
{
  // Built apart and assigned whole: j is an ordered map (a vector), so a reference to one key's
  // value does not survive the insertion of the next key.
  auto text = Json::array();
  auto codes = Json::array();
  for (const auto& e : ev) {
    text.push_back(e.text);
    codes.push_back(e.code);
  }
  j["evidence"] = std::move(text);
  j["evidence_codes"] = std::move(codes);
}
void put_identity(Json& j, const std::string& path, const std::string& canonical_path,
                  const std::string& fsid, uint64_t subvolume_id, uint64_t inode)
{
  using J = Json;
  j["path_is_utf8"] = is_valid_utf8(path);
  j["canonical_path"] = canonical_path.empty() ? J(nullptr) : J(escape_name(canonical_path));
  j["fsid"] = fsid.empty() ? J(nullptr) : J(fsid);
  j["subvolume_id"] = subvolume_id ? J(subvolume_id) : J(nullptr);
  j["inode"] = inode ? J(inode) : J(nullptr);
}

} // namespace vmcsum::core
