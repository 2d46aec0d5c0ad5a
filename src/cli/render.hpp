// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// JSON shapes that several commands print the same way.
#pragma once

#include <vmcsum/scrub/scrub.hpp>
#include <vmcsum/set/rewrite.hpp>

#include <nlohmann/json.hpp>

#include <vector>

namespace vmcsum::cli {

// The processes that have an image open, and the locks on it (set, repair).
nlohmann::ordered_json users_json(const std::vector<core::SetUser>& users);
nlohmann::ordered_json locks_json(const std::vector<core::SetLock>& locks);

// "evidence" (the sentences) and "evidence_codes" (their stable codes) of a verdict, into j.
void put_evidence(nlohmann::ordered_json& j, const std::vector<core::Evidence>& ev);

} // namespace vmcsum::cli
