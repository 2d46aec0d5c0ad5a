// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/scrub/scrub_state.hpp>
#include <vmcsum/sys/durable_file.hpp>
#include <vmcsum/sys/fd.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace vmcsum::core {

namespace {

constexpr const char* k_schema = "vmcsum.scrub-state/1";

using json = nlohmann::ordered_json;

[[noreturn]] void bad(const std::string& why)
{
  throw Error(Errc::internal, "scrub state: " + why);
}

const json& member(const json& o, const char* key)
{
  if (!o.is_object()) {
    bad(std::string("an object expected around \"") + key + "\"");
  }
  auto it = o.find(key);
  if (it == o.end()) {
    bad(std::string("\"") + key + "\" missing");
  }
  return *it;
}

uint64_t u64(const json& o, const char* key)
{
  const auto& v = member(o, key);
  if (!v.is_number_unsigned()) {
    bad(std::string("\"") + key + "\" is not an unsigned integer");
  }
  return v.get<uint64_t>();
}

std::optional<uint64_t> opt_u64(const json& o, const char* key)
{
  const auto& v = member(o, key);
  if (v.is_null()) {
    return std::nullopt;
  }
  return u64(o, key);
}

std::string str(const json& o, const char* key)
{
  const auto& v = member(o, key);
  if (!v.is_string()) {
    bad(std::string("\"") + key + "\" is not a string");
  }
  return v.get<std::string>();
}

bool boolean(const json& o, const char* key)
{
  const auto& v = member(o, key);
  if (!v.is_boolean()) {
    bad(std::string("\"") + key + "\" is not a boolean");
  }
  return v.get<bool>();
}

const json& array(const json& o, const char* key)
{
  const auto& v = member(o, key);
  if (!v.is_array()) {
    bad(std::string("\"") + key + "\" is not an array");
  }
  return v;
}

bool valid_fsid(const std::string& fsid)
{
  return !fsid.empty() && fsid.size() <= 64 && std::all_of(fsid.begin(), fsid.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-';
  });
}

std::string dir_of(const std::string& state_dir)
{
  return state_dir + "/scrub";
}

std::string file_of(const std::string& fsid)
{
  if (!valid_fsid(fsid)) {
    throw Error(Errc::internal, "not a filesystem id: " + fsid);
  }
  return fsid + ".json";
}

// flock on <state>/scrub/<fsid>.lock while a read-modify-write runs.
sys::Fd lock_state(const std::string& state_dir, const std::string& fsid)
{
  return sys::lock_exclusive(dir_of(state_dir) + "/" + fsid + ".lock");
}

} // namespace

ScrubState parse_scrub_state(std::string_view text)
{
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    bad("not JSON");
  }
  if (str(j, "schema") != k_schema) {
    bad("unknown schema " + str(j, "schema"));
  }
  ScrubState s;
  s.fsid = str(j, "fsid");
  if (!valid_fsid(s.fsid)) {
    bad("not a filesystem id: " + s.fsid);
  }
  for (const auto& c : array(j, "confirmations")) {
    KernelConfirmation k;
    k.subvolume = u64(c, "subvolume");
    k.inode = u64(c, "inode");
    k.offset = u64(c, "offset");
    k.length = u64(c, "length");
    k.logical = u64(c, "logical");
    k.expected_csum = str(c, "expected_csum");
    for (const auto& x : array(c, "copy_csums")) {
      if (!x.is_string()) {
        bad("\"copy_csums\" holds a non-string");
      }
      k.copy_csums.push_back(x.get<std::string>());
    }
    k.kernel_eio = boolean(c, "kernel_eio");
    k.confirmed_at_us = u64(c, "confirmed_at_us");
    s.confirmations.push_back(std::move(k));
  }
  for (const auto& o : array(j, "outcomes")) {
    ImageOutcome k;
    k.subvolume = u64(o, "subvolume");
    k.inode = u64(o, "inode");
    k.path = unescape_name(str(o, "path")); // dump escapes it: not again on every rewrite
    k.scrubbed_at_us = opt_u64(o, "scrubbed_at_us");
    k.clean = boolean(o, "clean");
    k.repaired_at_us = opt_u64(o, "repaired_at_us");
    s.outcomes.push_back(std::move(k));
  }
  for (const auto& w : array(j, "windows")) {
    ReadWindow k;
    k.boot_id = str(w, "boot_id");
    const auto& pid = member(w, "pid");
    if (!pid.is_number_integer() || (pid.is_number_unsigned() && pid.get<uint64_t>() > INT64_MAX)) {
      bad("\"pid\" is not a signed 64-bit integer");
    }
    k.pid = pid.get<int64_t>();
    k.mono_start_us = u64(w, "mono_start_us");
    k.mono_end_us = u64(w, "mono_end_us");
    k.real_start_us = u64(w, "real_start_us");
    k.real_end_us = u64(w, "real_end_us");
    if (k.mono_end_us < k.mono_start_us || k.real_end_us < k.real_start_us) {
      bad("a window ends before it starts");
    }
    k.fsid = str(w, "fsid");
    for (const auto& d : array(w, "devices")) {
      if (!d.is_string()) {
        bad("\"devices\" holds a non-string");
      }
      k.devices.push_back(d.get<std::string>());
    }
    k.subvolume = u64(w, "subvolume");
    k.inode = u64(w, "inode");
    for (const auto& r : array(w, "ranges")) {
      if (!r.is_array() || r.size() != 2 || !r[0].is_number_unsigned() ||
          !r[1].is_number_unsigned()) {
        bad("\"ranges\" holds something other than [offset, length]");
      }
      k.ranges.emplace_back(r[0].get<uint64_t>(), r[1].get<uint64_t>());
    }
    s.windows.push_back(std::move(k));
  }
  return s;
}

namespace {

json entry_json(const KernelConfirmation& c)
{
  return {{"subvolume", c.subvolume},
          {"inode", c.inode},
          {"offset", c.offset},
          {"length", c.length},
          {"logical", c.logical},
          {"expected_csum", c.expected_csum},
          {"copy_csums", c.copy_csums},
          {"kernel_eio", c.kernel_eio},
          {"confirmed_at_us", c.confirmed_at_us}};
}

json entry_json(const ImageOutcome& o)
{
  auto opt = [](const std::optional<uint64_t>& v) { return v ? json(*v) : json(nullptr); };
  return {{"subvolume", o.subvolume},
          {"inode", o.inode},
          // Names need not be UTF-8; JSON text must be (\xNN escapes, as --json).
          {"path", escape_name(o.path)},
          {"scrubbed_at_us", opt(o.scrubbed_at_us)},
          {"clean", o.clean},
          {"repaired_at_us", opt(o.repaired_at_us)}};
}

json entry_json(const ReadWindow& w)
{
  json ranges = json::array();
  for (const auto& [off, len] : w.ranges) {
    ranges.push_back({off, len});
  }
  return {{"boot_id", w.boot_id},
          {"pid", w.pid},
          {"mono_start_us", w.mono_start_us},
          {"mono_end_us", w.mono_end_us},
          {"real_start_us", w.real_start_us},
          {"real_end_us", w.real_end_us},
          {"fsid", w.fsid},
          {"devices", w.devices},
          {"subvolume", w.subvolume},
          {"inode", w.inode},
          {"ranges", ranges}};
}

std::string state_text(const json& j)
{
  return j.dump(1, ' ', false, json::error_handler_t::replace);
}

// About what an entry adds to the file: its text, two more spaces of indent a line inside the
// document's array, and the separator.
template <class Entry>
size_t text_bytes(const Entry& e)
{
  const std::string t = state_text(entry_json(e));
  return t.size() + 2 * static_cast<size_t>(std::count(t.begin(), t.end(), '\n')) + 4;
}

} // namespace

std::string dump_scrub_state(const ScrubState& s)
{
  json j;
  j["schema"] = k_schema;
  j["fsid"] = s.fsid;
  auto& cs = j["confirmations"] = json::array();
  for (const auto& c : s.confirmations) {
    cs.push_back(entry_json(c));
  }
  auto& os = j["outcomes"] = json::array();
  for (const auto& o : s.outcomes) {
    os.push_back(entry_json(o));
  }
  auto& ws = j["windows"] = json::array();
  for (const auto& w : s.windows) {
    ws.push_back(entry_json(w));
  }
  return state_text(j) + "\n";
}

ScrubState load_scrub_state(const std::string& state_dir, const std::string& fsid)
{
  const std::string p = dir_of(state_dir) + "/" + file_of(fsid);
  auto text = sys::read_small_file(p, k_max_state_bytes);
  if (!text) {
    ScrubState s;
    s.fsid = fsid;
    return s;
  }
  try {
    ScrubState s = parse_scrub_state(*text);
    if (s.fsid != fsid) {
      bad("names filesystem " + s.fsid);
    }
    return s;
  } catch (const Error& e) {
    throw Error(Errc::internal, e.what(), p);
  }
}

std::optional<Healed> healed_of(const ImageOutcome& o)
{
  // A later scrub that found it bad again outweighs the repair.
  const bool bad_since =
    o.scrubbed_at_us && !o.clean && o.repaired_at_us && *o.scrubbed_at_us > *o.repaired_at_us;
  const std::optional<uint64_t> repaired = bad_since ? std::nullopt : o.repaired_at_us;
  const std::optional<uint64_t> clean = o.clean ? o.scrubbed_at_us : std::nullopt;
  if (repaired && (!clean || *repaired >= *clean)) {
    return Healed{*repaired, "repair"};
  }
  if (clean) {
    return Healed{*clean, "scrub"};
  }
  return std::nullopt;
}

std::vector<ScrubState> load_all_scrub_states(const std::string& state_dir,
                                              std::vector<std::string>& notes)
{
  std::vector<ScrubState> out;
  if (state_dir.empty()) {
    return out;
  }
  std::error_code ec;
  for (const auto& de : std::filesystem::directory_iterator(dir_of(state_dir), ec)) {
    const std::string name = de.path().filename().string();
    if (name.size() <= 5 || name.compare(name.size() - 5, 5, ".json") != 0 || name[0] == '.') {
      continue;
    }
    const std::string fsid = name.substr(0, name.size() - 5);
    if (!valid_fsid(fsid)) {
      continue;
    }
    try {
      out.push_back(load_scrub_state(state_dir, fsid));
    } catch (const Error& e) {
      notes.push_back(std::string("scrub state not used: ") + e.what());
    }
  }
  return out;
}

std::optional<std::string>
merge_scrub_state(const std::string& state_dir, const ScrubState& update,
                  const std::vector<std::pair<uint64_t, uint64_t>>& replaced_inodes)
{
  const std::string name = file_of(update.fsid);
  sys::ensure_private_dir(dir_of(state_dir));
  sys::Fd lock = lock_state(state_dir, update.fsid);
  ScrubState s;
  try {
    s = load_scrub_state(state_dir, update.fsid);
  } catch (const Error&) {
    // A damaged file is replaced: what it held cannot be trusted anyway.
    s = ScrubState{};
    s.fsid = update.fsid;
  }
  auto replaced = [&](uint64_t subvol, uint64_t ino) {
    return std::find(replaced_inodes.begin(), replaced_inodes.end(), std::make_pair(subvol, ino)) !=
           replaced_inodes.end();
  };
  std::erase_if(s.confirmations,
                [&](const KernelConfirmation& c) { return replaced(c.subvolume, c.inode); });
  s.confirmations.insert(s.confirmations.end(), update.confirmations.begin(),
                         update.confirmations.end());
  for (const auto& o : update.outcomes) {
    auto it = std::find_if(s.outcomes.begin(), s.outcomes.end(), [&](const ImageOutcome& x) {
      return x.subvolume == o.subvolume && x.inode == o.inode;
    });
    if (it == s.outcomes.end()) {
      s.outcomes.push_back(o);
      continue;
    }
    it->path = o.path.empty() ? it->path : o.path;
    if (o.scrubbed_at_us) {
      it->scrubbed_at_us = o.scrubbed_at_us;
      it->clean = o.clean;
    }
    if (o.repaired_at_us) {
      it->repaired_at_us = o.repaired_at_us;
    }
  }
  s.windows.insert(s.windows.end(), update.windows.begin(), update.windows.end());
  if (s.windows.size() > k_max_windows) {
    s.windows.erase(s.windows.begin(), s.windows.begin() + static_cast<std::ptrdiff_t>(
                                                             s.windows.size() - k_max_windows));
  }
  StateTrim trim;
  sys::replace_file_durably(dir_of(state_dir), name,
                            dump_scrub_state_within(s, k_max_state_bytes, trim));
  if (trim.windows == 0 && trim.confirmations == 0 && trim.outcomes == 0) {
    return std::nullopt;
  }
  std::string dropped;
  for (const auto& [n, what] : {std::pair{trim.windows, " read window(s)"},
                                {trim.confirmations, " kernel confirmation(s)"},
                                {trim.outcomes, " image outcome(s)"}}) {
    if (n > 0) {
      dropped += (dropped.empty() ? "" : ", ") + std::to_string(n) + what;
    }
  }
  return "the scrub state of " + update.fsid + " reached its limit of " +
         std::to_string(k_max_state_bytes >> 20) +
         " MiB; its oldest entries were dropped: " + dropped;
}

std::string dump_scrub_state_within(ScrubState& s, size_t limit, StateTrim& trim)
{
  // The loader refuses a file past k_max_state_bytes, and a merge replaces a file it cannot load
  // with an empty one: a file written past the limit would lose everything on the next run.
  // Nothing bounds the confirmations (one per bad sector) or a window's ranges (one per data
  // range read). What goes, by what it costs when missing: windows first (an old kernel-log
  // line of vmcsum's own read then counts as an alarm when audit or scrub reads the log), then
  // confirmations (a known-bad sector is read through btrfs again: new csum errors in the log
  // and the device stats, which stay), then outcomes; of each, the oldest, and only as many as
  // make the room. Confirmations and windows are appended as they are made; outcomes are first
  // put in the order of their last scrub or repair. A trim cuts to 7/8 of the limit, so the
  // next runs do not trim again at once.
  auto drop_oldest = [](auto& v, size_t bytes) {
    size_t n = 0;
    for (size_t freed = 0; n < v.size() && freed < bytes; ++n) {
      freed += text_bytes(v[n]);
    }
    v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(std::max<size_t>(n, 1)));
    return std::max<size_t>(n, 1);
  };
  std::string text = dump_scrub_state(s);
  while (text.size() > limit) {
    const size_t excess = text.size() - limit / 8 * 7;
    if (!s.windows.empty()) {
      trim.windows += drop_oldest(s.windows, excess);
    } else if (!s.confirmations.empty()) {
      trim.confirmations += drop_oldest(s.confirmations, excess);
    } else if (!s.outcomes.empty()) {
      auto last = [](const ImageOutcome& o) {
        return std::max(o.scrubbed_at_us.value_or(0), o.repaired_at_us.value_or(0));
      };
      std::stable_sort(
        s.outcomes.begin(), s.outcomes.end(),
        [&](const ImageOutcome& a, const ImageOutcome& b) { return last(a) < last(b); });
      trim.outcomes += drop_oldest(s.outcomes, excess);
    } else {
      break;
    }
    text = dump_scrub_state(s);
  }
  return text;
}

std::optional<std::string> record_repair(const std::string& state_dir, const std::string& fsid,
                                         uint64_t subvolume, uint64_t inode,
                                         const std::string& path, uint64_t at_us)
{
  ScrubState u;
  u.fsid = fsid;
  ImageOutcome o;
  o.subvolume = subvolume;
  o.inode = inode;
  o.path = path;
  o.repaired_at_us = at_us;
  u.outcomes.push_back(o);
  return merge_scrub_state(state_dir, u, {});
}

bool confirmation_holds(const KernelConfirmation& c, uint64_t logical,
                        const std::string& expected_csum,
                        const std::vector<std::string>& copy_csums_now, bool some_copy_matches)
{
  return !some_copy_matches && c.logical == logical && c.expected_csum == expected_csum &&
         !expected_csum.empty() && c.copy_csums == copy_csums_now;
}

std::vector<std::pair<uint64_t, uint64_t>>
subtract_ranges(std::vector<std::pair<uint64_t, uint64_t>> spans,
                std::vector<std::pair<uint64_t, uint64_t>> skip)
{
  std::sort(spans.begin(), spans.end());
  std::sort(skip.begin(), skip.end());
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const auto& [off, len] : spans) {
    uint64_t cur = off;
    const uint64_t end = off + len;
    for (const auto& [s, l] : skip) {
      const uint64_t se = s + l;
      if (se <= cur || l == 0) {
        continue;
      }
      if (s >= end) {
        break;
      }
      if (s > cur) {
        out.emplace_back(cur, s - cur);
      }
      cur = std::max(cur, se);
      if (cur >= end) {
        break;
      }
    }
    if (cur < end) {
      out.emplace_back(cur, end - cur);
    }
  }
  return out;
}

bool event_in_window(const EventWhen& e, const ReadWindow& w)
{
  if (!e.root || !e.ino || !e.offset || *e.root < 0 ||
      static_cast<uint64_t>(*e.root) != w.subvolume || *e.ino != w.inode) {
    return false;
  }
  if (!w.devices.empty() &&
      std::find(w.devices.begin(), w.devices.end(), e.device) == w.devices.end()) {
    return false;
  }
  const bool in_range = std::any_of(w.ranges.begin(), w.ranges.end(), [&](const auto& r) {
    return *e.offset >= r.first && *e.offset - r.first < r.second;
  });
  if (!in_range) {
    return false;
  }
  // A time within the slack of 2^64 is corrupt (state or log): it matches no window, so the
  // event stays unexplained (an alarm, the safe side), never wrapped into a match.
  auto within = [](uint64_t t, uint64_t a, uint64_t b) {
    if (t > UINT64_MAX - k_window_slack_us || b > UINT64_MAX - k_window_slack_us) {
      return false;
    }
    return t + k_window_slack_us >= a && t <= b + k_window_slack_us;
  };
  if (e.mono_us && e.boot_id && *e.boot_id == w.boot_id) {
    return within(*e.mono_us, w.mono_start_us, w.mono_end_us);
  }
  if (e.boot_id && !w.boot_id.empty() && *e.boot_id != w.boot_id) {
    return false;
  }
  return e.real_us && within(*e.real_us, w.real_start_us, w.real_end_us);
}

} // namespace vmcsum::core
