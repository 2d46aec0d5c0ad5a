// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// repair's result (RepairEntry) as JSON: the "files" entries of vmcsum.repair documents
// (tests/schema/repair.json).
#include <vmcsum/repair/repair.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>

#include <nlohmann/json.hpp>

namespace vmcsum::core {

using Json = nlohmann::ordered_json;

void to_json(Json& j, const RepairEntry& e)
{
  j = Json::object();
  j["path"] = escape_name(e.path);
  j["acted_on"] = escape_name(e.acted_on);
  put_identity(j, e.path, e.acted_on, e.fsid, e.subvolume_id, e.inode);
  j["action"] = repair_action_name(e.action);
  j["code"] = string_or_null(e.code);
  j["reason"] = string_or_null(e.reason);
  j["size"] = e.size;
  j["checked_bytes"] = e.checked_bytes;
  j["bad_sectors"] = e.bad_sectors;
  auto& rep = j["repaired"] = Json::array();
  for (const auto& r : e.repaired) {
    rep.push_back({{"offset", r.offset},
                   {"length", r.length},
                   {"logical", r.logical},
                   {"class", bad_class_name(r.cls)},
                   {"how", r.how},
                   {"mirror", json_or_null(r.mirror)},
                   {"copies_identical", r.copies_identical}});
    put_evidence(rep.back(), r.evidence);
  }
  auto& sk = j["skipped"] = Json::array();
  for (const auto& s : e.skipped) {
    sk.push_back({{"offset", s.offset},
                  {"length", s.length},
                  {"logical", s.logical},
                  {"class", bad_class_name(s.cls)},
                  {"code", s.code},
                  {"reason", s.reason}});
    put_evidence(sk.back(), s.evidence);
  }
  auto& ranges = j["ranges"] = Json::array();
  for (const auto& r : e.ranges) {
    auto shared = Json::array();
    for (const auto& s : r.shared_with) {
      shared.push_back({{"root", s.root},
                        {"inode", s.inode},
                        {"offset", s.offset},
                        {"path", s.path ? Json(escape_name(*s.path)) : Json(nullptr)}});
    }
    ranges.push_back({{"offset", r.offset},
                      {"length", r.length},
                      {"old_logical", r.old_logical},
                      {"extent_bytenr", r.extent_bytenr},
                      {"extent_bytes", r.extent_bytes},
                      {"freed", json_or_null(r.freed)},
                      {"shared_with", shared},
                      {"resumed", r.resumed}});
  }
  j["rewritten_bytes"] = e.rewritten_bytes;
  j["backup"] = e.backup ? Json(escape_name(*e.backup)) : Json(nullptr);
  j["backup_bytes"] = e.backup_bytes;
  if (e.verify) {
    j["verify"] = {{"method", e.verify->method},
                   {"readable", e.verify->readable},
                   {"matches", e.verify->matches},
                   {"bad_after", json_or_null(e.verify->bad_after)}};
  } else {
    j["verify"] = nullptr;
  }
  if (e.nocow) {
    j["nocow"] = {{"action", e.nocow->action},
                  {"code", string_or_null(e.nocow->code)},
                  {"reason", string_or_null(e.nocow->reason)}};
  } else {
    j["nocow"] = nullptr;
  }
  j["users"] = users_json(e.users);
  j["locks"] = locks_json(e.locks);
  j["steps"] = e.steps;
  j["notes"] = e.notes;
}

} // namespace vmcsum::core
