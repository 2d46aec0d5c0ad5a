#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 The vmcsum authors
#
# vmcsum scrub on damage laid out the way btrfs's own test suites lay it out (fstests btrfs/140,
# 141, 265-270, 288: a file written with `xfs_io -d pwrite -S 0xaa`, i.e. O_DIRECT, one copy's
# first 64 KiB overwritten with `pwrite -S 0xbb` on the device at the physical address
# btrfs-map-logical gives; btrfs/268: both raid1 copies of a block overwritten with the SAME
# bytes; btrfs/266-267: raid1c3 runs bad on two mirrors each, interleaved, a good copy always
# left; btrfs/270: a compressed extent on raid1). dd oflag=direct stands in for xfs_io -d.
#
# Oracles, none of them vmcsum:
#  * the damage the test laid out, sector by sector and copy by copy, must be exactly what
#    `btrfs check --check-data-csum` (unmounted) lists as "mirror M bytenr L", and vmcsum's failing
#    copies must be exactly those;
#  * the kernel's EIO: an O_DIRECT read of every sector that has no good copy fails. Sectors with a
#    good copy are NOT read through btrfs before the end (a read repairs the bad copy, and which
#    mirror it tries first depends on the reader's PID); at the end the whole file is read and
#    must equal what was written, whichever mirror served it;
#  * NOCOW/NODATASUM files have no checksum: btrfs check and vmcsum report nothing bad, and their
#    divergent ranges (issue 19 contract) must equal the ranges where the two copies, read
#    directly from the devices, differ.
# Classes (issue 19 contract, decision table): artificial damage is never "false-mismatch"; one
# good copy left -> "media" (copy-matches); compressed -> "media" (compressed-extent); identical
# wrong bytes on every copy -> "undetermined" (identical-bad-copies). Everything runs twice: once
# on filesystems written before any `vmcsum record` (their extents lie in a gap: the write kernel
# is unknown), once with `vmcsum record` run right after mount, before the files were written:
# then this host's kernel (6.18.x, which falls back to buffered writes for checksummed files, and
# since 6.18.16 for any file on a duplicated profile: docs/kernel-facts.md, "Re-checked 2026-12-02")
# wrote them, every sector carries "written-with-fallback" and is "media".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq filefrag btrfs btrfs-map-logical dd chattr cp cmp
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"
keep_json_documents

EMPTY=$IT_TMP/empty # no VM configurations: nothing here is opened with O_DIRECT by a VM
mkdir -p "$EMPTY"
PASS="" # "gap" or "recorded"
D=""    # per-filesystem work directory

# fill_file OUT BYTES HEXBYTE : OUT holds BYTES copies of the byte HEXBYTE (like xfs_io -S).
fill_file() {
  head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "$3")" >"$1"
}
# dwrite FILE LEN HEXBYTE : writes LEN bytes of HEXBYTE with O_DIRECT, 64 KiB per write
# (xfs_io -f -d -c "pwrite -S HEXBYTE -b 64K 0 LEN").
dwrite() {
  fill_file "$IT_TMP/src" "$2" "$3"
  dd if="$IT_TMP/src" of="$1" bs=64K oflag=direct conv=notrunc status=none
}
# bwrite FILE LEN HEXBYTE : the same, buffered.
bwrite() {
  fill_file "$IT_TMP/src" "$2" "$3"
  dd if="$IT_TMP/src" of="$1" bs=64K conv=notrunc status=none
}

# plan FILE OFFSET LENGTH MIRRORS HEXBYTE : queues an overwrite of copies MIRRORS ("1", "2,3",
# "all") of every sector of FILE in [OFFSET, OFFSET+LENGTH) with HEXBYTE. Filesystem mounted.
plan() {
  file_extents "$1" >"$D/extents"
  awk -v off="$2" -v len="$3" -v m="$4" -v x="$5" -v f="$1" '
    { for (o = off; o < off + len; o += 4096) if ($1 <= o && o < $1 + $3) { printf "%.0f %s %s\n", $2 + o - $1, m, x; n++ } }
    END { if (n != len / 4096) { printf "plan: %s: only %d of %d sectors mapped\n", f, n, len / 4096 > "/dev/stderr"; exit 1 } }' \
    "$D/extents" >>"$D/plan"
}
# plan_compressed FILE MIRRORS HEXBYTE : queues an overwrite of the first on-disk sector of FILE's
# first compressed extent (btrfs/270). Prints its logical address.
plan_compressed() {
  local f=$1 l
  sync -- "$f"
  l=$(filefrag -v -b4096 -- "$f" | awk '/encoded/ { gsub(/\.\./, " "); gsub(/:/, " "); print $4 * 4096; exit }')
  [[ -n $l ]] || {
    note "plan_compressed: $f has no encoded extent"
    return 1
  }
  echo "$l $2 $3" >>"$D/plan"
  echo "$l"
}
# probe FILE : records the logical address of each sector of FILE (for the device-copy oracle).
probe() {
  local n=${1##*/}
  file_extents "$1" >"$D/ext.$n"
  awk -v n="$n" '{ for (o = 0; o < $3; o += 4096) printf "%s %.0f %.0f\n", n, $1 + o, $2 + o }' "$D/ext.$n" >>"$D/probe"
  echo "$n $(stat -c %s -- "$1")" >>"$D/probed"
}
# map_copies LOGICAL : "mirror device physical" per copy (copies_of without its buffer flush:
# apply_damage flushes once).
map_copies() {
  btrfs-map-logical -l "$1" -b 4096 "${DEVS[0]}" 2>/dev/null |
    awk -v l="$1" '$1 == "mirror" && $3 == "logical" && $4 == l { print $2, $8, $6; n++ } END { exit (n > 0 ? 0 : 1) }'
}

# apply_damage : unmounts, writes the planned damage below btrfs, writes $D/truth ("L M" per
# overwritten copy of a checksummed sector, the plan's view), $D/check (btrfs check's "L M"
# lines) and $D/probe.copies ("NAME OFFSET MIRROR SHA" of every probed sector, read from the
# devices), then mounts again and drops caches.
apply_damage() {
  local l len mirrors hex dev phys count
  unmount_btrfs
  : >"$D/damaged"
  # Runs of consecutive logical sectors with the same mirrors and bytes: one btrfs-map-logical
  # per run (a busy machine makes every process expensive). It prints one line per mirror and
  # piece ("mirror 1 logical L physical P device D"; a piece ends at a stripe boundary).
  awk '{ if (n && $1 == prev + 4096 && $2 == m && $3 == x) { len += 4096 } else { if (n) print start, len, m, x; start = $1; len = 4096; m = $2; x = $3 } prev = $1; n++ }
       END { if (n) print start, len, m, x }' "$D/plan" >"$D/runs"
  while read -r l len mirrors hex; do
    [[ -f $IT_TMP/fill.$hex ]] || fill_file "$IT_TMP/fill.$hex" 1M "$hex"
    btrfs-map-logical -l "$l" -b "$len" "${DEVS[0]}" 2>/dev/null >"$D/map" || true
    # -> "DEV PHYS COUNT" per contiguous piece of a chosen copy, and "L M" per sector into damaged
    awk -v l0="$l" -v len="$len" -v want="$mirrors" -v dmg="$D/damaged" '
      BEGIN { nw = split(want, w, ","); for (i = 1; i <= nw; i++) ok[w[i]] = 1 }
      $1 == "mirror" && $3 == "logical" && $5 == "physical" && $7 == "device" {
        if (want != "all" && !($2 in ok)) next
        k = ++np[$2]; pl[$2, k] = $4; pp[$2, k] = $6; pd[$2, k] = $8
      }
      END {
        for (m in np) {
          for (k = 1; k <= np[m]; k++) {
            s = pl[m, k]; e = (k < np[m]) ? pl[m, k + 1] : l0 + len
            if (e > l0 + len) e = l0 + len
            printf "%s %.0f %d\n", pd[m, k], pp[m, k], (e - s) / 4096
            for (x = s; x < e; x += 4096) printf "%.0f %s\n", x, m >> dmg
          }
        }
      }' "$D/map" >"$D/segments"
    [[ -s $D/segments ]] || {
      note "apply_damage: btrfs-map-logical mapped nothing at $l (+$len, mirrors $mirrors)"
      return 1
    }
    while read -r dev phys count; do
      dd if="$IT_TMP/fill.$hex" of="$dev" bs=4096 count="$count" seek="$phys" \
        oflag=seek_bytes,direct conv=notrunc status=none
    done <"$D/segments"
  done <"$D/runs"
  _it_flushbufs "${DEVS[@]}"
  # Every copy of each probed file as the devices hold it: "NAME OFFSET MIRROR DIGEST" per sector.
  local name size ncopies
  : >"$D/probe.copies"
  if [[ -s $D/probed ]]; then
    ncopies=$(map_copies "$(awk '{print $3; exit}' "$D/probe")" | wc -l)
    while read -r name size; do
      for ((mirror = 1; mirror <= ncopies; mirror++)); do
        mirror_image "$D/ext.$name" "${DEVS[0]}" "$mirror" "$size" "$D/img.$name.$mirror"
        perl -MDigest::MD5=md5_hex -e '
          my ($f, $n, $m) = @ARGV; open(my $h, "<:raw", $f) or die "$f: $!\n";
          my ($o, $b) = (0, ""); while (sysread($h, $b, 4096)) { print "$n $o $m ", md5_hex($b), "\n"; $o += 4096 }' \
          "$D/img.$name.$mirror" "$name" "$mirror" >>"$D/probe.copies"
      done
    done <"$D/probed"
  fi
  # The top-level subvolume's tree: each EXTENT_DATA item's generation (the write's transid).
  btrfs inspect-internal dump-tree -t 5 "${DEVS[0]}" >"$D/tree5" 2>/dev/null || true
  btrfs check --check-data-csum "${DEVS[0]}" >"$D/check.full" 2>&1 || true
  # "mirror 2 bytenr 30408704 csum 0x... expected csum 0x..." (btrfs-progs check_extent_csums())
  awk '$1 == "mirror" && $3 == "bytenr" { print $4, $2 }' "$D/check.full" | sort -u >"$D/check"
  # The unmount evicted the files' pages and the loop devices' buffers are flushed: no stale
  # data to drop (drop_caches is machine-wide and slow on a busy machine).
  mount_btrfs
}

# scrub ARGS... : vmcsum --json scrub --no-kernel-pass (no read through btrfs: nothing repaired)
# into $D/scrub.json, exit status in $D/scrub.rc.
scrub() {
  local rc=0
  "$VMCSUM" --json scrub --no-progress --no-history --no-kernel-pass --libvirt-dir "$EMPTY" \
    --libvirt-run-dir "$EMPTY" --pve-dir "$EMPTY" "$@" >"$D/scrub.json" 2>"$D/scrub.err" || rc=$?
  echo "$rc" >"$D/scrub.rc"
  [[ -s $D/scrub.err ]] && note "scrub stderr: $(head -c 300 "$D/scrub.err")"
  return 0
}
# jb NAME FILTER : FILTER over the bad[] entries of the file $MNT/NAME.
jb() {
  jq -c --arg n "$MNT/$1" "[.files[] | select(.path == \$n) | .bad[]] | $2" "$D/scrub.json" 2>/dev/null || echo "?"
}
# jdiv NAME FILTER : FILTER over the divergent[] entries of that file.
jdiv() {
  jq -c --arg n "$MNT/$1" "[.files[] | select(.path == \$n) | (.divergent // [])[]] | $2" "$D/scrub.json" 2>/dev/null || echo "?"
}

# new_fs NAME NDEV MKFS-ARGS... : a fresh filesystem; in the "recorded" pass `vmcsum record`
# runs right after the mount, before anything is written.
new_fs() {
  local name=$1 ndev=$2
  shift 2
  D=$IT_TMP/$PASS.$name
  mkdir -p "$D"
  : >"$D/plan"
  : >"$D/probe"
  : >"$D/probed"
  make_btrfs --devices "$ndev" --size 256 -- "$@"
  if [[ $PASS == recorded ]]; then
    check "$PASS $name: vmcsum record before the files are written" \
      "$VMCSUM" --state-dir "$VMCSUM_STATE_DIR" record "$MNT"
  fi
}

# common_checks NAME : the oracles every filesystem shares (after apply_damage and scrub).
common_checks() {
  local name="$PASS $1"
  sort -u "$D/damaged" >"$D/damaged.sorted"
  # Only checksummed sectors are in btrfs check's list; the plan's NOCOW/NODATASUM sectors not.
  check "$name: btrfs check lists exactly the checksummed copies the test overwrote" \
    diff -u <(awk -v p="$D/probe" 'FILENAME == p { nocsum[$3] = 1; next } !($1 in nocsum)' "$D/probe" "$D/damaged.sorted" | sort -u) "$D/check"
  jq -r '.files[].bad[] | .logical as $l | .copies[] | select(.matches == false) | "\($l) \(.mirror)"' \
    "$D/scrub.json" 2>/dev/null | sort -u >"$D/ours"
  check "$name: vmcsum's failing copies = btrfs check's \"mirror M bytenr L\" lines ($(wc -l <"$D/check"))" \
    diff -u "$D/check" "$D/ours"
  check_eq "$name: scrub exit 2 (damage found)" 2 "$(cat "$D/scrub.rc")"
  check_eq "$name: no sector and no divergent range is false-mismatch" "[]" \
    "$(jq -c '[.files[] | (.bad[], (.divergent // [])[]) | select(.class == "false-mismatch") | .offset]' "$D/scrub.json" 2>/dev/null || echo '?')"
  if [[ $PASS == recorded ]]; then
    check_eq "$name: every bad sector carries written-with-fallback" "[true]" \
      "$(jq -c '[.files[].bad[] | (.evidence_codes // []) | index("written-with-fallback") != null] | unique' "$D/scrub.json" 2>/dev/null || echo '?')"
    check_eq "$name: every bad sector is media (written by a kernel that falls back)" '["media"]' \
      "$(jq -c '[.files[].bad[].class] | unique' "$D/scrub.json" 2>/dev/null || echo '?')"
    check_eq "$name: written_by = this kernel, buffered-fallback" "[\"$(uname -r) buffered-fallback\"]" \
      "$(jq -c '[.files[].bad[] | "\(.written_by.kernel) \(.written_by.dio_write)"] | unique' "$D/scrub.json" 2>/dev/null || echo '?')"
  else
    check_eq "$name: no record before the writes: written_by null, write-kernel-unknown" "[true]" \
      "$(jq -c '[.files[].bad[] | select((.evidence_codes // []) | index("compressed-extent") | not) | .written_by == null and ((.evidence_codes // []) | index("write-kernel-unknown") != null)] | unique' "$D/scrub.json" 2>/dev/null || echo '?')"
  fi
  # generation = the transid in the EXTENT_DATA item holding the offset (dump-tree, top-level
  # subvolume only: the snapshot has a tree of its own). dump-tree prints per item
  #   item 8 key (257 EXTENT_DATA 65536) itemoff 15763 itemsize 53
  #           generation 7 type 1 (regular)
  #           extent data disk byte 88145920 nr 65536
  #           extent data offset 0 nr 65536 ram 65536
  local path
  jq -r '.files[] | .path as $p | .bad[] | "\($p) \(.offset) \(.generation)"' "$D/scrub.json" 2>/dev/null |
    awk -v mnt="$MNT/" 'index($1, mnt) == 1 && substr($1, length(mnt) + 1) !~ /\//' >"$D/gen.ours" || true
  : >"$D/inos"
  while read -r path; do
    echo "$path $(stat -c %i -- "$path")" >>"$D/inos"
  done < <(awk '{print $1}' "$D/gen.ours" | sort -u)
  awk -v inos="$D/inos" -v tree="$D/tree5" '
    BEGIN {
      while ((getline line < inos) > 0) { split(line, f, " "); ino[f[1]] = f[2] }
      while ((getline line < tree) > 0) {
        n = split(line, f, " ")
        if (f[1] == "item" && f[5] == "EXTENT_DATA") { i = f[4]; sub(/^\(/, "", i); k = f[6]; sub(/\)$/, "", k); k += 0; hit = 1; continue }
        if (hit && f[1] == "generation") { g = f[2]; continue }
        if (hit && f[1] == "extent" && f[2] == "data" && f[3] == "offset") { c = ++ne[i]; ek[i, c] = k; el[i, c] = f[6]; eg[i, c] = g; hit = 0; continue }
        if (f[1] == "item") hit = 0
      }
    }
    { want = "none"; i = ino[$1]
      for (c = 1; c <= ne[i]; c++) if (ek[i, c] <= $2 + 0 && $2 + 0 < ek[i, c] + el[i, c]) { want = eg[i, c]; break }
      print $1, $2, want }' "$D/gen.ours" >"$D/gen.want"
  check "$name: every bad sector's generation = its EXTENT_DATA item's (dump-tree, $(wc -l <"$D/gen.want"))" \
    diff -u "$D/gen.want" "$D/gen.ours"
}

# one_good NAME FILE : every bad sector of FILE keeps a good copy: media, copy-matches.
one_good() {
  check_eq "$PASS $1: ${2}: media, copy-matches, a copy matches" '["media true true"]' \
    "$(jb "$2" '[.[] | "\(.class) \((.evidence_codes // []) | index("copy-matches") != null) \(any(.copies[]; .matches))"] | unique')"
}
# offsets_eq NAME FILE OFFSET LENGTH... : FILE's bad offsets are exactly the sectors of the ranges.
offsets_eq() {
  local name=$1 f=$2 want=() o
  shift 2
  while (($#)); do
    for ((o = $1; o < $1 + $2; o += 4096)); do want+=("$o"); done
    shift 2
  done
  check_eq "$PASS $name: $f: bad offsets" "$(printf '%s\n' "${want[@]}" | sort -n | paste -sd,)" \
    "$(jb "$f" '[.[].offset] | sort | join(",")' | tr -d '"')"
}
# eio_all NAME FILE OFFSET... : an O_DIRECT read of each sector fails (no good copy anywhere).
eio_all() {
  local name=$1 f=$2 o
  shift 2
  for o in "$@"; do
    check "$PASS $name: $f: kernel EIO at $o (no good copy)" \
      bash -c "! dd if='$MNT/$f' of=/dev/null bs=4096 count=1 skip=$((o / 4096)) iflag=direct status=none 2>/dev/null"
  done
}
# content_ok NAME FILE HEXBYTE : the whole file reads back as written (every damaged sector keeps
# a good copy; whichever mirror the kernel tries, it returns or repairs to the good one). Last.
content_ok() {
  fill_file "$IT_TMP/want" "$(stat -c %s -- "$MNT/$2")" "$3"
  # O_DIRECT: no page cache in the way (a compressed extent falls back to a buffered read, and
  # nothing read it through btrfs since the remount).
  check "$PASS $1: $2: reads back as written through btrfs (a good copy serves every sector)" \
    cmp -- "$IT_TMP/want" <(dd if="$MNT/$2" bs=64K iflag=direct status=none)
}
# divergence_oracle NAME : "OFFSET LENGTH GROUPS" of NAME's ranges whose copies differ, from the
# device reads in $D/probe.copies; contiguous sectors with the same grouping make one range.
divergence_oracle() {
  awk -v n="$1" '$1 == n { sha[$2, $3] = $4; offs[$2] = 1; if ($3 > maxm) maxm = $3 }
    END {
      cnt = 0
      for (o in offs) list[++cnt] = o + 0
      # sort offsets
      for (i = 2; i <= cnt; i++) { v = list[i]; j = i - 1; while (j > 0 && list[j] > v) { list[j + 1] = list[j]; j-- } list[j + 1] = v }
      start = -1
      for (i = 1; i <= cnt; i++) {
        o = list[i]; g = ""; ng = 0; delete seen
        for (m = 1; m <= maxm; m++) {
          if (m in seen) continue
          grp = "[" m; seen[m] = 1
          for (k = m + 1; k <= maxm; k++) if (!(k in seen) && sha[o, k] == sha[o, m]) { grp = grp "," k; seen[k] = 1 }
          g = g (ng++ ? "," : "") grp "]"
        }
        if (ng < 2) g = ""
        if (g != "" && start >= 0 && g == cur && o == prev + 4096) { prev = o; continue }
        if (start >= 0) print start, prev + 4096 - start, "[" cur "]"
        start = -1
        if (g != "") { start = o; prev = o; cur = g }
      }
      if (start >= 0) print start, prev + 4096 - start, "[" cur "]"
    }' "$D/probe.copies"
}

run_pass() {
  PASS=$1
  export VMCSUM_STATE_DIR=$IT_TMP/state.$PASS # the contract's state, isolated per pass
  mkdir -p "$VMCSUM_STATE_DIR"
  local t0=$SECONDS l

  # --- raid1 over two devices --------------------------------------------------------------------
  new_fs raid1 2 -d raid1 -m raid1
  dwrite "$MNT/m1.raw" 256K 0xaa   # btrfs/140: the first 64 KiB of mirror 1
  dwrite "$MNT/m2.raw" 256K 0xaa   # the same on the second copy (issue 19's first case)
  dwrite "$MNT/same.raw" 256K 0xaa # btrfs/268: both copies of a block, same bytes
  dwrite "$MNT/fills.raw" 256K 0xaa # btrfs/265-268's fills, a different byte on each copy
  touch "$MNT/comp1.raw" "$MNT/compall.raw"
  btrfs property set "$MNT/comp1.raw" compression zstd
  btrfs property set "$MNT/compall.raw" compression zstd
  bwrite "$MNT/comp1.raw" 128K 0xaa # btrfs/270: buffered, compressed
  bwrite "$MNT/compall.raw" 128K 0xaa
  dwrite "$MNT/ref.raw" 256K 0xaa
  cp --reflink=always "$MNT/ref.raw" "$MNT/ref2.raw"
  # NOCOW: chattr +C on the empty file, then written; NODATASUM: created under -o nodatasum.
  touch "$MNT/nocow.raw" "$MNT/nocow_clean.raw"
  chattr +C "$MNT/nocow.raw" "$MNT/nocow_clean.raw"
  dwrite "$MNT/nocow.raw" 256K 0xaa
  dwrite "$MNT/nocow_clean.raw" 64K 0xaa
  mount -o remount,nodatasum "$MNT"
  dwrite "$MNT/nodsum.raw" 128K 0xaa
  mount -o remount,datasum "$MNT"
  sync
  btrfs subvolume snapshot "$MNT" "$MNT/snap" >/dev/null
  sync
  plan "$MNT/m1.raw" 0 65536 1 0xbb
  plan "$MNT/m2.raw" 65536 65536 2 0xbb
  plan "$MNT/same.raw" 0 4096 1,2 0xba
  plan "$MNT/same.raw" 131072 4096 1,2 0xba
  plan "$MNT/fills.raw" 8192 8192 1 0xbb # copies that differ, none matching: the shape of the
  plan "$MNT/fills.raw" 8192 8192 2 0xbc # race's signature, but each copy one byte repeated
  local comp1 compall
  comp1=$(plan_compressed "$MNT/comp1.raw" 1 0xbb)
  compall=$(plan_compressed "$MNT/compall.raw" 1 0xbb) # different bytes on each copy:
  plan_compressed "$MNT/compall.raw" 2 0xbc >/dev/null # the race's signature, yet compressed
  plan "$MNT/ref.raw" 32768 16384 2 0xbd # a shared extent: ref.raw, ref2.raw, snap/ref.raw
  plan "$MNT/nocow.raw" 65536 65536 2 0xbb
  plan "$MNT/nocow.raw" 196608 4096 1 0xbc
  plan "$MNT/nodsum.raw" 0 4096 1 0xbb
  probe "$MNT/nocow.raw"
  probe "$MNT/nocow_clean.raw"
  probe "$MNT/nodsum.raw"
  apply_damage
  local -a files=(m1.raw m2.raw same.raw fills.raw comp1.raw compall.raw ref.raw ref2.raw snap/ref.raw
    nocow.raw nocow_clean.raw nodsum.raw)
  scrub "${files[@]/#/$MNT/}"
  common_checks raid1
  offsets_eq raid1 m1.raw 0 65536
  one_good raid1 m1.raw
  check_eq "$PASS raid1: m1.raw: mirror 1 fails, mirror 2 matches" '["false true"]' \
    "$(jb m1.raw '[.[] | "\(.copies[] | select(.mirror == 1) | .matches) \(.copies[] | select(.mirror == 2) | .matches)"] | unique')"
  offsets_eq raid1 m2.raw 65536 65536
  one_good raid1 m2.raw
  check_eq "$PASS raid1: m2.raw: mirror 2 fails, mirror 1 matches" '["true false"]' \
    "$(jb m2.raw '[.[] | "\(.copies[] | select(.mirror == 1) | .matches) \(.copies[] | select(.mirror == 2) | .matches)"] | unique')"
  offsets_eq raid1 same.raw 0 4096 131072 4096
  check_eq "$PASS raid1: same.raw: both copies fail, identical, identical-bad-copies" '["false true true"]' \
    "$(jb same.raw '[.[] | "\(any(.copies[]; .matches)) \(.copies_identical) \((.evidence_codes // []) | index("identical-bad-copies") != null)"] | unique')"
  if [[ $PASS == gap ]]; then
    check_eq "$PASS raid1: same.raw: undetermined (no copy matches, no race evidence)" '["undetermined"]' \
      "$(jb same.raw '[.[].class] | unique')"
  fi
  offsets_eq raid1 fills.raw 8192 8192
  check_eq "$PASS raid1: fills.raw: copies differ, none matches, uniform-copy, no race-signature" \
    '["false false true false"]' \
    "$(jb fills.raw '[.[] | "\(any(.copies[]; .matches)) \(.copies_identical) \((.evidence_codes // []) | index("uniform-copy") != null) \((.evidence_codes // []) | index("race-signature") != null)"] | unique')"
  if [[ $PASS == gap ]]; then
    check_eq "$PASS raid1: fills.raw: undetermined (a fill is no version of written data)" '["undetermined"]' \
      "$(jb fills.raw '[.[].class] | unique')"
  fi
  eio_all raid1 fills.raw 8192 12288
  check_eq "$PASS raid1: comp1.raw: the damaged on-disk sector, media, compressed-extent" \
    "[\"$comp1 media true\"]" \
    "$(jb comp1.raw '[.[] | "\(.logical) \(.class) \((.evidence_codes // []) | index("compressed-extent") != null)"] | unique')"
  check_eq "$PASS raid1: compall.raw: every copy bad, different bytes, still media (compressed-extent)" \
    "[\"$compall media true false\"]" \
    "$(jb compall.raw '[.[] | "\(.logical) \(.class) \((.evidence_codes // []) | index("compressed-extent") != null) \(any(.copies[]; .matches))"] | unique')"
  for l in ref.raw ref2.raw snap/ref.raw; do
    offsets_eq raid1 "$l" 32768 16384
    one_good raid1 "$l"
  done
  check_eq "$PASS raid1: the shared extent: one logical set through all three files" \
    "$(jb ref.raw '[.[].logical]')" "$(jb snap/ref.raw '[.[].logical]')"
  for l in nocow.raw nocow_clean.raw nodsum.raw; do
    check_eq "$PASS raid1: $l (no checksum): nothing reported bad" 0 "$(jb "$l" length)"
  done
  check_eq "$PASS raid1: nocow_clean.raw: no divergent range" 0 "$(jdiv nocow_clean.raw length)"
  divergence_oracle nocow.raw >"$D/div.nocow"
  divergence_oracle nodsum.raw >"$D/div.nodsum"
  check_eq "$PASS raid1: device reads: nocow.raw copies differ at 64K+64K and 192K+4K" \
    "65536 65536 [[1],[2]],196608 4096 [[1],[2]]" "$(paste -sd, "$D/div.nocow")"
  check_eq "$PASS raid1: nocow.raw: divergent ranges = the device reads (offset length groups)" \
    "$(paste -sd, "$D/div.nocow")" \
    "$(jdiv nocow.raw '[.[] | "\(.offset) \(.length) \(.groups | tojson)"] | join(",")' | tr -d '"')"
  check_eq "$PASS raid1: nodsum.raw: divergent ranges = the device reads" \
    "$(paste -sd, "$D/div.nodsum")" \
    "$(jdiv nodsum.raw '[.[] | "\(.offset) \(.length) \(.groups | tojson)"] | join(",")' | tr -d '"')"
  if [[ $PASS == gap ]]; then
    check_eq "$PASS raid1: divergent ranges of two copies: undetermined (no signature)" '["undetermined"]' \
      "$(jq -c '[.files[] | (.divergent // [])[] | .class] | unique' "$D/scrub.json" 2>/dev/null || echo '?')"
  else
    check_eq "$PASS raid1: divergent ranges: media, written-with-fallback (6.18.16+ profile rule)" '["media true"]' \
      "$(jq -c '[.files[] | (.divergent // [])[] | "\(.class) \((.evidence_codes // []) | index("written-with-fallback") != null)"] | unique' "$D/scrub.json" 2>/dev/null || echo '?')"
  fi
  eio_all raid1 same.raw 0 131072
  eio_all raid1 compall.raw 0
  content_ok raid1 m1.raw 0xaa
  content_ok raid1 m2.raw 0xaa
  content_ok raid1 ref2.raw 0xaa
  content_ok raid1 comp1.raw 0xaa

  # --- dup on one device -------------------------------------------------------------------------
  new_fs dup 1 -d dup -m dup
  dwrite "$MNT/dup.raw" 256K 0xaa
  dwrite "$MNT/dupsame.raw" 128K 0xaa
  sync
  plan "$MNT/dup.raw" 0 65536 2 0xbb
  plan "$MNT/dupsame.raw" 4096 4096 all 0xba
  apply_damage
  scrub "$MNT/dup.raw" "$MNT/dupsame.raw"
  common_checks dup
  offsets_eq dup dup.raw 0 65536
  one_good dup dup.raw
  offsets_eq dup dupsame.raw 4096 4096
  if [[ $PASS == gap ]]; then
    check_eq "$PASS dup: dupsame.raw: undetermined, identical-bad-copies" '["undetermined true"]' \
      "$(jb dupsame.raw '[.[] | "\(.class) \((.evidence_codes // []) | index("identical-bad-copies") != null)"] | unique')"
  fi
  eio_all dup dupsame.raw 4096
  content_ok dup dup.raw 0xaa

  # --- raid10 over four devices: damage across stripe boundaries (64 KiB stripes) -----------------
  new_fs raid10 4 -d raid10 -m raid10
  dwrite "$MNT/r10.raw" 512K 0xaa
  sync
  plan "$MNT/r10.raw" 32768 131072 1 0xbb  # crosses the stripe boundaries at 64 KiB and 128 KiB
  plan "$MNT/r10.raw" 229376 65536 2 0xbc  # crosses 256 KiB, on the other copy
  apply_damage
  check "$PASS raid10: the damage spans more than one device pair" \
    test "$(awk '{print $1}' "$D/plan" | while read -r l; do copies_of "$l" "${DEVS[0]}"; done | awk '{print $2}' | sort -u | wc -l)" -ge 3
  scrub "$MNT/r10.raw"
  common_checks raid10
  offsets_eq raid10 r10.raw 32768 131072 229376 65536
  one_good raid10 r10.raw
  content_ok raid10 r10.raw 0xaa

  # --- raid1c3 over three devices: btrfs/266-267 interleaved damage -------------------------------
  new_fs raid1c3 3 -d raid1c3 -m raid1c3
  dwrite "$MNT/il.raw" 256K 0xaa
  sync
  plan "$MNT/il.raw" 0 65536 3 0xbd
  plan "$MNT/il.raw" 0 131072 1 0xba
  plan "$MNT/il.raw" 65536 131072 2 0xbb
  plan "$MNT/il.raw" 131072 131072 3 0xbc
  apply_damage
  scrub "$MNT/il.raw"
  common_checks raid1c3
  offsets_eq raid1c3 il.raw 0 262144
  one_good raid1c3 il.raw
  check_eq "$PASS raid1c3: il.raw: bad mirrors per 64 KiB run (1+3, 1+2, 2+3, 3)" \
    '["0 1,3","65536 1,2","131072 2,3","196608 3"]' \
    "$(jb il.raw '[.[] | [.offset - .offset % 65536, ([.copies[] | select(.matches | not) | .mirror] | sort | map(tostring) | join(","))]] | unique | map("\(.[0]) \(.[1])")')"
  content_ok raid1c3 il.raw 0xaa
  note "$PASS pass: $((SECONDS - t0)) s"
}

run_pass gap
run_pass recorded

# --- metadata bad on every copy: a leaf of the checksum tree --------------------------------------
# Both copies (dup) of a non-root csum tree leaf overwritten: btrfs cannot read the checksums of
# the sectors it covers. Oracle: the kernel's EIO on an O_DIRECT read of the file. vmcsum cannot
# finish the file (exit 3), and says so as a disk problem (severity critical), not as "not
# scrubbed" (the old scrub: warning, and the bare ioctl error).
PASS=meta
export VMCSUM_STATE_DIR=$IT_TMP/state.meta
mkdir -p "$VMCSUM_STATE_DIR"
new_fs meta 1 -d single -m dup
dd if=/dev/urandom of="$MNT/big.raw" bs=1M count=64 status=none
sync
unmount_btrfs
btrfs inspect-internal dump-tree -t csum "${DEVS[0]}" >"$D/csum-tree"
leaf=$(awk '$1 == "leaf" { print $2 }' "$D/csum-tree" | sed -n 2p)
check "meta: the checksum tree has a second leaf (a node above it)" test -n "$leaf"
btrfs-map-logical -l "$leaf" -b 16384 "${DEVS[0]}" >"$D/leaf-copies" 2>/dev/null || true
check_eq "meta: the leaf has two copies (dup)" 2 "$(awk '$1 == "mirror"' "$D/leaf-copies" | wc -l)"
awk '$1 == "mirror" { print $6, $8 }' "$D/leaf-copies" | while read -r phys dev; do
  dd if=/dev/urandom of="$dev" bs=16384 count=1 seek="$phys" oflag=seek_bytes,direct conv=notrunc,fsync status=none
done
_it_flushbufs "${DEVS[@]}"
mount_btrfs
drop_caches
check "meta: oracle: the kernel's EIO on an O_DIRECT read of the file" \
  bash -c "! dd if='$MNT/big.raw' of=/dev/null bs=1M iflag=direct status=none 2>/dev/null"
scrub "$MNT/big.raw"
check_eq "meta: could not complete: exit 3" 3 "$(cat "$D/scrub.rc")"
check_eq "meta: severity critical, not examined" "critical false" \
  "$(jq -r '.files[0] | "\(.severity) \(.examined)"' "$D/scrub.json")"
check "meta: the error says the metadata could not be read" \
  jq -e '.files[0].error | test("metadata") and test("btrfs check")' "$D/scrub.json"
check_schema --by-name "$IT_TMP"/json-docs/*
finish
