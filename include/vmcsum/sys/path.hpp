// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <optional>
#include <string>

namespace vmcsum::sys {

// realpath(3) of `path`, or `path` unchanged when it cannot be resolved (missing, no access).
std::string canonical_path(const std::string& path);
// realpath(3) of `path`; nothing when it cannot be resolved.
std::optional<std::string> resolved_path(const std::string& path);

// The absolute path the kernel gives the file open at `fd` (readlink of /proc/self/fd/N),
// or `fallback` when it has none. For documents and messages: never opened again by name.
std::string path_of_fd(int fd, const std::string& fallback);

// "/a/b/c" -> "/a/b"; "/a" -> "/"; "c" -> ".".
std::string parent_dir(const std::string& path);

// "/a/b/c" -> "c".
std::string base_name(const std::string& path);

} // namespace vmcsum::sys
