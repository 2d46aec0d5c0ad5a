// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>
#include <vmcsum/repair/backup_binding.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/durable_file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>

namespace vmcsum::core {

namespace {

constexpr const char* k_dir = "/repair-backups";
constexpr size_t k_max_record = 64u << 20; // a header's ranges, at most

bool is_hex_digest(const std::string& s)
{
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

} // namespace

std::string encode_backup_binding(const BackupBinding& b)
{
  nlohmann::ordered_json j;
  j["sha256"] = b.sha256;
  j["path"] = escape_name(b.path);
  j["fsid"] = b.fsid;
  j["subvolume"] = b.subvolume;
  j["inode"] = b.inode;
  j["dev"] = b.dev;
  auto& r = j["ranges"] = nlohmann::ordered_json::array();
  for (const auto& [off, len] : b.ranges) {
    r.push_back({off, len});
  }
  return j.dump() + "\n";
}

BackupBinding decode_backup_binding(const std::string& text)
{
  BackupBinding b;
  try {
    auto j = nlohmann::json::parse(text);
    b.sha256 = j.at("sha256").get<std::string>();
    b.path = unescape_name(j.at("path").get<std::string>());
    b.fsid = j.at("fsid").get<std::string>();
    b.subvolume = json_integer<uint64_t>(j.at("subvolume"));
    b.inode = json_integer<uint64_t>(j.at("inode"));
    b.dev = json_integer<uint64_t>(j.at("dev"));
    for (const auto& r : j.at("ranges")) {
      b.ranges.push_back(json_range(r.at(0), r.at(1)));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(Errc::usage, std::string("backup record: ") + e.what());
  }
  return b;
}

BackupBinding binding_of(const BackupHeader& h, const std::string& sha256, uint64_t dev)
{
  return {sha256, h.path, h.fsid, h.subvolume, h.inode, dev, h.ranges};
}

std::optional<std::string> binding_mismatch(const BackupHeader& h,
                                            const std::optional<BackupBinding>& recorded)
{
  if (!recorded) {
    return "no repair on this host recorded this backup (its SHA-256 is not in the state "
           "directory): it was not written by vmcsum here, or it was changed since";
  }
  const auto& b = *recorded;
  if (b.path != h.path || b.fsid != h.fsid || b.subvolume != h.subvolume || b.inode != h.inode ||
      b.ranges != h.ranges) {
    return "the recorded repair names another target or other ranges than the backup's header";
  }
  return std::nullopt;
}

void record_backup_binding(const std::string& state_dir, const BackupBinding& b)
{
  if (!is_hex_digest(b.sha256)) {
    throw Error(Errc::usage, "backup record: not a SHA-256 digest: " + b.sha256);
  }
  sys::ensure_private_dir(state_dir);
  sys::replace_file_durably(state_dir + k_dir, b.sha256, encode_backup_binding(b));
}

std::optional<BackupBinding> find_backup_binding(const std::string& state_dir,
                                                 const std::string& sha256)
{
  if (!is_hex_digest(sha256) || state_dir.empty()) {
    return std::nullopt;
  }
  // Root acts on what it reads here: only from a directory nobody else can write.
  sys::ensure_private_dir(state_dir);
  const std::string dir = state_dir + k_dir;
  sys::ensure_private_dir(dir);
  auto text = sys::read_small_file(dir + "/" + sha256, k_max_record);
  if (!text) {
    return std::nullopt;
  }
  BackupBinding b = decode_backup_binding(*text);
  if (b.sha256 != sha256) {
    return std::nullopt;
  }
  return b;
}

} // namespace vmcsum::core
