#!/usr/bin/env bash
# vmcsum repair is crash-safe: SIGKILL at moments spread over a repair slowed down with
# --limit-rate (while it scrubs, writes its backup, rewrites ranges, verifies), then a rerun
# without a limit. After every kill, each sector is either old or new: every sector that reads
# holds the original bytes (mirror 1's where the test damaged every copy differently), only originally
# damaged sectors may still give EIO, and once any of them reads again a complete backup is on
# disk. After the rerun: no EIO anywhere, content identical, vmcsum scrub and btrfs scrub clean,
# no pending backup; --undo of the backup refuses once bytes it keeps only the digest of were
# changed, and restores the saved bytes exactly once they are back. Full disks: a backup directory too small for the backup (nothing may be written to
# the image), and the image's filesystem filled while the repair runs; a read-only remount while
# it runs. Prints a `# figures: repair-sigkill ...` line (tests/RELIABILITY.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/repair_lib.sh"
need_root
need_loop
need_cmd jq filefrag btrfs btrfs-map-logical dd perl cmp sha256sum timeout
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"
"$VMCSUM" repair --help >/dev/null 2>&1 || skip "this vmcsum has no repair command"

M=1048576
RATE=${REPAIR_KILL_RATE:-8M}
KILLS=${REPAIR_KILLS:-50} # issue 12: 50 random moments (REPAIR_KILLS=6 for a quick run)
SEED=${REPAIR_KILL_SEED:-$$}
RANDOM=$SEED
note "random seed $SEED (REPAIR_KILL_SEED=$SEED reproduces the kill times)"

# invariants TAG : each sector old or new, only damaged ones unreadable, backup complete once
# anything was written. Prints nothing; records checks.
invariants() {
  local tag=$1 scan eio diffs extra n_eio b ok=0
  scan=$(sector_scan "$IMG" "$REF")
  diffs=$(grep -c '^diff\|^size' <<<"$scan" || true)
  check_eq "$tag: every sector that reads holds its old bytes (old or new)" 0 "$diffs"
  ((diffs == 0)) || note "$(head -5 <<<"$scan")"
  eio=$(awk '$1 == "eio" { print $2 }' <<<"$scan")
  extra=$(comm -23 <(sort <<<"$eio" | sed '/^$/d') <(printf '%s\n' "${DAMAGED_OFFS[@]}" | sort))
  check_eq "$tag: EIO only where the damage was" "" "$extra"
  n_eio=$(sed '/^$/d' <<<"$eio" | wc -l)
  if ((n_eio < ${#DAMAGED_OFFS[@]})); then
    for b in "$INV_BK"/*.vmcsum-backup "$INV_BK"/*.vmcsum-backup.pending; do
      [[ -f $b ]] && backup_complete "$b" && ok=1
    done
    check_eq "$tag: sectors were rewritten ($((${#DAMAGED_OFFS[@]} - n_eio)) of ${#DAMAGED_OFFS[@]}): a complete backup is on disk" 1 "$ok"
  fi
  LAST_EIO=$n_eio
}

INV_BK=$BK # where invariants looks for backups
# rerun_restores TAG : a rerun without a limit finishes the repair: exit 0, the image holds the
# original bytes (mirror 1's where every copy was damaged), no pending backup is left.
rerun_restores() {
  local tag=$1
  vrepair --no-progress "$IMG"
  check_eq "$tag, rerun: exit 0" 0 "$RC"
  check "$tag, rerun: content = the original, mirror 1 where damaged" cmp -- "$REF" "$IMG"
  check_eq "$tag, rerun: no pending backup left" "" "$(pending)"
}
# 512 MiB: room for three damaged images and the rewrite's margin (32 MiB + 1/64) after a fill.
make_btrfs --size 512 -d dup -m dup
NEXT=16
damage_at_all "$MNT/vm.raw"
check_fails "fixture: the image gives EIO" reads_ok "$IMG"

# How long the scrub part takes at this rate (a dry run writes nothing).
t0=$(date +%s%N)
vrepair -n --limit-rate "$RATE" --no-progress "$IMG"
ts_ms=$((($(date +%s%N) - t0) / 1000000))
check_eq "dry run under --limit-rate: would-repair, exit 2" "would-repair 2" "$(jf '.files[0].action') $RC"
# The rewrite part: every damaged extent read, backed up, written and read back.
tw_ms=$(((NEXT / 2) * 4 * 1000 / ${RATE%M}))
note "dry run took ${ts_ms} ms at $RATE; rewrite estimated at ${tw_ms} ms"

note "--- SIGKILL at $KILLS moments"
killed=0
partial=0  # kills that left some damaged sectors rewritten and others not
n_orig=0   # ... that left every damaged sector as it was (nothing written yet)
n_rep=0    # ... that left every damaged sector repaired (the complete result)
n_bad=0    # ... after which an invariant failed (a sector neither old nor new, no backup)
for ((k = 0; k < KILLS; k++)); do
  # Every run scrubs first (ts_ms), then backs up, writes and verifies (about tw_ms). The first
  # kill lands in the scrub, the others spread over the rest: slot k-1 of KILLS-1, random within.
  if ((k == 0)); then
    lo=$((ts_ms / 5)) hi=$((ts_ms * 9 / 10))
  else
    lo=$((ts_ms + (k - 1) * tw_ms / (KILLS - 1)))
    hi=$((ts_ms + k * tw_ms / (KILLS - 1)))
  fi
  at=$((lo + RANDOM % (hi - lo + 1)))
  "$VMCSUM" --json repair --limit-rate "$RATE" --no-progress --backup-dir "$BK" "$IMG" \
    >"$IT_TMP/kill.$k.json" 2>"$IT_TMP/kill.$k.err" &
  rp=$!
  bg_track "$rp"
  sleep "$((at / 1000)).$(printf '%03d' $((at % 1000)))"
  kill -KILL "$rp" 2>/dev/null || true
  rc=0
  wait "$rp" || rc=$?
  bg_untrack "$rp"
  if ((rc == 137)); then
    killed=$((killed + 1))
  else
    note "run $k ended by itself before the kill at ${at} ms: exit $rc"
  fi
  fails_before=$IT_FAIL
  invariants "kill $k at ${at} ms"
  partial=$((partial + (LAST_EIO > 0 && LAST_EIO < ${#DAMAGED_OFFS[@]})))
  n_orig=$((n_orig + (LAST_EIO == ${#DAMAGED_OFFS[@]})))
  n_rep=$((n_rep + (LAST_EIO == 0)))
  n_bad=$((n_bad + (IT_FAIL > fails_before)))
  note "kill $k at ${at} ms: exit $rc, $LAST_EIO of ${#DAMAGED_OFFS[@]} damaged sectors still EIO, backups: $(backups | paste -sd' ') pending: $(pending | paste -sd' ')"
done
check "at least one run was killed" test "$killed" -gt 0
note "$killed runs killed, $partial of them between two rewritten ranges"
# Each sector of the image is old or new after every kill: "partial" counts kills between two
# rewritten ranges (some damaged sectors already readable), which is the crash-safe state too.
echo "# figures: repair-sigkill trials=$KILLS killed=$killed original=$n_orig repaired=$n_rep partial=$partial bad=$n_bad"
check_eq "no kill broke an invariant" 0 "$n_bad"

note "--- rerun without a limit"
vrepair --no-progress "$IMG"
check_eq "rerun: exit 0" 0 "$RC"
check "rerun: repaired or already clean" jq -e '.files[0].action | IN("repaired", "clean")' "$OUT"
check "rerun: the whole file reads without EIO" reads_ok "$IMG"
check "rerun: content = the original, mirror 1 where damaged" cmp -- "$REF" "$IMG"
check_eq "rerun: no pending backup left" "" "$(pending)"
check_eq "rerun: no backup temp file of a killed run left" "" \
  "$(find "$BK" -maxdepth 1 -name '*.vmcsum-tmp.*' -printf '%f\n')"
rc=0
"$VMCSUM" --json scrub --no-progress --no-history "$IMG" >"$IT_TMP/scrub.json" 2>/dev/null || rc=$?
check_eq "rerun: vmcsum scrub finds nothing" "0 0" "$rc $(jq '[.files[].bad[]] | length' "$IT_TMP/scrub.json")"
check_eq "rerun: btrfs scrub finds nothing uncorrectable" 0 "$(btrfs_scrub_uncorrectable "$MNT")"
unmount_btrfs
check_eq "rerun: btrfs check --check-data-csum is clean" "" "$(check_bad_logicals "${DEVS[0]}")"
mount_btrfs

note "--- undo"
mapfile -t bks < <(backups)
check "a complete backup exists" test "${#bks[@]}" -ge 1
first=""
for b in "${bks[@]}"; do
  if backup_complete "$BK/$b"; then
    first=$BK/$b
    break
  fi
done
# Change the image all over: the repair wrote those bytes back unchanged, so its backup (format
# 2) keeps only their digest and undo refuses, --force or not, writing nothing.
cp -- "$IMG" "$IT_TMP/before-change"
for ((i = 0; i < NEXT; i++)); do
  dd if=/dev/urandom of="$IMG" bs=4K count=3 seek=$((i * 256 + 7)) conv=notrunc status=none
done
sync -f "$IMG"
changed=$(sha_of "$IMG")
vundo "$first" --force --no-progress
check_eq "undo --force over bytes the backup keeps no copy of: refused not-in-backup, exit 3" \
  "refused not-in-backup 3" "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
check_eq "undo refused: image untouched" "$changed" "$(sha_of "$IMG")"
# Those writes undone by hand, and the first damaged sector (kept in the backup as its copies)
# overwritten: undo refuses it as changed, and --force writes the saved copy back over it.
for ((i = 0; i < NEXT; i++)); do
  dd if="$IT_TMP/before-change" of="$IMG" bs=4K count=3 skip=$((i * 256 + 7)) seek=$((i * 256 + 7)) \
    conv=notrunc status=none
done
rm -f -- "$IT_TMP/before-change"
dd if=/dev/urandom of="$IMG" bs=4K count=1 seek=$((DAMAGED_OFFS[0] / 4096)) conv=notrunc status=none
sync -f "$IMG"
check_fails "the first damaged sector differs from the reference" test \
  "$(bytes_at "$REF" "${DAMAGED_OFFS[0]}" 4096)" == "$(bytes_at "$IMG" "${DAMAGED_OFFS[0]}" 4096)"
changed=$(sha_of "$IMG")
vundo "$first" --no-progress
check_eq "undo of a changed bad sector: refused changed, exit 3" "refused changed 3" \
  "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
check_eq "undo refused: image untouched" "$changed" "$(sha_of "$IMG")"
vundo "$first" --force --no-progress
check_eq "undo --force: restored, exit 0" "restored 0" "$(jf '.files[0].action') $RC"
check_eq "undo --force: the first damaged sector = the saved copy" \
  "$(bytes_at "$REF" "${DAMAGED_OFFS[0]}" 4096)" "$(bytes_at "$IMG" "${DAMAGED_OFFS[0]}" 4096)"
# The backup holds the damaged extents' ranges only: compare those.
while read -r off len; do
  check_eq "undo: range $off+$len = the bytes before the repair" "$(bytes_at "$REF" "$off" "$len")" \
    "$(bytes_at "$IMG" "$off" "$len")"
done < <(jf '.files[0].ranges[]? | "\(.offset) \(.length)"')
check "undo: reads without EIO" reads_ok "$IMG"
rm -f -- "$IMG"

# slow_repair_filling DIR DELAY_MS BACKUP_DIR : starts a repair of $IMG slowed by --limit-rate,
# fills the filesystem of DIR after DELAY_MS, waits; the status in $RC, the document in $OUT.
slow_repair_filling() {
  local dir=$1 delay=$2 bkdir=$3 rp
  "$VMCSUM" --json repair --limit-rate "$RATE" --no-progress --backup-dir "$bkdir" "$IMG" \
    >"$OUT" 2>"$ERR" &
  rp=$!
  bg_track "$rp"
  sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
  dd if=/dev/zero of="$dir/fill" bs=1M status=none 2>/dev/null || true
  sync -f "$dir/fill" 2>/dev/null || true
  RC=0
  wait "$rp" || RC=$?
  bg_untrack "$rp"
  note "repair while $dir fills after ${delay} ms: exit $RC, $(jq -c '.files[0] | {action, code, reason}' "$OUT" 2>/dev/null)"
}

note "--- full disk: the backup directory fills while the repair runs"
small=$IT_TMP/smallbk
mkdir -p "$small"
mount -t tmpfs -o size=48m,mode=0700 tmpfs "$small" # a backup dir: ours alone
_IT_MOUNTS+=("$small")
damage_at_all "$MNT/vm2.raw"
slow_repair_filling "$small" $((ts_ms / 2)) "$small"
check_eq "backup dir full: exit 3" 3 "$RC"
check "backup dir full: failed or refused" jq -e '.files[0].action | IN("failed", "refused")' "$OUT"
scan=$(sector_scan "$IMG" "$REF")
check_eq "backup dir full: nothing written to the image (all damaged sectors still EIO, no other change)" \
  "${#DAMAGED_OFFS[@]} 0" "$(grep -c '^eio' <<<"$scan") $(grep -c '^diff' <<<"$scan" || true)"
check_eq "backup dir full: no backup and no temp file left" "" \
  "$(find "$small" -maxdepth 1 -type f ! -name fill -printf '%f\n')"
rm -f -- "$small/fill"
slow_repair_filling "$small" $((ts_ms + 300)) "$small"
check "backup dir full during the rewrite: exit 0 or 3" test "$RC" -eq 0 -o "$RC" -eq 3
INV_BK=$small
invariants "backup dir full during the rewrite"
INV_BK=$BK
umount "$small"
vrepair --no-progress "$IMG"
check_eq "backup dir full, then a roomy one: rerun exit 0" 0 "$RC"
check "backup dir full, rerun: content = the original, mirror 1 where damaged" cmp -- "$REF" "$IMG"
rm -f -- "$IMG"

note "--- full disk: the image's filesystem fills while the repair runs"
for delay in $((ts_ms / 2)) $((ts_ms + 300)); do
  damage_at_all "$MNT/vm-$delay.raw"
  slow_repair_filling "$MNT" "$delay" "$BK"
  check "filesystem full after ${delay} ms: exit 0 (done before it filled) or 3" test "$RC" -eq 0 -o "$RC" -eq 3
  invariants "filesystem full after ${delay} ms"
  rm -f -- "$MNT/fill"
  sync
  btrfs filesystem sync "$MNT" >/dev/null
  rerun_restores "filesystem full after ${delay} ms"
  rm -f -- "$IMG"
done

note "--- read-only remount while the repair runs"
# The filesystem goes read-only under the repair (an admin's remount, or btrfs after an error):
# the run stops (exit 3, or 0 when it was done first), each sector old or new, and once the
# filesystem is writable again one rerun converges.
for delay in $((ts_ms / 2)) $((ts_ms + tw_ms / 3)); do
  damage_at_all "$MNT/ro-$delay.raw"
  "$VMCSUM" --json repair --limit-rate "$RATE" --no-progress --backup-dir "$BK" "$IMG" \
    >"$OUT" 2>"$ERR" &
  rp=$!
  bg_track "$rp"
  sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
  remounted=0
  # The repair's write lease does not stop a remount; an open file for writing does (EBUSY).
  mount -o remount,ro "$MNT" 2>/dev/null && remounted=1
  RC=0
  wait "$rp" || RC=$?
  bg_untrack "$rp"
  note "read-only remount after ${delay} ms (done: $remounted): exit $RC, $(jq -c '.files[0] | {action, code}' "$OUT" 2>/dev/null)"
  check "read-only after ${delay} ms: exit 0 or 3" test "$RC" -eq 0 -o "$RC" -eq 3
  check "read-only after ${delay} ms: the document is valid JSON" jq -e . "$OUT"
  invariants "read-only remount after ${delay} ms"
  mount -o remount,rw "$MNT"
  rerun_restores "read-only after ${delay} ms"
  rm -f -- "$IMG"
done

note "--- SIGKILL the moment the pending backup appears (the writes start right after it)"
damage_at_all "$MNT/pend.raw"
"$VMCSUM" --json repair --limit-rate "$RATE" --no-progress --backup-dir "$BK" "$IMG" \
  >"$OUT" 2>"$ERR" &
rp=$!
bg_track "$rp"
while kill -0 "$rp" 2>/dev/null && ! compgen -G "$BK/pend.raw.*.vmcsum-backup.pending" >/dev/null; do
  :
done
sent=0
kill -KILL "$rp" 2>/dev/null && sent=1
wait "$rp" 2>/dev/null || true
bg_untrack "$rp"
invariants "killed at the pending backup"
note "killed at the pending backup: $LAST_EIO of ${#DAMAGED_OFFS[@]} damaged sectors still EIO, pending: $(pending | paste -sd' ')"
if ((sent)); then
  check "killed at the pending backup: it is there, complete" \
    backup_complete "$BK/$(pending | grep '^pend\.raw\.' | head -n 1)"
  vrepair --no-progress "$IMG"
  check_eq "killed at the pending backup, rerun: repaired, exit 0" "repaired 0" "$(jf '.files[0].action') $RC"
  check "killed at the pending backup, rerun: says it finished the interrupted repair" \
    jq -e '.files[0].notes | any(test("interrupted"))' "$OUT"
  check "killed at the pending backup, rerun: content = the original, mirror 1 where damaged" cmp -- "$REF" "$IMG"
  check_eq "killed at the pending backup, rerun: no pending backup left" "" "$(pending)"
else
  note "the repair had finished before the pending backup was seen"
fi
rm -f -- "$IMG"

note "--- SIGTERM: stops between two chunks, exit 143, a rerun finishes"
for delay in $((ts_ms / 2)) $((ts_ms + tw_ms / 3)); do
  damage_at_all "$MNT/term-$delay.raw"
  "$VMCSUM" --json repair --limit-rate "$RATE" --no-progress --backup-dir "$BK" "$IMG" \
    >"$OUT" 2>"$ERR" &
  rp=$!
  bg_track "$rp"
  sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
  sent=0
  kill -TERM "$rp" 2>/dev/null && sent=1
  RC=0
  wait "$rp" || RC=$?
  bg_untrack "$rp"
  note "SIGTERM after ${delay} ms: exit $RC, $(jq -c '[.files[]? | {action, code}]' "$OUT" 2>/dev/null)"
  if ((sent)); then
    # It was still running (verifying, maybe): a signal it got is never swallowed.
    check_eq "SIGTERM after ${delay} ms: exit 143" 143 "$RC"
    check "SIGTERM after ${delay} ms: the document is valid JSON" jq -e . "$OUT"
  else
    note "the repair had finished before the signal"
  fi
  invariants "SIGTERM after ${delay} ms"
  rerun_restores "SIGTERM after ${delay} ms"
  rm -f -- "$IMG"
done

note "--- SIGTERM at full speed (no --limit-rate: the read-back runs on a second thread beside the check scrub), soon after the pending backup appears"
for delay in 0 3 8 15 30; do
  damage_at_all "$MNT/fast$delay.raw"
  "$VMCSUM" --json repair --no-progress --backup-dir "$BK" "$IMG" >"$OUT" 2>"$ERR" &
  rp=$!
  bg_track "$rp"
  while kill -0 "$rp" 2>/dev/null && ! compgen -G "$BK/fast$delay.raw.*.vmcsum-backup.pending" >/dev/null; do
    :
  done
  sleep "0.$(printf '%03d' "$delay")"
  sent=0
  kill -TERM "$rp" 2>/dev/null && sent=1
  RC=0
  wait "$rp" || RC=$?
  bg_untrack "$rp"
  what=$(jq -c '[.files[]? | {action, code, reason}]' "$OUT" 2>/dev/null || true)
  note "SIGTERM ${delay} ms after the pending backup: exit $RC, $what"
  check "full speed, SIGTERM ${delay} ms after the pending backup: the document is valid JSON" jq -e . "$OUT"
  if ((sent)) && [[ $(jf '.files[0].action') != repaired ]]; then
    check_eq "full speed, SIGTERM ${delay} ms after the pending backup: exit 143" 143 "$RC"
  else
    # It had repaired the image first: exit 0, or 143 when the signal came before the exit.
    check "full speed, SIGTERM ${delay} ms after the pending backup: repaired first, exit 0 or 143 ($RC)" \
      test "$RC" = 0 -o "$RC" = 143
  fi
  invariants "full speed, SIGTERM ${delay} ms after the pending backup"
  rerun_restores "full speed, SIGTERM ${delay} ms after the pending backup"
  rm -f -- "$IMG"
done

note "--- --limit-rate covers every read and write of the repair, the backup and rewrite included"
# The process's own I/O counters (/proc/PID/io rchar + wchar: every read and write syscall,
# O_DIRECT device reads included), sampled without opening the image (that would break the
# repair's write lease). Over any window of 1 s or more, at most 1.5 x RATE moved.
damage_at_all "$MNT/rate.raw"
"$VMCSUM" --json repair --limit-rate "$RATE" --no-progress --backup-dir "$BK" "$IMG" \
  >"$OUT" 2>"$ERR" &
rp=$!
bg_track "$rp"
: >"$IT_TMP/io.samples"
while [[ -r /proc/$rp/io ]]; do
  awk -v t="$(($(date +%s%N) / 1000000))" '$1 == "rchar:" { r = $2 } $1 == "wchar:" { w = $2 }
    END { if (r != "") printf "%s %.0f %.0f\n", t, r + w, w }' "/proc/$rp/io" >>"$IT_TMP/io.samples" 2>/dev/null || true
  sleep 0.1
done
RC=0
wait "$rp" || RC=$?
bg_untrack "$rp"
check_eq "rate-limited repair: exit 0" 0 "$RC"
rate_bytes=$((${RATE%M} * M))
read -r peak_all peak_w < <(awk '{ t[NR] = $1; a[NR] = $2; w[NR] = $3 }
  END {
    for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) if (t[j] - t[i] >= 1000) {
      ra = (a[j] - a[i]) * 1000 / (t[j] - t[i]); rw = (w[j] - w[i]) * 1000 / (t[j] - t[i])
      if (ra > pa) pa = ra; if (rw > pw) pw = rw; break
    }
    printf "%.0f %.0f\n", pa, pw
  }' "$IT_TMP/io.samples")
note "peak over 1 s windows at --limit-rate $RATE: $((peak_all / 1024)) KiB/s read+written, $((peak_w / 1024)) KiB/s written"
check "--limit-rate $RATE: writes (backup, rewrite) never exceed 1.5 x the rate over 1 s" \
  test "$peak_w" -le $((rate_bytes * 3 / 2))
check "--limit-rate $RATE: reads + writes never exceed 1.5 x the rate over 1 s" \
  test "$peak_all" -le $((rate_bytes * 3 / 2))
check "rate-limited repair: content = the original, mirror 1 where damaged" cmp -- "$REF" "$IMG"
rm -f -- "$IMG"

check_eq "btrfs scrub finds nothing uncorrectable at the end" 0 "$(btrfs_scrub_uncorrectable "$MNT")"
check_schema --by-name "$DOCS"/*
finish
