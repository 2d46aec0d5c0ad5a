// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The pure parts of repair: what to do with each bad sector, which copy to write back, and
// reading a saved scrub report.
#include <vmcsum/error.hpp>
#include <vmcsum/repair/repair.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>

namespace vmcsum::core {

namespace {

bool some_copy_matches(const BadSector& b)
{
  return std::any_of(b.copies.begin(), b.copies.end(),
                     [](const SectorCopy& c) { return c.matches; });
}

std::string scrub_advice(const std::string& mount_point)
{
  return "btrfs rewrites it from the good copy on `btrfs scrub start -B " +
         (mount_point.empty() ? std::string("MOUNTPOINT") : mount_point) +
         "` or when a read happens to hit it";
}

} // namespace

std::optional<unsigned> choose_mirror(const BadSector& bad, std::optional<unsigned> prefer)
{
  // A copy that is one byte repeated (zeros, a fill: "uniform-copy") is what a lost sector
  // leaves, no version of the data: any other copy is closer to what was written.
  std::optional<unsigned> lowest, lowest_fill;
  for (const auto& c : bad.copies) {
    // A RAID5/6 rebuild is bytes on no device: repair backs up and writes device copies only.
    if (c.read_error || !c.rebuilt.empty()) {
      continue;
    }
    if (prefer && c.mirror == *prefer) {
      return c.mirror;
    }
    auto& best = c.fill ? lowest_fill : lowest;
    if (!best || c.mirror < *best) {
      best = c.mirror;
    }
  }
  return lowest ? lowest : lowest_fill;
}

SectorDecision decide_sector(const BadSector& bad, const RepairChoice& choice)
{
  SectorDecision d;
  const auto skip = [&](const char* code, std::string reason) {
    d.action = SectorAction::skip;
    d.code = code;
    d.reason = std::move(reason);
    return d;
  };
  if (bad.compressed) {
    return skip("compressed",
                "in a compressed extent: O_DIRECT writes are never compressed, so this is not the "
                "race; vmcsum does not rewrite compressed data. Restore the range from a backup "
                "or read it with a `rescue=ignoredatacsums` mount");
  }
  if (some_copy_matches(bad)) {
    if (bad.cls == BadClass::false_mismatch) {
      // First a read, which lets btrfs repair the bad copy when it hits it; if the read served
      // the good copy instead, rewriting the range writes every copy anew from that good data.
      d.action = choice.after_read ? SectorAction::rewrite : SectorAction::read;
      return d;
    }
    // Damage that btrfs heals by itself: left to it, and to the admin to look at the device.
    return skip(
      bad.cls == BadClass::media ? "media" : "undetermined",
      "a copy matches its checksum, so no data is lost: " + scrub_advice(choice.mount_point) +
        (bad.cls == BadClass::media ? "; check the device (btrfs device stats, SMART)" : ""));
  }
  if (bad.cls == BadClass::media) {
    return skip("media", "no copy matches and the evidence points at the device: restore the "
                         "range from a backup; check the device (btrfs device stats, SMART)");
  }
  if (bad.cls == BadClass::undetermined && !choice.include_undetermined) {
    return skip("undetermined",
                "the evidence does not tell a false mismatch from media damage; rerun with "
                "--include-undetermined to write the on-disk bytes back anyway (the backup keeps "
                "every copy)");
  }
  d.mirror = choose_mirror(bad, choice.prefer_mirror);
  if (!d.mirror) {
    return skip("unreadable", "no copy could be read from its device");
  }
  d.action = SectorAction::rewrite;
  return d;
}

std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>>
parse_scrub_report(const std::string& text, std::map<std::string, ReportIdentity>* identities)
{
  std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> out;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(Errc::usage, std::string("scrub report: not JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("schema") || !j["schema"].is_string() ||
      (j["schema"].get<std::string>() != "vmcsum.scrub/1" &&
       j["schema"].get<std::string>() != "vmcsum.scrub/2")) {
    throw Error(Errc::usage, "scrub report: not a `vmcsum scrub --json` document (schema "
                             "vmcsum.scrub/1 or /2)");
  }
  try {
    for (const auto& f : j.at("files")) {
      const auto canon = f.find("canonical_path");
      const std::string key =
        unescape_name(canon != f.end() && canon->is_string() ? canon->get<std::string>()
                                                             : f.at("path").get<std::string>());
      auto& list = out[key];
      if (identities && f.contains("fsid") && f["fsid"].is_string() && f.contains("inode") &&
          f["inode"].is_number_unsigned()) {
        const auto& sv = f.contains("subvolume_id") ? f["subvolume_id"] : nlohmann::json();
        (*identities)[key] = {f["fsid"].get<std::string>(),
                              sv.is_number_unsigned() ? sv.get<uint64_t>() : 0,
                              f["inode"].get<uint64_t>()};
      }
      for (const auto& b : f.value("bad", nlohmann::json::array())) {
        list.push_back(json_range(b.at("offset"), b.at("length")));
      }
      // NODATASUM ranges whose copies differ: repair compares them again and lists them.
      for (const auto& d : f.value("divergent", nlohmann::json::array())) {
        list.push_back(json_range(d.at("offset"), d.at("length")));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(Errc::usage, std::string("scrub report: unexpected content: ") + e.what());
  }
  return out;
}

} // namespace vmcsum::core
