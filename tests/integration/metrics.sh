#!/usr/bin/env bash
# --prometheus FILE (audit and scrub): node_exporter textfile metrics written atomically, checked
# with promtool (Debian's prometheus package) when it is installed, and their numbers against
# what the kernel says: a sector damaged on disk (dd) is a bad sector the kernel fails with EIO.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq btrfs
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"

promcheck() { # FILE : promtool's verdict, or the format's own rules where promtool is missing
  if command -v promtool >/dev/null; then
    promtool check metrics <"$1"
  else
    note "promtool not installed: the format's rules only"
    ! grep -vE '^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfNa]+)$' "$1"
  fi
}
value() { # FILE SAMPLE
  awk -v k="$2" '$1 == k { print $2 }' "$1"
}

make_btrfs -- -d single -m dup
mkdir "$MNT/images" "$IT_TMP/prom"
dd if=/dev/urandom of="$MNT/images/a.raw" bs=1M count=4 status=none
dd if=/dev/urandom of="$MNT/images/b.raw" bs=1M count=2 status=none
sync
prom=$IT_TMP/prom/vmcsum-audit.prom

# --- audit
"$VMCSUM" --json audit --kernel-log '' --prometheus "$prom" "$MNT/images" >"$IT_TMP/audit.json" || true
check "audit: the metrics file exists, mode 0644" test "$(stat -c %a "$prom" 2>/dev/null)" = 644
check "audit: promtool check metrics accepts it" promcheck "$prom"
check_eq "audit: images counted = the document's" "$(jq '.images | length' "$IT_TMP/audit.json")" \
  "$(awk '$1 ~ /^vmcsum_audit_images\{/ { s += $2 } END { print s }' "$prom")"
check_eq "audit: exit code = the document's" "$(jq .exit_code "$IT_TMP/audit.json")" \
  "$(value "$prom" 'vmcsum_last_run_exit_code{command="audit"}')"
check_eq "audit: no temp file left beside it" 1 "$(ls -A "$IT_TMP/prom" | wc -l)"
check "audit: the run's timestamp is recent" \
  awk -v t="$(value "$prom" 'vmcsum_last_run_timestamp_seconds{command="audit"}')" -v now="$(date +%s)" \
  'BEGIN { exit !(t > now - 600 && t <= now + 1) }'

# --- scrub: one sector of a.raw damaged on disk (the single copy), so the kernel fails it
# --probe on this single-data filesystem measures its two cells (checksummed and NOCOW on
# single); the duplicated-profile cells still come from the version table, and say so.
pprom=$IT_TMP/probe.prom
"$VMCSUM" --json audit --probe --kernel-log '' --prometheus "$pprom" "$MNT/images" >"$IT_TMP/probe.json" 2>/dev/null || true
if jq -e '.kernel.source == "probe"' "$IT_TMP/probe.json" >/dev/null; then
  check_eq "audit --probe: each cell's source (single measured, duplicated from the table)" \
    "checksummed-duplicated=version-table checksummed-single=probe nodatasum-duplicated=version-table nodatasum-single=probe" \
    "$(grep '^vmcsum_kernel_dio_write{' "$pprom" | sed -E 's/.*file="([^"]*)".*source="([^"]*)".*/\1=\2/' | sort | xargs)"
else
  note "SKIP audit --probe sources: the probe measured nothing here ($(jq -c '.notes' "$IT_TMP/probe.json" | head -c 300))"
fi

sprom=$IT_TMP/prom/vmcsum-scrub.prom
damage_sectors "$MNT/images/a.raw" 65536 1 all
kernel_eio=0
dd if="$MNT/images/a.raw" of=/dev/null bs=4096 skip=16 count=1 iflag=direct status=none 2>/dev/null || kernel_eio=1
check_eq "oracle: the kernel fails the damaged sector with EIO" 1 "$kernel_eio"
set +e
"$VMCSUM" --json scrub --no-progress --no-history --prometheus "$sprom" "$MNT/images" >"$IT_TMP/scrub.json"
rc=$?
set -e
check_eq "scrub: exit 2 (a bad sector)" 2 "$rc"
check "scrub: promtool check metrics accepts it" promcheck "$sprom"
check_eq "scrub: one bad sector in all classes" 1 \
  "$(awk '$1 ~ /^vmcsum_scrub_bad_sectors\{/ { s += $2 } END { print s }' "$sprom")"
check_eq "scrub: verified bytes = the document's checked bytes" \
  "$(jq '[.files[].checked_bytes] | add' "$IT_TMP/scrub.json")" "$(value "$sprom" vmcsum_scrub_verified_bytes)"
check_eq "scrub: the audit's file is still there (one file per command)" 2 "$(ls -A "$IT_TMP/prom" | wc -l)"

# --- an interrupted run leaves the file as the last complete run wrote it (its partial counts
# would clear the alerts the complete run's raise)
sha0=$(sha256sum <"$sprom")
"$VMCSUM" --json scrub --no-progress --no-history --limit-rate 1k --prometheus "$sprom" \
  "$MNT/images" >/dev/null 2>"$IT_TMP/int.err" &
sp=$!
bg_track "$sp"
sleep 1
kill -TERM "$sp"
set +e
wait "$sp"
rc=$?
set -e
bg_untrack "$sp"
check_eq "interrupted scrub: exit 143, the metrics file unchanged, stderr says so" "143 $sha0 1" \
  "$rc $(sha256sum <"$sprom") $(grep -c 'metrics not written: the run was interrupted' "$IT_TMP/int.err")"

# --- an unwritable place: the run is incomplete (exit 3), says why, the document stays valid
set +e
"$VMCSUM" --json audit --kernel-log '' --prometheus /proc/vmcsum.prom "$MNT/images" >"$IT_TMP/bad.json" 2>"$IT_TMP/bad.err"
rc=$?
set -e
check_eq "unwritable metrics file: exit 3" 3 "$rc"
check "unwritable metrics file: the document is valid and says 3" jq -e '.exit_code == 3' "$IT_TMP/bad.json"
check "unwritable metrics file: stderr says why" grep -q 'cannot write the metrics' "$IT_TMP/bad.err"
check_eq "unwritable metrics file: the document says why (a problem naming the file)" 1 \
  "$(jq '[.problems[] | select(.path == "/proc/vmcsum.prom" and (.reason | test("cannot write the metrics")))] | length' "$IT_TMP/bad.json")"
set +e
"$VMCSUM" --json scrub --no-progress --no-history --prometheus /proc/vmcsum.prom "$MNT/images" >"$IT_TMP/bad.json" 2>/dev/null
rc=$?
set -e
check_eq "unwritable metrics file, scrub: exit 3, a note says why" "3 1" \
  "$rc $(jq '[.notes[] | select(test("cannot write the metrics"))] | length' "$IT_TMP/bad.json")"

finish
