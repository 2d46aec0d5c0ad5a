#!/usr/bin/env bash
# vmcsum repair against REAL false checksum mismatches: the O_DIRECT race run by dio_race inside
# a user-mode-linux 6.1 guest (uml_make_race_image) on a dup-profile btrfs and on a raid1 over two
# devices, the images then loop-mounted on the host. Before the repair the expected content is worked out sector by sector
# from the disk: the copy whose checksum matches if one does (btrfs check --check-data-csum lists
# every copy that fails), else the copy repair chooses (mirror 1: no --prefer-mirror), each copy
# read from the device with btrfs-map-logical. (A ro,rescue=ignoredatacsums read is not that
# truth: it returns one copy, also where only a later copy matches.) After `vmcsum repair
# /csum_file`: the whole file reads without EIO, its content equals the expected one sector by
# sector, btrfs scrub finds nothing uncorrectable, vmcsum scrub finds nothing, and btrfs check
# --check-data-csum on the unmounted image reports no bad sector. The NOCOW control file is
# untouched (both copies, read from the devices).
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

# repair_case NAME PROFILE IMG... : a race image (dup on one image, raid1 on two), repaired on the
# host and checked against the per-sector oracle.
repair_case() {
  local name=$1 profile=$2 d=$IT_TMP/$1
  shift 2
  mkdir -p "$d"
  if ! uml_make_race_image "$1" 256 "$profile" ${2:+"$2"} >"$d/make.log" 2>&1; then
    _it_indent <"$d/make.log"
    check_eq "$name: guest: race image made" 0 1
    return 0
  fi
  adopt_btrfs "$@"
  local f=$MNT/csum_file nocow=$MNT/nocow_file size nsize n m rc
  # The exact oracle, per sector: each copy as the device holds it, and which copies fail.
  file_extents "$f" >"$d/extents"
  file_extents "$nocow" >"$d/nocow.extents"
  size=$(stat -c %s -- "$f")
  nsize=$(stat -c %s -- "$nocow")
  unmount_btrfs
  for m in 1 2; do
    mirror_image "$d/extents" "${DEVS[0]}" "$m" "$size" "$d/m$m"
    # NOCOW: no checksum, and on raid1 a read through btrfs picks its mirror by PID: compare the
    # device copies, not a read.
    mirror_image "$d/nocow.extents" "${DEVS[0]}" "$m" "$nsize" "$d/nocow.before.m$m"
  done
  btrfs check --check-data-csum "${DEVS[0]}" >"$d/check.before" 2>&1 || true
  # "mirror M bytenr L csum ... expected csum ..." per failing copy (btrfs-progs check_extent_csums())
  grep -E '^mirror [0-9]+ bytenr [0-9]+ csum ' "$d/check.before" | awk '{print $4, $2}' | sort -u >"$d/bad_copies"
  n=$(awk '{print $1}' "$d/bad_copies" | sort -u | wc -l)
  mount_btrfs
  if ((n == 0)); then
    note "$name: bug not reproduced: btrfs check finds no bad sector (the guest kernel may carry the fix)"
    return 0
  fi
  REPRODUCED=$((REPRODUCED + 1))
  note "$name: btrfs check before: $n bad sectors"
  # ref: sector by sector, the first copy that does not fail, else mirror 1 (no --prefer-mirror).
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
    print "from mirror 1 (it matches): $n1, from mirror 2 (only it matches): $n2, from mirror 1 (no copy matches): $n0\n";
  ' "$d/extents" "$d/bad_copies" "$d/m1" "$d/m2" "$d/ref" >"$d/ref.note"
  note "$name: expected content, sectors $(cat "$d/ref.note")"
  check_eq "$name: oracle: the expected content covers the whole file" "$size" "$(stat -c %s -- "$d/ref")"
  if grep -q 'no copy matches): 0$' "$d/ref.note"; then
    check "$name: before: the file reads (every bad sector has a good copy)" reads_ok "$f"
  else
    check_fails "$name: before: the file gives EIO" reads_ok "$f"
  fi
  rc=0
  "$VMCSUM" --json scrub --no-progress --no-history --no-kernel-pass "$f" >"$d/scrub.before" 2>/dev/null || rc=$?
  check_eq "$name: before: vmcsum scrub finds them (exit 2)" 2 "$rc"
  note "$name: before: $(jq -c '.files[0].summary' "$d/scrub.before")"

  # The VM that wrote it, as the race really happens: cache=none in its libvirt domain. That is
  # race evidence whether or not this run of the race left copies that differ (the signature).
  mkdir -p "$d/libvirt/qemu" "$d/empty"
  cat >"$d/libvirt/qemu/guest.xml" <<XML
<domain type='kvm'><name>guest</name><devices>
  <disk type='file' device='disk'><driver name='qemu' type='raw' cache='none'/>
    <source file='$f'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>
XML
  vrepair --no-progress --libvirt-dir "$d/libvirt" --libvirt-run-dir "$d/empty" --pve-dir "$d/empty" "$f"
  note "$name: repair: exit $RC, $(jq -c '.files[0] | {action, code, bad_sectors, repaired: (.repaired | length), skipped: (.skipped | length), ranges: (.ranges | length), verify}' "$OUT" 2>/dev/null)"
  check_eq "$name: repair: repaired, exit 0" "repaired 0" "$(jf '.files[0].action') $RC"
  check_eq "$name: repair: nothing skipped" 0 "$(jf '.files[0].skipped | length')"
  check "$name: repair: a complete backup" backup_complete "$(jf '.files[0].backup')"
  check_eq "$name: repair: every old extent freed" "[true]" "$(jf -c '[.files[0].ranges[].freed] | unique')"

  check "$name: after: the whole file reads without EIO" reads_ok "$f"
  sector_scan "$f" "$d/ref" >"$d/scan.after"
  check_eq "$name: after: content = the matching copy, else mirror 1, sector by sector (first differences)" "" \
    "$(head -n 5 "$d/scan.after" | paste -sd' ')"
  rc=0
  "$VMCSUM" --json scrub --no-progress --no-history "$f" >"$d/scrub.after" 2>/dev/null || rc=$?
  check_eq "$name: after: vmcsum scrub finds nothing" "0 0" "$rc $(jq '[.files[].bad[]] | length' "$d/scrub.after")"
  check_eq "$name: after: btrfs scrub finds nothing uncorrectable" 0 "$(btrfs_scrub_uncorrectable "$MNT")"
  unmount_btrfs
  check_eq "$name: after: btrfs check --check-data-csum finds no bad sector" "" "$(check_bad_logicals "${DEVS[0]}")"
  for m in 1 2; do
    mirror_image "$d/nocow.extents" "${DEVS[0]}" "$m" "$nsize" "$d/nocow.after.m$m"
    check "$name: after: the NOCOW control file untouched (copy $m, read from the device)" \
      cmp -- "$d/nocow.before.m$m" "$d/nocow.after.m$m"
  done
  release_btrfs "$FS_ID"
}

REPRODUCED=0
repair_case dup dup "$IT_TMP/race.img"
# raid1 over two devices: here sectors where only mirror 1 fails are common (issue 19's
# measurements), so the oracle's "a later copy matches" branch is exercised.
repair_case raid1 raid1 "$IT_TMP/r1a.img" "$IT_TMP/r1b.img"
((REPRODUCED > 0)) || skip "bug not reproduced on dup nor raid1 (the guest kernel may carry the fix)"
check_schema --by-name "$DOCS"/*
finish
