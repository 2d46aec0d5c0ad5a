// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// audit's result (ImageReport, the kernel's DIO policy) as JSON: the "images" entries and
// "dio_policy" of vmcsum.audit documents (tests/schema/audit.json).
#include <vmcsum/audit/audit.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>

#include <nlohmann/json.hpp>

namespace vmcsum::core {

using Json = nlohmann::ordered_json;

Json dio_policy_json(const DioPolicy& p)
{
  // One key per cell of the table: inode kind (checksummed or NODATASUM) x data profile
  // (single/raid0, or one with copies).
  return {{"checksummed", dio_write_name(p.checksummed)},
          {"checksummed_duplicated", dio_write_name(p.checksummed_duplicated)},
          {"nodatasum_single", dio_write_name(p.nodatasum_single)},
          {"nodatasum_duplicated", dio_write_name(p.nodatasum_duplicated)},
          {"reason", p.reason}};
}

void to_json(Json& j, const ImageReport& r)
{
  Json facts = r.facts;
  j = Json::object();
  j.get_ref<Json::object_t&>().reserve(40); // one growth, not six (see to_json of FileFacts)
  j["path"] = std::move(facts["path"]);
  j["path_is_utf8"] = std::move(facts["path_is_utf8"]);
  // Identity: what lets a later command find this very file from anywhere.
  for (const char* k : {"canonical_path", "fsid", "inode"}) {
    j[k] = facts.contains(k) ? Json(facts[k]) : Json(nullptr);
  }
  j["severity"] = severity_name(worst(r.findings)); // the worst of its findings
  j["format"] = r.format;
  for (const char* k : {"size", "allocated", "nocow", "nodatasum", "compression", "data_profile",
                        "shared_bytes", "extents", "csum_type", "subvolume_id", "subvolume_path",
                        "fs", "mount_point", "mount_options"}) {
    j[k] = std::move(facts[k]);
  }
  j["dir_nocow"] = r.dir_nocow ? Json(*r.dir_nocow) : nullptr;
  j["found_via"] = r.found_via;
  j["open_by"] = users_json(r.open_by);
  // Audit's lock records predate set's and repair's: their own keys, kept for the schema.
  auto& locks = j["locks"] = Json::array();
  for (const auto& l : r.locks) {
    locks.push_back({{"pid", l.pid ? Json(*l.pid) : nullptr},
                     {"kind", l.kind},
                     {"mode", l.mode},
                     {"qemu", l.qemu},
                     {"qemu_write", l.qemu_write}});
  }
  j["configured"] = configured_json(r.configured);
  j["logged_csum_errors"] = r.logged_csum_errors;
  j["logged_offsets"] = r.logged_offsets;
  j["logged_own_reads"] = r.logged_own_reads;
  j["repaired_at_us"] = json_or_null(r.repaired_at_us);
  j["scrubbed_clean_at_us"] = json_or_null(r.scrubbed_clean_at_us);
  auto& findings = j["findings"] = Json::array();
  for (const auto& f : r.findings) {
    findings.push_back({{"code", f.code},
                        {"severity", severity_name(f.severity)},
                        {"message", f.message},
                        {"action", f.action}});
  }
  j["unknown"] = std::move(facts["unknown"]);
}

} // namespace vmcsum::core
