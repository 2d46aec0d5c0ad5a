// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// JSON views of the result structs, beside them in the core library: the CLI only assembles
// documents (head, tail, summary) from these. Field names are snake_case and stable; a change of
// type or meaning bumps the schema version of the document that carries them
// (tests/schema/*.json). Each to_json is found by nlohmann's ADL: `Json j = entry;` works.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace vmcsum::core {

struct FileFacts;
struct FileScrub;
struct HistoryEvent;
struct ImageReport;
struct KernelReport;
struct RepairEntry;
struct SetEntry;
struct FsProbe;
struct BenchCase;
struct DioPolicy;
struct Evidence;
struct ImageUser;
struct ImageLock;
struct ConfiguredDisk;

// One entry of vmcsum.show "files". Unknown facts are null and explained in "unknown".
void to_json(nlohmann::ordered_json& j, const FileFacts& f);
// One entry of vmcsum.scrub "files" and "history".
void to_json(nlohmann::ordered_json& j, const FileScrub& f);
void to_json(nlohmann::ordered_json& j, const HistoryEvent& h);
// One entry of vmcsum.audit "images"; the kernel's DIO policy table ("dio_policy").
void to_json(nlohmann::ordered_json& j, const ImageReport& r);
// The kernel's O_DIRECT write policy table (audit's "dio_policy", probe's "version_table").
nlohmann::ordered_json dio_policy_json(const DioPolicy& p);
// One entry of vmcsum.repair "files".
void to_json(nlohmann::ordered_json& j, const RepairEntry& e);
// One entry of vmcsum.set "files".
void to_json(nlohmann::ordered_json& j, const SetEntry& e);
// One entry of vmcsum.probe "filesystems"; one of vmcsum.bench "cases".
void to_json(nlohmann::ordered_json& j, const FsProbe& fs);
void to_json(nlohmann::ordered_json& j, const BenchCase& c);

// Whether every measured answer of a probe matches the version table's cell for the
// filesystem's profile; nothing when nothing was measured.
std::optional<bool> agrees_with_version_table(const FsProbe& fs);
// Data profiles as one word: "raid1+single" while a balance converts.
std::string profiles_text(const std::vector<std::string>& profiles);

// The worst of a scrubbed file's results, in audit's words: "critical" for a mismatch,
// diverging copies or an EIO the copies do not explain (what makes exit status 2), "warning"
// when it could not be scrubbed or has stale parity, "info" otherwise.
const char* scrub_severity(const FileScrub& f);

// Shapes several documents share.
// The disks VM configurations name for an image (audit's and scrub's "configured").
nlohmann::ordered_json configured_json(const std::vector<ConfiguredDisk>& disks);
// The processes that have an image open, and the locks on it (set, repair).
nlohmann::ordered_json users_json(const std::vector<ImageUser>& users);
nlohmann::ordered_json locks_json(const std::vector<ImageLock>& locks);
// "evidence" (the sentences) and "evidence_codes" (their stable codes) of a verdict, into j.
void put_evidence(nlohmann::ordered_json& j, const std::vector<Evidence>& ev);
// The identity keys of a file entry (path_is_utf8 of `path`, canonical_path, fsid,
// subvolume_id, inode): what lets a later command find the same file from anywhere. Empty/0
// (never opened) become null.
void put_identity(nlohmann::ordered_json& j, const std::string& path,
                  const std::string& canonical_path, const std::string& fsid, uint64_t subvolume_id,
                  uint64_t inode);

// Appends a key the object does not have yet. ordered_json's operator[] first searches every
// key (a vector of pairs): building an object of n keys that way takes n^2/2 string compares,
// most of the cost of audit's image entries (48 keys each).
inline void add_new_key(nlohmann::ordered_json& obj, std::string key, nlohmann::ordered_json value)
{
  obj.get_ref<nlohmann::ordered_json::object_t&>().emplace_back(std::move(key), std::move(value));
}

// The value, or JSON null when it is unknown.
template <class T>
nlohmann::ordered_json json_or_null(const std::optional<T>& v)
{
  return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

// The string, or JSON null when it is empty (not known, or not applicable).
inline nlohmann::ordered_json string_or_null(const std::string& s)
{
  return s.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s);
}

// Reading documents vmcsum did not necessarily write (a saved scrub report, a backup header, a
// binding record): the integer v holds, as T. Anything else (a string, a fraction, a number out
// of T's range, a negative one for an unsigned T) throws the type_error nlohmann's own get<T>()
// throws for a string, so callers' one catch reports it. get<T>() alone converts a fraction with
// static_cast, undefined behaviour out of T's range (fuzz_repair_inputs: "sectorsize":4e104),
// and turns -1 into 2^64-1.
template <class T, class BasicJson>
T json_integer(const BasicJson& v)
{
  static_assert(std::is_integral_v<T>);
  if (v.is_number_unsigned()) {
    const auto n = v.template get<uint64_t>();
    if (std::in_range<T>(n)) {
      return static_cast<T>(n);
    }
  } else if (v.is_number_integer()) {
    const auto n = v.template get<int64_t>();
    if (std::in_range<T>(n)) {
      return static_cast<T>(n);
    }
  }
  throw BasicJson::type_error::create(
    302,
    std::string("an integer from ") + std::to_string(std::numeric_limits<T>::min()) + " to " +
      std::to_string(std::numeric_limits<T>::max()) + " expected, not " +
      (v.is_number() ? v.dump() : std::string("a ") + v.type_name()),
    &v);
}

// A file range (offset, length) from two such integers whose end does not wrap past 2^64 (a
// wrapped end passes every comparison against it: a range read as done, a record as inside).
template <class BasicJson>
std::pair<uint64_t, uint64_t> json_range(const BasicJson& offset, const BasicJson& length)
{
  const auto off = json_integer<uint64_t>(offset);
  const auto len = json_integer<uint64_t>(length);
  if (len > UINT64_MAX - off) {
    throw BasicJson::type_error::create(302,
                                        "a range past 2^64 bytes (offset " + std::to_string(off) +
                                          ", length " + std::to_string(len) + ")",
                                        &length);
  }
  return {off, len};
}

} // namespace vmcsum::core
