// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// JSON shapes that several commands print the same way.
#pragma once

#include <vmcsum/core/rewrite.hpp>

#include <nlohmann/json.hpp>

#include <vector>

namespace vmcsum::cli {

// The processes that have an image open, and the locks on it (set, repair).
nlohmann::ordered_json users_json(const std::vector<core::SetUser>& users);
nlohmann::ordered_json locks_json(const std::vector<core::SetLock>& locks);

} // namespace vmcsum::cli
