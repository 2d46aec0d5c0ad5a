// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// set's result (SetEntry) as JSON: the "files" entries of vmcsum.set documents
// (tests/schema/set.json).
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/set/rewrite.hpp>

#include <nlohmann/json.hpp>

namespace vmcsum::core {

using Json = nlohmann::ordered_json;

namespace {

Json state_json(const std::optional<SetState>& s)
{
  if (!s) {
    return nullptr;
  }
  Json j;
  j["state"] = s->state;
  j["nocow"] = json_or_null(s->nocow);
  j["nodatasum"] = json_or_null(s->nodatasum);
  j["inode_flags"] =
    s->inode_flags ? Json(btrfs::inode_flag_names(*s->inode_flags)) : Json(nullptr);
  j["size"] = s->size;
  j["allocated"] = s->allocated;
  j["extents"] = json_or_null(s->extents);
  j["compression"] = string_or_null(s->compression);
  j["inode"] = s->inode;
  return j;
}

} // namespace

void to_json(Json& j, const SetEntry& e)
{
  j = Json::object();
  j["path"] = escape_name(e.path);
  j["path_is_utf8"] = is_valid_utf8(e.path);
  j["symlink_target"] = e.symlink_target ? Json(escape_name(*e.symlink_target)) : Json(nullptr);
  j["acted_on"] = escape_name(e.acted_on);
  // The identity scrub's and repair's entries carry (canonical_path: acted_on, as theirs).
  put_identity(j, e.path, e.inode ? e.acted_on : std::string(), e.fsid, e.subvolume_id, e.inode);
  j["kind"] = e.kind;
  j["action"] = std::string(outcome_name(e.action));
  j["code"] = string_or_null(e.code);
  j["reason"] = string_or_null(e.reason);
  auto& refusals = j["refusals"] = Json::array();
  for (const auto& r : e.refusals) {
    refusals.push_back({{"code", r.code}, {"message", r.message}});
  }
  j["before"] = state_json(e.before);
  j["after"] = state_json(e.after);
  j["bytes_copied"] = e.bytes_copied;
  j["data_ranges"] = e.data_ranges;
  j["plan"] = e.steps;
  j["notes"] = e.notes;
  j["users"] = users_json(e.users);
  j["locks"] = locks_json(e.locks);
  auto& bad = j["unreadable"] = Json::array();
  for (const auto& r : e.unreadable) {
    bad.push_back({{"offset", r.offset}, {"length", r.length}});
  }
  j["unreadable_bytes"] = e.unreadable_bytes;
  j["xattrs"] = {{"copied", e.xattrs_copied}, {"dropped", e.xattrs_dropped}};
  if (e.verify) {
    j["verify"] = {{"hash", e.verify->hash},
                   {"source_digest", e.verify->source_digest},
                   {"copy_digest", e.verify->copy_digest},
                   {"method", e.verify->method},
                   {"resident_pages", e.verify->resident_pages},
                   {"flags_ok", e.verify->flags_ok}};
  } else {
    j["verify"] = nullptr;
  }
  j["seconds"] = {{"copy", e.seconds.copy},
                  {"flush", e.seconds.flush},
                  {"verify", e.seconds.verify},
                  {"total", e.seconds.total}};
}

} // namespace vmcsum::core
