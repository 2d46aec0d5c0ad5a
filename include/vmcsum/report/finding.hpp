// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <string>
#include <vector>

namespace vmcsum::core {

enum class Severity { info, warning, critical };
std::string severity_name(Severity s); // "info", "warning", "critical"

// One thing worth telling about an image: `code` is stable (scripts match on it), `message`
// says what and why in one line, `action` what to do about it.
struct Finding
{
  std::string code;
  Severity severity = Severity::info;
  std::string message;
  std::string action;
};

// The worst severity among the findings, info when there are none.
Severity worst(const std::vector<Finding>& findings);

} // namespace vmcsum::core
