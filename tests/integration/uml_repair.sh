#!/usr/bin/env bash
# vmcsum repair against REAL false checksum mismatches: the O_DIRECT race run by dio_race inside
# a user-mode-linux 6.1 guest on a dup-profile btrfs (uml_make_race_image), the image then
# loop-mounted on the host. Before the repair the file's content is read through a
# ro,rescue=ignoredatacsums mount. After `vmcsum repair /csum_file`: the whole file reads without
# EIO, its content equals that read, btrfs scrub finds nothing uncorrectable, vmcsum scrub finds
# nothing, and btrfs check --check-data-csum on the unmounted image reports no bad sector. The
# NOCOW control file is untouched.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/uml_lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/repair_lib.sh"
need_root
need_loop
need_cmd jq btrfs cmp perl sha256sum timeout
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"
: "${VMCSUM_TOOLS:?VMCSUM_TOOLS must point at the test tools directory}"
[[ -x $VMCSUM_TOOLS/dio_race ]] || skip "dio_race not built"
"$VMCSUM" repair --help >/dev/null 2>&1 || skip "this vmcsum has no repair command"
reason=$(uml_available) || skip "$reason"

# adopt_image IMG : attaches IMG (a btrfs made elsewhere) to a loop device and mounts it, as
# make_btrfs would have: the harness's cleanup unmounts and detaches it. Sets MNT, DEVS, IMGS,
# FS_ID.
adopt_image() {
  local img=$1 dev id
  _IT_FS_COUNT=$((_IT_FS_COUNT + 1))
  id=fs$_IT_FS_COUNT
  mkdir -p -- "$IT_TMP/$id/mnt"
  _IT_IMAGES+=("$img")
  dev=$(_it_losetup "$img")
  _IT_LOOPS+=("$dev")
  _IT_FS_MNT[$id]=$IT_TMP/$id/mnt
  _IT_MNT2ID[$IT_TMP/$id/mnt]=$id
  _IT_FS_DEVS[$id]=$dev
  _IT_FS_IMGS[$id]=$img
  _IT_FS_OPTS[$id]=""
  _IT_MOUNTS+=("$IT_TMP/$id/mnt")
  mount_btrfs "$id"
  MNT=$IT_TMP/$id/mnt
  DEVS=("$dev")
  # shellcheck disable=SC2034 # read by the harness
  IMGS=("$img")
  FS_ID=$id
}

img=$IT_TMP/race.img
check "guest: race image made (dup)" uml_make_race_image "$img" 256 dup
[[ -f $img ]] || finish
btrfs check --check-data-csum "$img" >"$IT_TMP/check.before" 2>&1 || true
n=$(grep -oE '^mirror [0-9]+ bytenr [0-9]+ csum ' "$IT_TMP/check.before" | awk '{print $4}' | sort -u | wc -l)
((n > 0)) || skip "bug not reproduced: btrfs check finds no bad sector (the guest kernel may carry the fix)"
note "btrfs check before: $n bad sectors"

adopt_image "$img"
f=$MNT/csum_file
ign_read "$f" "$IT_TMP/ref"
nocow_before=$(sha_of "$MNT/nocow_file")
check_fails "before: the file gives EIO" reads_ok "$f"
rc=0
"$VMCSUM" --json scrub --no-progress --no-history --no-kernel-pass "$f" >"$IT_TMP/scrub.before" 2>/dev/null || rc=$?
check_eq "before: vmcsum scrub finds them (exit 2)" 2 "$rc"
note "before: $(jq -c '.files[0].summary' "$IT_TMP/scrub.before")"

vrepair --no-progress "$f"
note "repair: exit $RC, $(jq -c '.files[0] | {action, code, bad_sectors, repaired: (.repaired | length), skipped: (.skipped | length), ranges: (.ranges | length), verify}' "$OUT" 2>/dev/null)"
check_eq "repair: repaired, exit 0" "repaired 0" "$(jf '.files[0].action') $RC"
check_eq "repair: nothing skipped" 0 "$(jf '.files[0].skipped | length')"
check "repair: a complete backup" backup_complete "$(jf '.files[0].backup')"
check_eq "repair: every old extent freed" "[true]" "$(jf -c '[.files[0].ranges[].freed] | unique')"

check "after: the whole file reads without EIO" reads_ok "$f"
check "after: content = ignoredatacsums read before" cmp -- "$IT_TMP/ref" "$f"
check_eq "after: the NOCOW control file untouched" "$nocow_before" "$(sha_of "$MNT/nocow_file")"
rc=0
"$VMCSUM" --json scrub --no-progress --no-history "$f" >"$IT_TMP/scrub.after" 2>/dev/null || rc=$?
check_eq "after: vmcsum scrub finds nothing" "0 0" "$rc $(jq '[.files[].bad[]] | length' "$IT_TMP/scrub.after")"
check_eq "after: btrfs scrub finds nothing uncorrectable" 0 "$(btrfs_scrub_uncorrectable "$MNT")"
unmount_btrfs
check_eq "after: btrfs check --check-data-csum finds no bad sector" "" "$(check_bad_logicals "${DEVS[0]}")"
check_schema --by-name "$DOCS"/*
finish
