// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "render.hpp"

#include "output.hpp"

#include <vmcsum/report/text.hpp>

namespace vmcsum::cli {

nlohmann::ordered_json users_json(const std::vector<core::SetUser>& users)
{
  auto out = nlohmann::ordered_json::array();
  for (const auto& u : users) {
    out.push_back({{"pid", u.pid},
                   {"comm", core::escape_name(u.comm)},
                   {"fd", u.fd},
                   {"o_direct", u.o_direct},
                   {"writable", u.writable}});
  }
  return out;
}

nlohmann::ordered_json locks_json(const std::vector<core::SetLock>& locks)
{
  auto out = nlohmann::ordered_json::array();
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

void put_evidence(nlohmann::ordered_json& j, const std::vector<core::Evidence>& ev)
{
  // Built apart and assigned whole: j is an ordered map (a vector), so a reference to one key's
  // value does not survive the insertion of the next key.
  auto text = nlohmann::ordered_json::array();
  auto codes = nlohmann::ordered_json::array();
  for (const auto& e : ev) {
    text.push_back(e.text);
    codes.push_back(e.code);
  }
  j["evidence"] = std::move(text);
  j["evidence_codes"] = std::move(codes);
}

} // namespace vmcsum::cli
