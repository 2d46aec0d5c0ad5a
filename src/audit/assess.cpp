// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The audit's decision table: facts about one image in, findings out. Kernel behaviour comes
// from docs/kernel-facts.md §1 (968f19c5b1b7, the duplicated-profile rule 7c2830f00c3e and 7.3's
// bounce buffers, e9b7b9d9e78e), one cell per inode kind and data profile.
#include <vmcsum/audit/audit.hpp>
#include <vmcsum/btrfs/profile.hpp>
#include <vmcsum/report/text.hpp>

#include <algorithm>

namespace vmcsum::core {

std::string severity_name(Severity s)
{
  switch (s) {
  case Severity::info:
    return "info";
  case Severity::warning:
    return "warning";
  case Severity::critical:
    return "critical";
  }
  return "info";
}

Severity worst(const std::vector<Finding>& findings)
{
  Severity w = Severity::info;
  for (const auto& f : findings) {
    w = std::max(w, f.severity);
  }
  return w;
}

namespace {

bool any_duplication(const std::vector<std::string>& profiles)
{
  return std::any_of(profiles.begin(), profiles.end(),
                     [](const std::string& p) { return btrfs::profile_has_duplication(p); });
}

std::string profile_text(const std::vector<std::string>& profiles)
{
  if (profiles.empty()) {
    return "an unknown profile";
  }
  std::string s;
  for (const auto& p : profiles) {
    s += (s.empty() ? "" : "+") + p;
  }
  return s;
}

std::string how_direct(const RiskInputs& in)
{
  if (in.o_direct_configured && in.o_direct_open) {
    return "configured for and open with O_DIRECT";
  }
  return in.o_direct_open ? "open with O_DIRECT now"
                          : "configured for O_DIRECT (cache=none/directsync)";
}

// The table's cell for an inode kind on these profiles. With no profile known, the cell only
// when both profiles give the same answer.
DioWrite cell(const DioPolicy& p, bool nodatasum, const std::vector<std::string>& profiles)
{
  if (profiles.empty()) {
    const DioWrite single = dio_write_for(p, nodatasum, false);
    return single == dio_write_for(p, nodatasum, true) ? single : DioWrite::unknown;
  }
  return dio_write_for(p, nodatasum, any_duplication(profiles));
}

} // namespace

std::vector<Finding> assess(const RiskInputs& in)
{
  std::vector<Finding> out;
  const std::string kernel = "Linux " + in.kernel_release;
  const std::string per = in.policy_source == "probe" ? " (measured)" : " (version table)";
  const bool duplicated = any_duplication(in.data_profiles);
  const std::string profile = profile_text(in.data_profiles);
  const bool direct = in.o_direct_configured || in.o_direct_open;
  // NOCOW always comes with NODATASUM (btrfs_fileattr_set sets both), so it settles the
  // question when the inode item could not be read.
  std::optional<bool> nodatasum = in.nodatasum;
  if (!nodatasum && in.nocow) {
    nodatasum = true;
  }
  // The cells of the table for this image's data profile: the kernel decides per inode kind
  // and per profile (7c2830f00c3e makes every inode on a profile with copies fall back).
  const DioWrite csum_write = cell(in.policy, false, in.data_profiles);
  const DioWrite nds_write = cell(in.policy, true, in.data_profiles);

  // History that a verified repair or a clean scrub made after its last event has healed is
  // no alarm (issue 19, "No self-inflicted alarms"): say so, as a warning (the disk may still
  // be failing: `btrfs device stats` keeps the counts).
  const bool healed = in.logged_csum_errors > 0 && in.healed_at_us && in.last_logged_us &&
                      *in.healed_at_us > *in.last_logged_us;
  if (healed) {
    out.push_back({"csum-errors-healed", Severity::warning,
                   "the kernel log has " + std::to_string(in.logged_csum_errors) +
                     " checksum failure(s) for this image, all before it was " +
                     (in.healed_by == "repair" ? "repaired (verified)" : "scrubbed clean") +
                     " at " + utc_time_us(*in.healed_at_us),
                   "nothing to do for the image; if the failures were media damage, watch the "
                   "disk ('btrfs device stats')"});
  } else if (in.logged_csum_errors > 0) {
    out.push_back({"csum-errors-logged", Severity::critical,
                   "the kernel log has " + std::to_string(in.logged_csum_errors) +
                     " checksum failure(s) for this image",
                   "run 'vmcsum scrub' on it to find every bad sector and tell false mismatches "
                   "from media faults"});
  }

  if (!nodatasum) {
    if (direct) {
      out.push_back({"nodatasum-unknown", Severity::warning,
                     "image is " + how_direct(in) +
                       ", but whether it has data checksums is unknown (needs CAP_SYS_ADMIN)",
                     "run vmcsum audit as root"});
    }
  } else if (!*nodatasum && direct) {
    // What NOCOW would change for this image on this kernel and profile.
    std::string nocow_note;
    bool nocow_helps = false;
    switch (nds_write) {
    case DioWrite::direct:
      nocow_helps = true;
      nocow_note = duplicated ? "; NOCOW would give zero-copy back, at the price of checksums and "
                                "of copies that may diverge"
                              : "; NOCOW would give zero-copy back on " + profile +
                                  ", at the price of checksums";
      break;
    case DioWrite::buffered_fallback:
      nocow_note = "; NOCOW would not help on " + profile +
                   ": this kernel falls back for NODATASUM files too on profiles with copies";
      break;
    case DioWrite::bounce:
      nocow_note = "; NOCOW would buy nothing on " + profile +
                   ": this kernel bounces O_DIRECT writes to NODATASUM files too on profiles "
                   "with copies";
      break;
    case DioWrite::unknown:
      nocow_note =
        "; whether NOCOW would give zero-copy back on " + profile + " is unknown for this kernel";
      break;
    }
    switch (csum_write) {
    case DioWrite::direct:
      out.push_back(
        {"false-mismatch-risk", Severity::critical,
         "checksummed image " + how_direct(in) + " on " + kernel +
           ", which writes O_DIRECT zero-copy on " + profile +
           ": a buffer changed in flight leaves a false checksum mismatch" + per,
         std::string("use cache=writeback for this disk, or upgrade to a kernel that copies the "
                     "data first (6.15+, ") +
           (duplicated ? "6.12.75+" : "6.12.77+") +
           ", 6.6.130+), or convert it with 'vmcsum set --nocow' (gives up checksums); then "
           "'vmcsum scrub' it"});
      break;
    case DioWrite::buffered_fallback: {
      // 6.12.75/6.12.76 fall back on profiles with copies only, by the profile rule.
      const bool by_profile = duplicated && in.policy.checksummed != DioWrite::buffered_fallback;
      out.push_back({"dio-buffered-fallback", Severity::warning,
                     "checksummed image " + how_direct(in) + ": " + kernel +
                       " falls back to buffered IO" +
                       (by_profile ? " for every file on a profile with copies (" + profile + ")"
                                   : std::string()) +
                       ", so every write pays a copy into the page cache and a synchronous "
                       "writeback" +
                       per + nocow_note,
                     std::string("safe as it is; measure the cost with 'vmcsum bench', consider "
                                 "cache=writeback") +
                       (nocow_helps ? ", or 'vmcsum set --nocow' where zero-copy matters more "
                                      "than checksums"
                                    : "")});
      break;
    }
    case DioWrite::bounce:
      // e9b7b9d9e78e (7.3): one memcpy into private pages, checksummed and submitted from
      // there; no page cache, AIO stays asynchronous, and no buffer change can reach the disk.
      out.push_back({"dio-bounce", Severity::info,
                     "checksummed image " + how_direct(in) + ": " + kernel +
                       " copies each O_DIRECT write into bounce buffers before checksumming it: "
                       "safe, one copy, no page cache, asynchronous IO kept" +
                       per + nocow_note,
                     std::string("nothing to do; 'vmcsum bench' measures what the copy costs") +
                       (nocow_helps ? "; 'vmcsum set --nocow' only where zero-copy matters more "
                                      "than checksums"
                                    : "")});
      break;
    case DioWrite::unknown:
      out.push_back({"dio-policy-unknown", Severity::warning,
                     "checksummed image " + how_direct(in) + " on " + kernel +
                       (in.data_profiles.empty()
                          ? ", whose O_DIRECT behaviour depends on the data profile, which is "
                            "unknown"
                          : ", whose O_DIRECT behaviour is not in the version table"),
                     "run 'vmcsum probe' to measure it"});
      break;
    }
  }

  if (nodatasum && *nodatasum) {
    if (duplicated) {
      std::string tail;
      if (race_possible(nds_write)) {
        tail = ", and copies written with O_DIRECT may silently differ";
      } else if (nds_write == DioWrite::buffered_fallback) {
        tail = "; and " + kernel +
               " falls back to buffered IO for it anyway, so NOCOW buys no zero-copy here";
      } else {
        tail = "; and " + kernel +
               " copies its O_DIRECT writes into bounce buffers anyway, so NOCOW buys no "
               "zero-copy here";
      }
      out.push_back({"nocow-redundant-profile", Severity::warning,
                     "NODATASUM image on " + profile +
                       ": no checksums, so no self-healing from the other copy" + tail,
                     "convert it back with 'vmcsum set --cow' unless zero-copy matters more"});
    } else if (direct && nds_write == DioWrite::direct) {
      out.push_back({"nocow-direct-fast-path", Severity::info,
                     "NODATASUM image on " + profile +
                       " with O_DIRECT: the zero-copy fast path, without data checksums",
                     "nothing to do; corruption will not be detected by btrfs"});
    } else {
      out.push_back({"no-checksums", Severity::info,
                     "NODATASUM image: btrfs does not checksum its data, so corruption goes "
                     "undetected",
                     "nothing to do unless you want checksums: 'vmcsum set --cow'"});
    }
  }

  if (in.nocow && in.shared_bytes > 0) {
    out.push_back({"nocow-shared-extents", Severity::warning,
                   "NOCOW image shares " + human_bytes(in.shared_bytes) +
                     " with snapshots or reflinks: the first write to each shared block is "
                     "copy-on-write again, and the image fragments",
                   "keep images in a subvolume that is not snapshotted; 'vmcsum set --nocow' "
                   "rewrites it unshared"});
  }

  if (in.dir_nocow && *in.dir_nocow != in.nocow) {
    if (in.nocow) {
      out.push_back({"dir-nocow-mismatch", Severity::warning,
                     "image is NOCOW but its directory is not: new images created there will be "
                     "checksummed",
                     "'chattr +C' the directory if new images should be NOCOW too"});
    } else {
      out.push_back({"dir-nocow-mismatch", Severity::warning,
                     "directory is NOCOW but this image is not (created elsewhere and moved in, "
                     "or older than the attribute)",
                     "'vmcsum set --nocow' it, or 'chattr -C' the directory"});
    }
  }
  return out;
}

} // namespace vmcsum::core
