// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// scrub's result (FileScrub, HistoryEvent) as JSON: the "files" and "history" entries of
// vmcsum.scrub documents (tests/schema/scrub.json).
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/scrub/scrub.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>

namespace vmcsum::core {

using Json = nlohmann::ordered_json;

namespace {

void put_written(Json& j, const WriteFacts& w)
{
  j["generation"] = json_or_null(w.generation);
  if (w.window_known && w.kernel) {
    j["written_by"] = {{"kernel", *w.kernel}, {"dio_write", dio_write_name(w.dio_write)}};
  } else {
    j["written_by"] = nullptr;
  }
}

Json divergent_json(const DivergentRange& d)
{
  Json j;
  j["offset"] = d.offset;
  j["length"] = d.length;
  j["logical"] = d.logical;
  j["groups"] = d.groups;
  j["class"] = bad_class_name(d.cls);
  put_written(j, d.written);
  put_evidence(j, d.evidence);
  return j;
}

Json bad_json(const BadSector& b)
{
  Json j;
  j["offset"] = b.offset;
  j["length"] = b.length;
  j["logical"] = b.logical;
  j["compressed"] = b.compressed;
  j["class"] = bad_class_name(b.cls);
  j["repairable"] = b.repairable;
  j["expected_csum"] = b.expected_csum;
  j["copies_identical"] = b.copies_identical;
  auto& copies = j["copies"] = Json::array();
  for (const auto& c : b.copies) {
    copies.push_back({{"mirror", c.mirror},
                      {"devid", c.devid},
                      {"device", escape_name(c.device)},
                      {"physical", c.physical},
                      {"csum", c.read_error ? Json(nullptr) : Json(c.csum)},
                      {"matches", c.matches},
                      {"read_error", c.read_error},
                      {"rebuilt", c.rebuilt.empty() ? Json(nullptr) : Json(c.rebuilt)}});
  }
  put_written(j, b.written);
  put_evidence(j, b.evidence);
  j["kernel_eio"] = json_or_null(b.kernel_eio);
  j["kernel_confirmed_at_us"] = json_or_null(b.kernel_confirmed_at_us);
  j["repaired_by_read"] = json_or_null(b.repaired_by_read);
  return j;
}

Json parity_json(const ParityMismatch& m)
{
  return {{"logical", m.logical},
          {"parity", m.parity},
          {"devid", m.devid},
          {"device", escape_name(m.device)},
          {"physical", m.physical},
          {"sectors", m.sectors},
          {"first_offset", m.first_offset},
          {"stale_sectors", m.stale_sectors}};
}

} // namespace

// The worst of a file's results, in audit's words: critical for a mismatch, diverging copies,
// an EIO the copies do not explain (what makes exit status 2) or metadata btrfs cannot read,
// warning when it could not be scrubbed otherwise, info otherwise.
const char* scrub_severity(const FileScrub& f)
{
  if (!f.bad.empty() || !f.divergent.empty() || !f.kernel_only_eio.empty() ||
      f.metadata_unreadable) {
    return "critical";
  }
  // Stale RAID5/6 parity loses data only if a device goes too: btrfs scrub rewrites it.
  const bool stale = std::any_of(f.parity.begin(), f.parity.end(),
                                 [](const ParityMismatch& m) { return m.stale_sectors > 0; });
  return f.examined && !stale ? "info" : "warning";
}

void to_json(Json& j, const HistoryEvent& h)
{
  const auto& e = h.event;
  j = Json::object();
  j["kind"] = kind_name(e.kind);
  j["source"] = h.source;
  j["boot"] = h.boot ? Json(*h.boot) : nullptr;
  j["timestamp_us"] = h.timestamp ? Json(*h.timestamp) : nullptr;
  j["count"] = h.count;
  j["first_timestamp_us"] = h.timestamp ? Json(*h.timestamp) : nullptr;
  j["last_timestamp_us"] = h.last_timestamp ? Json(*h.last_timestamp) : nullptr;
  j["caused_by_vmcsum"] = h.caused_by_vmcsum;
  j["healed_by"] = h.healed ? Json(h.healed->by) : nullptr;
  j["healed_at_us"] = h.healed ? Json(h.healed->at_us) : nullptr;
  j["device"] = e.device;
  j["root"] = e.root ? Json(*e.root) : nullptr;
  j["ino"] = e.ino ? Json(*e.ino) : nullptr;
  j["offset"] = e.offset ? Json(*e.offset) : nullptr;
  j["logical"] = e.logical ? Json(*e.logical) : nullptr;
  j["mirror"] = e.mirror ? Json(*e.mirror) : nullptr;
  j["csum"] = e.csum ? Json(*e.csum) : nullptr;
  j["expected_csum"] = e.expected_csum ? Json(*e.expected_csum) : nullptr;
  j["path"] = h.path ? Json(escape_name(*h.path)) : nullptr;
}

void to_json(Json& j, const FileScrub& f)
{
  j = Json::object();
  j["path"] = escape_name(f.path);
  put_identity(j, f.path, f.canonical_path, f.fsid, f.subvolume_id, f.inode);
  j["severity"] = scrub_severity(f);
  j["examined"] = f.examined;
  j["error"] = f.error ? Json(*f.error) : nullptr;
  j["size"] = f.size;
  j["checked_bytes"] = f.checked_bytes;
  j["checked_sectors"] = f.checked_sectors;
  j["no_csum_bytes"] = f.no_csum_bytes;
  j["skipped_bytes"] = f.skipped_bytes;
  j["compressed_bytes"] = f.compressed_bytes;
  j["copies"] = f.copies;
  j["open_for_writing"] = json_or_null(f.open_for_writing);
  j["open_o_direct"] = json_or_null(f.open_o_direct);
  j["writers"] = f.writers;
  j["configured"] = configured_json(f.configured);
  auto& bad = j["bad"] = Json::array();
  size_t counts[3] = {0, 0, 0};
  size_t repairable = 0;
  for (const auto& b : f.bad) {
    bad.push_back(bad_json(b));
    ++counts[static_cast<int>(b.cls)];
    repairable += b.repairable ? 1 : 0;
  }
  auto& divergent = j["divergent"] = Json::array();
  uint64_t divergent_bytes = 0;
  for (const auto& d : f.divergent) {
    divergent.push_back(divergent_json(d));
    divergent_bytes += d.length;
  }
  j["compared_bytes"] = f.compared_bytes;
  j["parity_checked_stripes"] = f.parity_checked_stripes;
  auto& parity = j["parity"] = Json::array();
  for (const auto& m : f.parity) {
    parity.push_back(parity_json(m));
  }
  j["summary"] = {{"bad_sectors", f.bad.size()},
                  {"divergent_ranges", f.divergent.size()},
                  {"divergent_bytes", divergent_bytes},
                  {"false_mismatch", counts[0]},
                  {"media", counts[1]},
                  {"undetermined", counts[2]},
                  {"repairable", repairable}};
  j["kernel_pass"] = {{"run", f.kernel_pass},
                      {"mode", kernel_pass_mode_name(f.kernel_pass_mode)},
                      {"eio_sectors", f.kernel_eio_sectors},
                      {"read_repairs", f.kernel_read_repairs},
                      {"confirmed_before", f.kernel_confirmed_before},
                      {"eio_not_found_per_copy", f.kernel_only_eio}};
  j["notes"] = f.notes;
}

} // namespace vmcsum::core
