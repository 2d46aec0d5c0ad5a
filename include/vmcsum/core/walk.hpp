// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <functional>
#include <string>

#include <sys/stat.h>

namespace vmcsum::core {

// Walks the tree under `root` (root itself included) without following symlinks anywhere below
// it and without visiting a directory twice (bind mounts). `visit` gets every entry that is not
// a directory, with its lstat; `problem` gets "path, reason" for entries that could not be
// read. Directories are opened O_NOFOLLOW|O_DIRECTORY relative to their parent, so a symlink
// swapped in mid-walk is refused rather than followed.
void walk_tree(const std::string& root,
               const std::function<void(const std::string& path, const struct stat& st)>& visit,
               const std::function<void(const std::string& path, const std::string& why)>& problem);

} // namespace vmcsum::core
