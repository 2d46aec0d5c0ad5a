// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// JSON views of the result structs. Field names are snake_case and stable; a change of type or
// meaning bumps the schema version of the document that carries them.
#pragma once

#include <nlohmann/json_fwd.hpp>

namespace vmcsum::core {

struct FileFacts;

// One entry of vmcsum.show/1 "files". Unknown facts are null and explained in "unknown".
void to_json(nlohmann::ordered_json& j, const FileFacts& f);

} // namespace vmcsum::core
