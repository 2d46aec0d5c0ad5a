// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum audit [PATH...]: every VM image, what is at risk and why.
#include "app.hpp"
#include "metrics.hpp"

#include <vmcsum/audit/audit.hpp>
#include <vmcsum/report/json.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/signals.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace vmcsum::cli {

namespace {

Style style_of(core::Severity s)
{
  switch (s) {
  case core::Severity::critical:
    return Style::red;
  case core::Severity::warning:
    return Style::yellow;
  case core::Severity::info:
    return Style::plain;
  }
  return Style::plain;
}

std::string yes_no(const std::optional<bool>& v)
{
  return v ? (*v ? "yes" : "no") : "?";
}

const std::vector<std::string> columns = {"SEVERITY", "PATH", "FORMAT", "NOCOW", "DATASUM",
                                          "PROFILE",  "SIZE", "CACHE",  "USERS", "FINDINGS"};

void render_text(const core::AuditResult& r, Output& out)
{
  Table table(columns);
  std::string details;
  size_t counts[3] = {0, 0, 0};
  for (const auto& img : r.images) {
    auto sev = core::worst(img.findings);
    bool clean = img.findings.empty() || sev == core::Severity::info;
    ++counts[static_cast<int>(sev)];
    std::string users;
    for (const auto& o : img.open_by) {
      users += (users.empty() ? "" : " ") + core::escape_name(o.comm) + "[" +
               std::to_string(o.pid) + "]" + (o.o_direct ? "+direct" : "");
    }
    // The cache modes the configurations naming it give ("default": the hypervisor's).
    std::string cache;
    for (const auto& c : img.configured) {
      const std::string m = c.cache.empty() ? "default" : c.cache;
      if (("," + cache + ",").find("," + m + ",") == std::string::npos) {
        cache += (cache.empty() ? "" : ",") + m;
      }
    }
    std::string codes;
    for (const auto& f : img.findings) {
      codes += (codes.empty() ? "" : ",") + f.code;
    }
    std::optional<bool> datasum;
    if (img.facts.nodatasum) {
      datasum = !*img.facts.nodatasum;
    }
    std::string profile = img.facts.data_profiles.empty()       ? "-"
                          : img.facts.data_profiles.size() == 1 ? img.facts.data_profiles[0]
                                                                : "mixed";
    table.add({out.paint(clean ? "ok" : core::severity_name(sev), style_of(sev)),
               core::escape_name(img.facts.path), img.format, yes_no(img.facts.nocow),
               yes_no(datasum), profile, out.size(img.facts.size), cache.empty() ? "-" : cache,
               users.empty() ? "-" : users, codes.empty() ? "-" : codes});
    for (const auto& f : img.findings) {
      if (f.severity == core::Severity::info && out.options().verbose == 0) {
        continue;
      }
      if (details.empty() ||
          details.rfind(core::escape_name(img.facts.path)) == std::string::npos) {
        details += "\n" + out.paint(core::escape_name(img.facts.path), Style::bold) + "\n";
      }
      details += "  " + out.paint(core::severity_name(f.severity), style_of(f.severity)) + " " +
                 f.code + ": " + core::printable(f.message) + "\n    -> " +
                 core::printable(f.action) + "\n";
    }
  }
  if (!table.empty()) {
    out.print(table.render(out));
  }
  out.print_legend(details);
  std::string summary =
    "\n" + std::to_string(r.images.size()) + " image(s): " + std::to_string(counts[2]) +
    " critical, " + std::to_string(counts[1]) + " warning, " + std::to_string(counts[0]) + " ok.";
  const auto& pol = r.kernel.policy;
  summary += " Linux " + r.kernel.release + ": O_DIRECT to checksummed files is " +
             core::dio_write_name(pol.checksummed);
  if (pol.checksummed_duplicated != pol.checksummed) {
    summary += " on single/raid0, " + core::dio_write_name(pol.checksummed_duplicated) +
               " on profiles with copies";
  }
  summary += " (" + r.kernel.source + ").\n";
  if (r.images.empty() && r.searched.empty()) {
    // No path asked for, and none of the usual places exists (audit(8) lists them).
    summary += "No image found: none of the usual places exists (/var/lib/libvirt/images, "
               "libvirt pools, Proxmox storages, ~/.local/share/{libvirt,gnome-boxes}/images), "
               "and no VM configuration or running QEMU names one. Name a directory or image: "
               "vmcsum audit PATH...\n";
  } else if (r.images.empty()) {
    std::string searched;
    for (const auto& s : r.searched) {
      searched += (searched.empty() ? "" : ", ") + core::escape_name(s);
    }
    summary += "Searched: " + searched + "\n";
  }
  out.print_legend(summary);
}

int exit_status(const core::AuditResult& r)
{
  int status = exit_code::clean;
  for (const auto& img : r.images) {
    auto sev = core::worst(img.findings);
    if (sev == core::Severity::critical) {
      status = std::max(status, exit_code::critical);
    } else if (sev == core::Severity::warning) {
      status = std::max(status, exit_code::warnings);
    }
  }
  if (r.unprivileged) {
    status = std::max(status, exit_code::warnings); // facts that could not be learnt, as show
  }
  if (!r.problems.empty()) {
    status = std::max(status, exit_code::incomplete);
  }
  return status;
}

// The document without its images (images_array() gives them).
nlohmann::ordered_json audit_document(const core::AuditResult& r, int status)
{
  // Room for every key first: an ordered_json object is a vector of pairs with a const key,
  // which growth copies, values and all (the images array was copied twice).
  nlohmann::ordered_json doc = nlohmann::ordered_json::object();
  doc.get_ref<nlohmann::ordered_json::object_t&>().reserve(12);
  doc["schema"] = schema_id::audit;
  doc["kernel"] = {{"release", r.kernel.release},
                   {"dio_policy", core::dio_policy_json(r.kernel.policy)},
                   {"source", r.kernel.source}};
  doc["images"] = nlohmann::ordered_json::array(); // streamed: images_array()
  size_t counts[3] = {0, 0, 0};                    // by Severity: info, warning, critical
  for (const auto& img : r.images) {
    ++counts[static_cast<int>(core::worst(img.findings))];
  }
  // The counts the text's last line gives ("N image(s): C critical, W warning, I ok").
  doc["summary"] = {{"images", r.images.size()},
                    {"critical", counts[2]},
                    {"warning", counts[1]},
                    {"info", counts[0]},
                    {"problems", r.problems.size()}};
  auto& problems = doc["problems"] = nlohmann::ordered_json::array();
  for (const auto& p : r.problems) {
    problems.push_back({{"path", core::escape_name(p.path)}, {"reason", p.reason}});
  }
  doc["searched"] = nlohmann::ordered_json::array();
  for (const auto& s : r.searched) {
    doc["searched"].push_back(core::escape_name(s));
  }
  doc["notes"] = r.notes;
  document_tail(doc, status);
  return doc;
}

// The document's "images", made one at a time as the document is written.
StreamedArray images_array(const core::AuditResult& r)
{
  return {"images", r.images.size(),
          [&r](size_t i) { return nlohmann::ordered_json(r.images[i]); }};
}

// The command once parsed: engine, exit status, metrics, the document or the table, stderr.
int run_audit(core::AuditOptions& opts, const std::string& prometheus, Output& out)
{
  const double started = epoch_seconds_now();
  opts.state_dir = out.options().state_dir;
  // A stop signal ends the walk and the examination at the next file; the images examined
  // until then are reported, with interrupted: true and 128 + the signal.
  opts.cancel = &sys::stop_flag();
  core::AuditResult r = core::audit(opts);
  int status = interrupted_status(exit_status(r));
  std::optional<std::string> failed;
  status = export_metrics(
    out, prometheus, status, [&](const RunFacts& run) { return audit_metrics(r, run); },
    {"audit", started}, failed);
  if (failed && out.options().json) { // the text run said it on stderr already
    r.problems.push_back({prometheus, *failed});
  }
  if (out.options().json) {
    out.emit_json(audit_document(r, status), images_array(r));
  } else {
    render_text(r, out);
  }
  for (const auto& p : r.problems) {
    out.error(core::escape_name(p.path) + ": " + p.reason);
  }
  for (const auto& n : r.notes) {
    out.info(n);
  }
  if (r.unprivileged) {
    out.warn("not run as root: an image may look safer than it is (run as root; -v says why)");
  }
  report_interrupted(out);
  return status;
}

} // namespace

void register_audit(CLI::App& app, Runner& runner)
{
  auto opts = std::make_shared<core::AuditOptions>();
  CLI::App* cmd = app.add_subcommand(
    "audit", "Find VM images and say which are at risk of false checksum mismatches, and why");
  cmd->add_option("paths", opts->paths,
                  "Images or directories to audit (default: libvirt, Proxmox, GNOME Boxes "
                  "places, configured disks and images open by QEMU)");
  add_vm_config_options(*cmd, opts->vm_configs);
  add_proc_option(*cmd, opts->proc_dir);
  cmd
    ->add_option("--kernel-log", opts->kernel_log,
                 "Kernel log to search for checksum failures ('' to skip)")
    ->capture_default_str();
  add_kernel_release_option(*cmd, opts->kernel_release,
                            "Judge as if running this kernel release (default: uname -r)");
  cmd->add_flag("--probe", opts->probe,
                "Measure O_DIRECT on each btrfs holding images (vmcsum probe) and use that");
  auto prometheus = std::make_shared<std::string>();
  cmd
    ->add_option("--prometheus", *prometheus,
                 "Also write node_exporter textfile metrics to this file (atomically)")
    ->type_name("FILE");
  cmd->callback([opts, prometheus, &runner] {
    runner = [opts, prometheus](Output& out) {
      check_columns(out, {columns});
      return run_audit(*opts, *prometheus, out);
    };
  });
}

} // namespace vmcsum::cli
