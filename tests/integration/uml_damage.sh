#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 The vmcsum authors
#
# Deliberate damage on a kernel WITHOUT the fallback: vmcsum run inside user-mode-linux 6.1 (the
# kernel line where the O_DIRECT race is real) must never call it "false-mismatch" (issue 19:
# every disk fault of these shapes was called harmless there).
#   boot 1 (guest): mount a raid1 over ubda + ubdb, `vmcsum record`, write the files BUFFERED
#     (no O_DIRECT writer, so no race), sync, `vmcsum record` again (as vmcsum-record.service does
#     at shutdown), unmount;
#   host: overwrite a 64 KiB run of mirror 2 of run2.raw, a 64 KiB run of mirror 1 of run1.raw,
#     and one block of same.raw on both copies with the same bytes (fstests btrfs/268), with dd
#     on loop devices at the addresses btrfs-map-logical gives; btrfs check --check-data-csum
#     lists what is bad (the oracle);
#   boot 2 (guest): vmcsum scrub, once with the record of boot 1 (the 6.1 window is known:
#     written-without-fallback, necessary for the race and never sufficient) and once with an
#     empty record (write-kernel-unknown).
# Expected (issue 19 contract, decision table row 4): one good copy left -> "media"; identical
# wrong bytes on both copies -> "undetermined"; and the kernel (host) gives EIO on same.raw's block.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/uml_lib.sh"
need_root
need_loop
need_cmd jq btrfs btrfs-map-logical filefrag
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"
reason=$(uml_available) || skip "$reason"
export VMCSUM_STATE_DIR=$IT_TMP/host-state # host runs never touch /var/lib/vmcsum

gout=$IT_TMP/guest # UML_RESULT of both boots: the guest's state directories live here
mkdir -p "$gout"
vmcsum_bin=$(readlink -f -- "$VMCSUM")
a=$IT_TMP/r1a.img
b=$IT_TMP/r1b.img
truncate -s 256M "$a" "$b"
mkfs.btrfs -q -f -d raid1 -m raid1 -- "$a" "$b" >/dev/null

cat >"$IT_TMP/write.sh" <<'PAYLOAD'
#!/bin/sh
mnt=$UML_RESULT/mnt
mkdir -p "$mnt" "$UML_RESULT/state" "$UML_RESULT/empty" || exit 1
mount -t btrfs -o device=/dev/ubdb /dev/ubda "$mnt" || exit 1
uname -r >"$UML_RESULT/uname"
"$VMCSUM_BIN" --state-dir "$UML_RESULT/state" record "$mnt" >"$UML_RESULT/record1.out" 2>&1
echo $? >"$UML_RESULT/record1.rc"
# Buffered writes (no O_DIRECT anywhere): the pattern fstests writes (pwrite -S 0xaa).
for f in run1.raw run2.raw same.raw; do
  head -c 262144 /dev/zero | tr '\0' '\252' >"$mnt/$f" || exit 1
done
sync
"$VMCSUM_BIN" --state-dir "$UML_RESULT/state" record "$mnt" >"$UML_RESULT/record2.out" 2>&1
echo $? >"$UML_RESULT/record2.rc"
umount "$mnt" || exit 1
exit 0
PAYLOAD
cat >"$IT_TMP/scrub.sh" <<'PAYLOAD'
#!/bin/sh
mnt=$UML_RESULT/mnt
mount -t btrfs -o device=/dev/ubdb /dev/ubda "$mnt" || exit 1
for s in state empty; do
  "$VMCSUM_BIN" --json --state-dir "$UML_RESULT/$s" scrub --no-progress --no-history --no-kernel-pass \
    --libvirt-dir "$UML_RESULT/empty" --libvirt-run-dir "$UML_RESULT/empty" --pve-dir "$UML_RESULT/empty" \
    "$mnt/run1.raw" "$mnt/run2.raw" "$mnt/same.raw" >"$UML_RESULT/scrub.$s.json" 2>"$UML_RESULT/scrub.$s.err"
  rc=$?
  if [ $rc = 64 ]; then
    # A vmcsum without --state-dir (before issue 19): the classes still count; the record's
    # evidence checks fail on their own.
    "$VMCSUM_BIN" --json scrub --no-progress --no-history --no-kernel-pass \
      --libvirt-dir "$UML_RESULT/empty" --libvirt-run-dir "$UML_RESULT/empty" --pve-dir "$UML_RESULT/empty" \
      "$mnt/run1.raw" "$mnt/run2.raw" "$mnt/same.raw" >"$UML_RESULT/scrub.$s.json" 2>>"$UML_RESULT/scrub.$s.err"
    rc=$?
  fi
  echo $rc >"$UML_RESULT/scrub.$s.rc"
done
umount "$mnt" || exit 1
exit 0
PAYLOAD
chmod +x "$IT_TMP/write.sh" "$IT_TMP/scrub.sh"
# shellcheck disable=SC2317 # called through check
guest() { UML_OUTDIR=$gout uml_run "$a" "$b" -- "$@" "VMCSUM_BIN=$vmcsum_bin"; }

check "boot 1: the guest wrote the files buffered" guest "$IT_TMP/write.sh"
[[ -s $gout/uname ]] || finish
note "guest kernel $(cat "$gout/uname")"
check_eq "boot 1: vmcsum record (before and after the writes)" "0 0" \
  "$(cat "$gout/record1.rc" 2>/dev/null) $(cat "$gout/record2.rc" 2>/dev/null)"

# --- host: the damage, below btrfs ----------------------------------------------------------------
adopt_btrfs --mount-opts ro "$a" "$b"
for f in run1.raw run2.raw same.raw; do
  file_extents "$MNT/$f" >"$IT_TMP/ext.$f"
done
unmount_btrfs
# damage NAME OFFSET LENGTH MIRRORS HEXBYTE : overwrite those copies of those sectors.
damage() {
  local o l mirror dev phys
  head -c 4096 /dev/zero | tr '\0' "\\$(printf '%03o' "$5")" >"$IT_TMP/fill"
  for ((o = $2; o < $2 + $3; o += 4096)); do
    l=$(awk -v o="$o" '$1 <= o && o < $1 + $3 { printf "%.0f\n", $2 + o - $1 }' "$IT_TMP/ext.$1")
    while read -r mirror dev phys; do
      [[ ,$4, == *",$mirror,"* ]] || continue
      dd if="$IT_TMP/fill" of="$dev" bs=4096 count=1 seek="$phys" oflag=seek_bytes,direct conv=notrunc status=none
      echo "$l $mirror" >>"$IT_TMP/damaged"
      echo "$o" >>"$IT_TMP/damaged.$1"
    done < <(copies_of "$l" "${DEVS[0]}")
  done
}
damage run1.raw 0 65536 1 0xbb
damage run2.raw 65536 65536 2 0xbb # the first case of issue 19: a run of the SECOND copy
damage same.raw 0 4096 1,2 0xba    # btrfs/268: both copies, the same bytes
sync
_it_flushbufs "${DEVS[@]}"
btrfs check --check-data-csum "${DEVS[0]}" >"$IT_TMP/check.full" 2>&1 || true
awk '$1 == "mirror" && $3 == "bytenr" { print $4, $2 }' "$IT_TMP/check.full" | sort -u >"$IT_TMP/check"
check "host: btrfs check lists exactly the copies overwritten ($(wc -l <"$IT_TMP/check"))" \
  diff -u <(sort -u "$IT_TMP/damaged") "$IT_TMP/check"
release_btrfs "$FS_ID" # the guest gets the images without a host page cache in between

# --- boot 2: vmcsum inside 6.1 ---------------------------------------------------------------------
check "boot 2: the guest ran vmcsum scrub" guest "$IT_TMP/scrub.sh"
for s in state empty; do
  j=$gout/scrub.$s.json
  name="guest 6.1, record ${s/state/of boot 1}"
  [[ -s $gout/scrub.$s.err ]] && note "$name: stderr: $(head -c 300 "$gout/scrub.$s.err")"
  check_eq "$name: exit 2" 2 "$(cat "$gout/scrub.$s.rc" 2>/dev/null)"
  check "$name: failing copies = btrfs check" \
    diff -u "$IT_TMP/check" <(jq -r '.files[].bad[] | .logical as $l | .copies[] | select(.matches == false) | "\($l) \(.mirror)"' "$j" | sort -u)
  check_eq "$name: never false-mismatch" "[]" \
    "$(jq -c '[.files[].bad[] | select(.class == "false-mismatch") | .offset]' "$j" 2>/dev/null || echo '?')"
  for f in run1.raw run2.raw; do
    check_eq "$name: $f: a good copy left: media (copy-matches)" '["media true"]' \
      "$(jq -c --arg f "/$f" '[.files[] | select(.path | endswith($f)) | .bad[] | "\(.class) \((.evidence_codes // []) | index("copy-matches") != null)"] | unique' "$j")"
    check_eq "$name: $f: the damaged offsets" "$(sort -n -u "$IT_TMP/damaged.$f" | paste -sd,)" \
      "$(jq -r --arg f "/$f" '[.files[] | select(.path | endswith($f)) | .bad[].offset] | sort | map(tostring) | join(",")' "$j")"
  done
  check_eq "$name: same.raw: identical bad copies: undetermined (identical-bad-copies)" '["0 undetermined true"]' \
    "$(jq -c '[.files[] | select(.path | endswith("/same.raw")) | .bad[] | "\(.offset) \(.class) \((.evidence_codes // []) | index("identical-bad-copies") != null)"] | unique' "$j")"
  if [[ $s == state ]]; then
    check_eq "$name: written-without-fallback, written by the guest's kernel, direct" \
      "[\"true $(cat "$gout/uname") direct\"]" \
      "$(jq -c '[.files[].bad[] | "\((.evidence_codes // []) | index("written-without-fallback") != null) \(.written_by.kernel) \(.written_by.dio_write)"] | unique' "$j")"
  else
    check_eq "$name: write-kernel-unknown, written_by null" '["true null"]' \
      "$(jq -c '[.files[].bad[] | "\((.evidence_codes // []) | index("write-kernel-unknown") != null) \(.written_by)"] | unique' "$j")"
  fi
done

# --- host kernel: EIO where no copy is good (only there: a read elsewhere would repair) ----------
adopt_btrfs --mount-opts ro "$a" "$b"
check "host kernel: O_DIRECT read of same.raw's block fails (both copies bad)" \
  bash -c "! dd if='$MNT/same.raw' of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null"
check_schema --by-name "$gout"/scrub.*.json
finish
