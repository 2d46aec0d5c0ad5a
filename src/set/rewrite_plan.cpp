// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The pure half of `vmcsum set`: the decision table, temp-file names and byte-range lists.
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/set/rewrite.hpp>

#include <algorithm>
#include <cctype>
#include <climits>

#include <linux/fs.h>

namespace vmcsum::core {

namespace {

std::string target_name(CowTarget t)
{
  return t == CowTarget::nocow ? "NOCOW" : "COW with checksums";
}

bool has_compression_setting(const SetFacts& f)
{
  return (f.compression_source == "property" || f.compression_source == "attribute") &&
         f.compression != "none";
}

// The user turned compression off for this very file (`btrfs property set F compression none`
// or `chattr +m`): that is the way to accept that compressed extents are stored uncompressed.
bool compression_turned_off(const SetFacts& f)
{
  return (f.compression_source == "property" || f.compression_source == "attribute") &&
         f.compression == "none";
}

void refuse(SetPlan& p, Refusal r)
{
  p.refusals.push_back(std::move(r));
  p.action = SetAction::refused;
}

void refuse(SetPlan& p, const char* code, const std::string& message)
{
  refuse(p, Refusal{code, message});
}

// Directories: the flag in place; files created in it inherit it.
void plan_directory(const SetFacts& f, CowTarget target, const std::string& path, SetPlan& p)
{
  const bool nocow = target == CowTarget::nocow;
  if (!f.nocow) {
    refuse(p, "cannot-read", "cannot read its attributes: " + f.inode_flags_unknown);
    return;
  }
  if (*f.nocow == nocow) {
    p.action = SetAction::unchanged;
    return;
  }
  if (f.read_only) {
    refuse(p, refuse_read_only());
  }
  if (nocow && has_compression_setting(f)) {
    refuse(p, "compressed",
           "has compression " + f.compression + " set by " + f.compression_source +
             ", which btrfs does not allow together with NOCOW; remove it first: "
             "btrfs property set " +
             path + " compression ''");
  }
  if (!p.refusals.empty()) {
    return;
  }
  p.action = SetAction::flag_set;
  p.steps.push_back(std::string(nocow ? "set" : "clear") +
                    " FS_NOCOW_FL on the directory (FS_IOC_SETFLAGS): files created in it "
                    "from now on inherit " +
                    target_name(target));
  p.steps.push_back("read it back (FS_IOC_GETFLAGS, and NODATACOW in the inode item after a "
                    "commit)");
}

// Regular files up to the empty-file case; true when a non-empty file goes on to plan_rewrite().
bool plan_file(const SetFacts& f, CowTarget target, const std::string& path, SetPlan& p)
{
  const bool nocow = target == CowTarget::nocow;
  if (!f.inode_flags) {
    refuse(p, "needs-root",
           "cannot read the NODATASUM inode flag, so the result could not be "
           "verified: " +
             f.inode_flags_unknown);
    return false;
  }
  if (in_target_state(*f.inode_flags, target)) {
    p.action = SetAction::unchanged;
    return false;
  }
  if (f.read_only) {
    refuse(p, refuse_read_only());
  }
  if (f.attr_flags & (FS_IMMUTABLE_FL | FS_APPEND_FL)) {
    refuse(p, refuse_immutable(f.attr_flags, path));
  }
  if (nocow && has_compression_setting(f)) {
    refuse(p, "compressed",
           "has compression " + f.compression + " set by " + f.compression_source +
             ", and NOCOW files cannot be compressed; turn compression off for it "
             "first (btrfs property set " +
             path +
             " compression none), then run this again: the copy is written "
             "uncompressed");
  }

  if (f.size == 0) {
    if (!p.refusals.empty()) {
      return false;
    }
    p.action = SetAction::flag_set;
    p.steps.push_back(std::string(nocow ? "set" : "clear") +
                      " FS_NOCOW_FL while the file is empty (FS_IOC_SETFLAGS)");
    p.steps.push_back("read back NOCOW (FS_IOC_GETFLAGS) and NODATACOW/NODATASUM (inode item, "
                      "after a commit): anything but " +
                      std::string(nocow ? "nocow" : "cow") + " is an error");
    return false;
  }
  return true;
}

// A non-empty file: the refusals only a rewrite has, then its steps.
void plan_rewrite(const SetFacts& f, CowTarget target, const std::string& path, SetPlan& p)
{
  const bool nocow = target == CowTarget::nocow;
  if (f.nlink > 1) {
    refuse(p, refuse_hard_links(f.nlink));
  }
  for (auto& r : in_use_refusals(f.users, f.locks)) {
    refuse(p, std::move(r));
  }
  if (nocow && !has_compression_setting(f) && f.compressed_bytes > 0 &&
      !compression_turned_off(f)) {
    refuse(p, "compressed",
           human_bytes(f.compressed_bytes) + " of it are stored compressed" +
             (f.compression_source == "mount" ? " (mount option compress=" + f.compression + ")"
                                              : std::string()) +
             ", and NOCOW files cannot be compressed: the copy would take up to " +
             human_bytes(f.allocated) +
             " uncompressed. To accept that, turn compression off for this file (btrfs property "
             "set " +
             path + " compression none) and run this again");
  }
  p.needed_bytes = f.allocated + space_margin(f.allocated);
  if (f.free_bytes && *f.free_bytes < p.needed_bytes) {
    refuse(p,
           refuse_no_space(p.needed_bytes, f.allocated, space_margin(f.allocated), *f.free_bytes));
  }
  if (!p.refusals.empty()) {
    return;
  }

  p.action = SetAction::rewrite;
  if (!f.free_bytes) {
    p.notes.push_back("free space unknown: not checked before copying");
  }
  if (nocow && f.compressed_bytes > 0) {
    p.notes.push_back(human_bytes(f.compressed_bytes) +
                      " of compressed extents will be stored uncompressed");
  }
  if (nocow && f.compression_source == "mount" && f.compression != "none") {
    p.notes.push_back("the filesystem is mounted with compress=" + f.compression +
                      "; NOCOW files are never compressed");
  }
  p.steps.push_back("create a temp file " + temp_name_for("NAME", "XXXXXX") +
                    " in the same directory (O_TMPFILE, locked and marked as vmcsum's before it "
                    "is linked under that new name, mode 0600)");
  p.steps.push_back("take a write lease on the file: refused if anyone has it open, broken "
                    "(and the rewrite abandoned) if anyone opens it meanwhile");
  p.steps.push_back(std::string(nocow ? "set" : "clear") +
                    " FS_NOCOW_FL on the temp file while it is empty; verify with "
                    "FS_IOC_GETFLAGS and the inode item (NODATACOW/NODATASUM) after a commit");
  p.steps.push_back("copy the data ranges (SEEK_DATA/SEEK_HOLE, up to " + human_bytes(f.allocated) +
                    "; no reflink, holes stay holes), hashing the source (xxh3-128)");
  p.steps.push_back("fdatasync the copy, drop it from the page cache, read it back from disk "
                    "and compare hashes; re-read the flags");
  p.steps.push_back("copy owner, mode, every xattr (ACLs, security.*), attributes and "
                    "timestamps; fsync");
  p.steps.push_back("atomically exchange it with " + path +
                    " (renameat2 RENAME_EXCHANGE), remove the old inode, fsync the directory");
}

} // namespace

uint64_t space_margin(uint64_t data_bytes)
{
  return (32ULL << 20) + data_bytes / 64;
}

std::string cow_state_name(uint64_t inode_flags)
{
  const bool nodatacow = inode_flags & btrfs::inode_flag::nodatacow;
  const bool nodatasum = inode_flags & btrfs::inode_flag::nodatasum;
  if (nodatacow && nodatasum) {
    return "nocow";
  }
  if (nodatasum) {
    return "nodatasum";
  }
  if (nodatacow) {
    return "nodatacow";
  }
  return "cow";
}

bool in_target_state(uint64_t inode_flags, CowTarget target)
{
  constexpr uint64_t both = btrfs::inode_flag::nodatacow | btrfs::inode_flag::nodatasum;
  return target == CowTarget::nocow ? (inode_flags & both) == both : (inode_flags & both) == 0;
}

SetPlan plan_set(const SetFacts& f, CowTarget target, const std::string& path)
{
  SetPlan p;
  if (f.symlink_refused) {
    // A policy, not a failure to read: the same code whether the link is the path's last name.
    refuse(p, "symlink-refused", f.error.value_or("another user's symlink: not followed"));
    return p;
  }
  if (f.error || f.kind == "missing") {
    // "unknown": it could not be looked up for another reason than its absence (a directory
    // on the way not searchable); a dangling symlink is not-found, as a missing path.
    refuse(p, f.kind == "unknown" ? "cannot-read" : "not-found",
           f.error.value_or("does not exist"));
    return p;
  }
  if (f.kind != "file" && f.kind != "directory") {
    if (f.in_walk) {
      // -r never follows symlinks and never opens FIFOs or devices.
      p.action = SetAction::skipped;
      p.notes.push_back(f.kind + ": not acted on inside a -r walk");
      return p;
    }
    refuse(p, refuse_not_regular(f.kind));
    return p;
  }
  if (!f.on_btrfs) {
    refuse(p, "not-btrfs",
           "not on btrfs" + (f.fs.empty() ? std::string() : " (" + f.fs + ")") +
             ": NOCOW and data checksums are btrfs features");
    return p;
  }

  if (f.kind == "directory") {
    plan_directory(f, target, path, p);
  } else if (plan_file(f, target, path, p)) {
    plan_rewrite(f, target, path, p);
  }
  return p;
}

void add_range(std::vector<ByteRange>& ranges, uint64_t offset, uint64_t length)
{
  if (length == 0) {
    return;
  }
  auto it = std::lower_bound(ranges.begin(), ranges.end(), offset,
                             [](const ByteRange& r, uint64_t off) { return r.offset < off; });
  it = ranges.insert(it, {offset, length});
  // Merge with the previous range when they touch or overlap.
  if (it != ranges.begin()) {
    auto prev = it - 1;
    if (prev->offset + prev->length >= it->offset) {
      prev->length = std::max(prev->offset + prev->length, it->offset + it->length) - prev->offset;
      it = ranges.erase(it) - 1;
    }
  }
  // Then swallow following ranges that it now reaches.
  while (it + 1 != ranges.end() && it->offset + it->length >= (it + 1)->offset) {
    auto next = it + 1;
    it->length = std::max(it->offset + it->length, next->offset + next->length) - it->offset;
    ranges.erase(next);
  }
}

} // namespace vmcsum::core
