#!/usr/bin/env bash
# vmcsum repair when btrfs turns itself read-only in the middle of the image writes (issue 12):
# an admin's `mount -o remount,ro` is refused (EBUSY) while repair holds the image open for
# writing, so the failure is made the way a dying disk makes it: the loop device's backing file
# lives on a small tmpfs that is filled once the backup is complete (the writes come right after
# it); btrfs then aborts the transaction and forces itself read-only under the repair.
# Oracles that do not ask vmcsum: findmnt (ro), the kernel's reads sector by sector against the
# original bytes (each sector old or new, EIO only where the damage was), a complete backup on
# disk, and after a remount one rerun that converges (content = the original, no EIO, btrfs scrub
# clean).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/repair_lib.sh"
need_root
need_loop
need_cmd jq btrfs btrfs-map-logical dd perl cmp findmnt timeout
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"

M=1048576
NEXT=16

# The disk: a 512 MiB sparse file on a 200 MiB tmpfs (room for the filesystem and the image,
# not for a fill).
make_fillable_btrfs dup
rot=$FILL_DIR

# The image: damaged on both copies with the race's signature (repair_lib.sh).
damage_at_all "$MNT/vm.raw"
check_fails "fixture: the image gives EIO" reads_ok "$IMG"

# The repair, slowed so its write phase is long enough to stop it in; stopped (SIGSTOP) the
# moment its pending backup is complete, the disk filled, a commit forced, then let go.
"$VMCSUM" --json repair --limit-rate 4M --no-progress --backup-dir "$BK" "$IMG" >"$OUT" 2>"$ERR" &
rp=$!
bg_track "$rp"
stopped=0
for ((t = 0; t < 1200; t++)); do
  for b in "$BK"/*.vmcsum-backup.pending; do
    if [[ -f $b ]] && backup_complete "$b"; then
      kill -STOP "$rp" 2>/dev/null && stopped=1
      break 2
    fi
  done
  kill -0 "$rp" 2>/dev/null || break
  sleep 0.05
done
if ((stopped)); then
  dd if=/dev/zero of="$rot/fill" bs=1M status=none 2>/dev/null || true
  # A commit must now write metadata blocks the full disk has no room for. btrfs reuses blocks
  # freed by earlier commits (their tmpfs pages exist), so small files of our own (inline data:
  # metadata) are added until a commit needs new ones; this does not depend on what the repair
  # had written by now.
  for ((try = 1; try <= 40; try++)); do
    for ((i = 0; i < 100; i++)); do
      printf '%02000d' "$i" >"$MNT/.force-commit.$try.$i" 2>/dev/null || break
    done
    timeout 30 sync -f "$MNT" 2>/dev/null || true
    findmnt -n -o OPTIONS "$MNT" | tr , '\n' | grep -qx ro && break
  done
  note "read-only after $try round(s) of metadata"
  rm -f "$MNT"/.force-commit.* 2>/dev/null || true
  kill -CONT "$rp"
fi
RC=0
wait "$rp" || RC=$?
bg_untrack "$rp"
_vrepair_note "(read-only mid-write)"
check_eq "stopped between the complete backup and the end of the writes" 1 "$stopped"
check_eq "btrfs forced itself read-only (findmnt)" ro \
  "$(findmnt -n -o OPTIONS "$MNT" | tr , '\n' | grep -x ro || true)"
check_eq "repair stopped: exit 3" 3 "$RC"
check "the document is valid JSON and says why" \
  jq -e '.files[0] | (.action | IN("refused", "failed", "partial")) and (.code | type == "string")' "$OUT"
check_schema --by-name "$DOCS"/*.json

# Writable again: each sector old or new, EIO only where the damage was, a complete backup.
rm -f -- "$rot/fill"
unmount_btrfs "$FS_ID"
mount_btrfs "$FS_ID"
scan=$(sector_scan "$IMG" "$REF")
check_eq "after the abort: every sector that reads holds its old bytes (old or new)" 0 \
  "$(grep -c '^diff\|^size' <<<"$scan" || true)"
extra=$(comm -23 <(awk '$1 == "eio" { print $2 }' <<<"$scan" | sort) \
  <(printf '%s\n' "${DAMAGED_OFFS[@]}" | sort))
check_eq "after the abort: EIO only where the damage was" "" "$extra"
complete=0
for b in "$BK"/*.vmcsum-backup "$BK"/*.vmcsum-backup.pending; do
  [[ -f $b ]] && backup_complete "$b" && complete=1
done
check_eq "after the abort: a complete backup is on disk" 1 "$complete"

# One rerun converges.
vrepair --no-progress "$IMG"
check_eq "rerun: exit 0" 0 "$RC"
check "rerun: content = the original, mirror 1's bytes where damaged" cmp -- "$REF" "$IMG"
check "rerun: the whole image reads (no EIO)" reads_ok "$IMG"
check_eq "rerun: no pending backup left" "" "$(pending)"
check_eq "rerun: btrfs scrub finds nothing uncorrectable" 0 "$(btrfs_scrub_uncorrectable "$MNT")"
check_schema --by-name "$DOCS"/*.json
release_btrfs "$FS_ID"
umount "$rot"
finish
