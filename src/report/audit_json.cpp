// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// audit's result (ImageReport, the kernel's DIO policy) as JSON: the "images" entries and
// "dio_policy" of vmcsum.audit documents (tests/schema/audit.json).
#include <vmcsum/audit/audit.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>

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
  auto& from = facts.get_ref<Json::object_t&>();
  // A fact moved out of `facts`, null when it has none.
  auto take = [&from](const char* k) {
    auto it = std::find_if(from.begin(), from.end(), [k](const auto& kv) { return kv.first == k; });
    return it == from.end() ? Json(nullptr) : std::move(it->second);
  };
  j = Json::object();
  j.get_ref<Json::object_t&>().reserve(40); // one growth, not six (see to_json of FileFacts)
  // Identity first: what lets a later command find this very file from anywhere.
  for (const char* k : {"path", "path_is_utf8", "canonical_path", "fsid", "inode"}) {
    add_new_key(j, k, take(k));
  }
  add_new_key(j, "severity", severity_name(worst(r.findings))); // the worst of its findings
  add_new_key(j, "format", r.format);
  for (const char* k : {"size", "allocated", "nocow", "nodatasum", "compression", "data_profile",
                        "shared_bytes", "extents", "csum_type", "subvolume_id", "subvolume_path",
                        "fs", "mount_point", "mount_options"}) {
    add_new_key(j, k, take(k));
  }
  add_new_key(j, "dir_nocow", r.dir_nocow ? Json(*r.dir_nocow) : nullptr);
  add_new_key(j, "found_via", r.found_via);
  add_new_key(j, "open_by", users_json(r.open_by));
  // Audit's lock records predate set's and repair's: their own keys, kept for the schema.
  Json locks = Json::array();
  for (const auto& l : r.locks) {
    locks.push_back({{"pid", l.pid ? Json(*l.pid) : nullptr},
                     {"kind", l.kind},
                     {"mode", l.mode},
                     {"qemu", l.qemu},
                     {"qemu_write", l.qemu_write}});
  }
  add_new_key(j, "locks", std::move(locks));
  add_new_key(j, "configured", configured_json(r.configured));
  add_new_key(j, "logged_csum_errors", r.logged_csum_errors);
  add_new_key(j, "logged_offsets", r.logged_offsets);
  add_new_key(j, "logged_own_reads", r.logged_own_reads);
  add_new_key(j, "repaired_at_us", json_or_null(r.repaired_at_us));
  add_new_key(j, "scrubbed_clean_at_us", json_or_null(r.scrubbed_clean_at_us));
  Json findings = Json::array();
  for (const auto& f : r.findings) {
    findings.push_back({{"code", f.code},
                        {"severity", severity_name(f.severity)},
                        {"message", f.message},
                        {"action", f.action}});
  }
  add_new_key(j, "findings", std::move(findings));
  add_new_key(j, "unknown", take("unknown"));
}

} // namespace vmcsum::core
