#!/usr/bin/env bash
# vmcsum repair against REAL false checksum mismatches: the O_DIRECT race run by dio_race inside
# a user-mode-linux 6.1 guest on a dup-profile btrfs (uml_make_race_image), the image then
# loop-mounted on the host. Before the repair the expected content is worked out sector by sector
# from the disk: the copy whose checksum matches if one does (btrfs check --check-data-csum lists
# every copy that fails), else the copy repair chooses (mirror 1: no --prefer-mirror), each copy
# read from the device with btrfs-map-logical. (A ro,rescue=ignoredatacsums read is not that
# truth: it returns one copy, also where only a later copy matches.) After `vmcsum repair
# /csum_file`: the whole file reads without EIO, its content equals the expected one sector by
# sector, btrfs scrub finds nothing uncorrectable, vmcsum scrub finds nothing, and btrfs check
# --check-data-csum on the unmounted image reports no bad sector. The NOCOW control file is
# untouched.
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
# The exact oracle, per sector: each copy as the device holds it, and which copies fail.
file_extents "$f" >"$IT_TMP/extents"
size=$(stat -c %s -- "$f")
unmount_btrfs
mirror_image "$IT_TMP/extents" "${DEVS[0]}" 1 "$size" "$IT_TMP/m1"
mirror_image "$IT_TMP/extents" "${DEVS[0]}" 2 "$size" "$IT_TMP/m2"
# "mirror M bytenr L csum ... expected csum ..." per failing copy (btrfs-progs check_extent_csums())
grep -E '^mirror [0-9]+ bytenr [0-9]+ csum ' "$IT_TMP/check.before" | awk '{print $4, $2}' | sort -u >"$IT_TMP/bad_copies"
mount_btrfs
drop_caches
# ref: sector by sector, the first copy that does not fail, else mirror 1.
perl -e '
  use strict; use warnings;
  my ($ext, $bad, $m1, $m2, $out) = @ARGV;
  my %bad;
  open(my $b, "<", $bad) or die "$bad: $!\n";
  while (<$b>) { my ($l, $m) = split; $bad{"$l $m"} = 1; }
  open(my $e, "<", $ext) or die "$ext: $!\n";
  my @ext = map { [split] } <$e>;
  open(my $h1, "<:raw", $m1) or die; open(my $h2, "<:raw", $m2) or die;
  open(my $o, ">:raw", $out) or die;
  my ($n1, $n2, $n0) = (0, 0, 0);
  for my $x (@ext) {
    my ($off, $log, $len) = @$x;
    for (my $i = 0; $i < $len; $i += 4096) {
      my $l = $log + $i;
      my $h = $h1;
      if (!$bad{"$l 1"}) { $n1++ } elsif (!$bad{"$l 2"}) { $h = $h2; $n2++ } else { $n0++ }
      my $buf;
      sysseek($h, $off + $i, 0) or die; sysread($h, $buf, 4096) == 4096 or die "short read\n";
      sysseek($o, $off + $i, 0) or die; syswrite($o, $buf) == 4096 or die;
    }
  }
  print "sectors from mirror 1 (it matches): $n1, from mirror 2 (only it matches): $n2, from mirror 1 (no copy matches): $n0\n";
' "$IT_TMP/extents" "$IT_TMP/bad_copies" "$IT_TMP/m1" "$IT_TMP/m2" "$IT_TMP/ref" >"$IT_TMP/ref.note"
note "expected content: $(cat "$IT_TMP/ref.note")"
check_eq "oracle: the expected content covers the whole file" "$size" "$(stat -c %s -- "$IT_TMP/ref")"
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
sector_scan "$f" "$IT_TMP/ref" >"$IT_TMP/scan.after"
check_eq "after: content = the matching copy, else mirror 1, sector by sector (first differences)" "" \
  "$(head -n 5 "$IT_TMP/scan.after" | paste -sd' ')"
check_eq "after: the NOCOW control file untouched" "$nocow_before" "$(sha_of "$MNT/nocow_file")"
rc=0
"$VMCSUM" --json scrub --no-progress --no-history "$f" >"$IT_TMP/scrub.after" 2>/dev/null || rc=$?
check_eq "after: vmcsum scrub finds nothing" "0 0" "$rc $(jq '[.files[].bad[]] | length' "$IT_TMP/scrub.after")"
check_eq "after: btrfs scrub finds nothing uncorrectable" 0 "$(btrfs_scrub_uncorrectable "$MNT")"
unmount_btrfs
check_eq "after: btrfs check --check-data-csum finds no bad sector" "" "$(check_bad_logicals "${DEVS[0]}")"
check_schema --by-name "$DOCS"/*
finish
