// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// probe's and bench's results as JSON: the "filesystems" entries of vmcsum.probe and the
// "cases" of vmcsum.bench documents (tests/schema/probe.json, bench.json).
#include <vmcsum/measure/bench.hpp>
#include <vmcsum/measure/probe.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>

#include <nlohmann/json.hpp>

namespace vmcsum::core {

using Json = nlohmann::ordered_json;

namespace {

Json side_json(const BenchSide& s)
{
  Json j;
  j["throughput_bytes_per_second"] = s.throughput;
  j["cpu_seconds_per_gib"] = s.cpu_per_gib;
  j["spread"] = {{"throughput", json_or_null(s.throughput_spread)},
                 {"cpu", json_or_null(s.cpu_spread)}};
  auto& runs = j["runs"] = Json::array();
  for (const auto& r : s.runs) {
    runs.push_back({{"bytes", r.bytes},
                    {"seconds", r.seconds},
                    {"user_seconds", r.user_seconds},
                    {"sys_seconds", r.sys_seconds},
                    {"cut", r.cut}});
  }
  return j;
}

} // namespace

std::string profiles_text(const std::vector<std::string>& profiles)
{
  std::string s;
  for (const auto& p : profiles) {
    s += (s.empty() ? "" : "+") + p;
  }
  return s;
}

std::optional<bool> agrees_with_version_table(const FsProbe& fs)
{
  // A bounce answer combined from a DIRECT trace and the table (method "...+version-table")
  // agrees: DIRECT is what a bounced write is expected to show.
  std::optional<bool> same;
  if (fs.checksummed != DioWrite::unknown) {
    same = fs.checksummed == fs.table_checksummed;
  }
  if (fs.nocow != DioWrite::unknown) {
    same = same.value_or(true) && fs.nocow == fs.table_nocow;
  }
  return same;
}

void to_json(Json& j, const FsProbe& fs)
{
  j = Json::object();
  j["mount"] = escape_name(fs.mount);
  j["fsid"] = fs.fsid;
  j["paths"] = Json::array();
  for (const auto& p : fs.paths) {
    j["paths"].push_back(escape_name(p));
  }
  j["scratch_dir"] = escape_name(fs.scratch_dir);
  j["data_profile"] =
    fs.data_profiles.empty() ? Json(nullptr) : Json(profiles_text(fs.data_profiles));
  j["data_profiles"] = fs.data_profiles;
  j["sector_size"] = fs.sector_size;
  j["checksummed"] = dio_write_name(fs.checksummed);
  j["nocow"] = dio_write_name(fs.nocow);
  j["method"] = fs.method;
  j["evidence"] = fs.evidence;
  j["unknown"] = Json::object();
  for (const auto& [k, v] : fs.unknown) {
    j["unknown"][k] = v;
  }
  j["version_table"] = {{"checksummed", dio_write_name(fs.table_checksummed)},
                        {"nocow", dio_write_name(fs.table_nocow)}};
  j["agrees_with_version_table"] = json_or_null(agrees_with_version_table(fs));
  j["notes"] = fs.notes;
}

void to_json(Json& j, const BenchCase& c)
{
  j = Json::object();
  j["name"] = c.name;
  j["pattern"] = c.sequential ? "sequential" : "random";
  j["block_size"] = c.block_size;
  j["bytes"] = c.bytes;
  j["checksummed"] = side_json(c.checksummed);
  j["nocow"] = side_json(c.nocow);
  j["throughput_ratio"] = json_or_null(c.throughput_ratio);
  j["cpu_ratio"] = json_or_null(c.cpu_ratio);
  j["stable"] = json_or_null(c.stable);
  j["meaning"] = c.meaning;
}

} // namespace vmcsum::core
