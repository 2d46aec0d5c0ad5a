#!/usr/bin/env bash
# The scrub foundations (chunk map, csum tree lookup, the four checksums) on real btrfs, through
# tests/tools/core_probe, held against btrfs-progs as the oracle:
#  * each sector's copies (mirror, device, physical) = btrfs-map-logical,
#  * the csum-tree csum of each sector (or its absence) = dump-tree -t 7 --csum-items,
#  * on a clean filesystem every copy's computed csum = the stored one, and btrfs check
#    --check-data-csum finds nothing,
#  * after damaging mirror 1 of one sector, our csum of mirror 1 = the "csum" btrfs check
#    reports for it, the other mirrors still match, nothing else changed.
# Profiles single, dup, raid1, raid1c3, raid10, raid0; checksums crc32c, xxhash, sha256, blake2.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq filefrag fallocate btrfs btrfs-map-logical chattr
: "${VMCSUM_TOOLS:?VMCSUM_TOOLS must point at the test tools directory}"
PROBE=$VMCSUM_TOOLS/core_probe
[[ -x $PROBE ]] || skip "core_probe not built: $PROBE"

probe() { # FILE OUT
  "$PROBE" "$1" >"$2"
}

# "logical csum" for every csum dump-tree prints ("[131072000] 0xd83a6398 [131076096] ...").
dump_csums() { # DEV OUT
  btrfs inspect-internal dump-tree -t 7 --csum-items "$1" 2>/dev/null |
    grep -oE '\[[0-9]+\] 0x[0-9a-f]+' | sed -E 's/^\[([0-9]+)\] 0x/\1 /' >"$2"
}

# "logical csum-or-none" per sector of a probe output, and the same from dump-tree's table.
probe_csums() { # PROBE_OUT
  jq -r 'select(.logical) | "\(.logical) \(.csum // "none")"' "$1"
}
oracle_csums() { # PROBE_OUT DUMP_TABLE
  awk 'NR == FNR { c[$1] = $2; next } { print $1, (($1 in c) ? c[$1] : "none") }' "$2" \
    <(jq -r 'select(.logical) | .logical' "$1")
}

# Sampled sectors: the first and last sector of every 64 KiB of the first MiB (16 RAID0/RAID10
# stripe units and their boundaries), and the file's last sector (the end of an extent).
SAMPLE='def sampled: .logical and ((.file_offset < 1048576 and ((.file_offset / 4096) % 16 == 0
  or (.file_offset / 4096) % 16 == 15)) or .file_offset == 3145728 - 4096);'

# "logical mirror device physical" for the sampled sectors.
probe_copies() { # PROBE_OUT
  jq -r "$SAMPLE"' select(sampled) | .logical as $l | .copies[] | "\($l) \(.mirror) \(.device) \(.physical)"' "$1"
}
# lib.sh's copies_of without -b: btrfs-map-logical (6.2) then maps nodesize bytes and exits 1
# for the last sectors of an extent, though it prints the right mirrors; map one sector instead.
copies_of_sector() { # LOGICAL DEV
  btrfs-map-logical -l "$1" -b 4096 "$2" 2>&1 | awk -v l="$1" '
    $1 == "mirror" && $3 == "logical" && $5 == "physical" && $7 == "device" && $4 == l {
      print l, $2, $8, $6; n++
    }
    END { if (n == 0) print l, "btrfs-map-logical printed no copy" }'
}
oracle_copies() { # PROBE_OUT DEV
  local l
  for l in $(jq -r "$SAMPLE"' select(sampled) | .logical' "$1"); do
    copies_of_sector "$l" "$2"
  done
}

# btrfs check --check-data-csum's data-csum complaints: "mirror 1 bytenr L csum 0x.. expected csum 0x..".
check_data_csum() { # DEV OUT ; returns btrfs check's exit status
  local rc=0
  btrfs check --check-data-csum "$1" >"$2.full" 2>&1 || rc=$?
  grep -E '^mirror [0-9]+ bytenr [0-9]+ csum ' "$2.full" >"$2" || true
  return $rc
}

# One filesystem: NAME COPIES NDEV mkfs-args...
run_config() {
  local name=$1 ncopies=$2 ndev=$3
  shift 3
  local t0=$SECONDS
  make_btrfs --devices "$ndev" -- "$@"
  local d=$IT_TMP/$name
  mkdir -p "$d"
  # data: 3 MiB, so csum lookups in 1 MiB batches start in the middle of a csum item
  dd if=/dev/urandom of="$MNT/data" bs=1M count=3 status=none
  touch "$MNT/nocow" && chattr +C "$MNT/nocow"
  dd if=/dev/urandom of="$MNT/nocow" bs=64K count=1 conv=notrunc status=none
  # prealloc: 4 written sectors, 28 unwritten (preallocated) ones
  fallocate -l 128K "$MNT/prealloc"
  dd if=/dev/urandom of="$MNT/prealloc" bs=4K count=4 conv=notrunc status=none
  sync

  local f
  for f in data nocow prealloc; do
    check "$name: core_probe $f" probe "$MNT/$f" "$d/$f.json"
  done
  check_eq "$name: one line per sector of data" 768 "$(jq -s '[.[] | select(.logical)] | length' "$d/data.json")"
  check_eq "$name: $ncopies copies of every sector" "[$ncopies]" \
    "$(jq -sc '[.[] | .copies | length] | unique' "$d/data.json" "$d/nocow.json" "$d/prealloc.json")"
  check_eq "$name: every data sector has a csum" 0 "$(jq -s '[.[] | select(.csum == null)] | length' "$d/data.json")"
  check_eq "$name: clean fs: every copy matches its stored csum" 0 \
    "$(jq -s '[.[] | select(.csum != null) | .copies[] | select(.match != true)] | length' "$d/data.json" "$d/prealloc.json")"
  check_eq "$name: NOCOW file: no sector has a csum" '[null]' "$(jq -sc '[.[] | .csum] | unique' "$d/nocow.json")"
  check_eq "$name: NOCOW file: 16 sectors" 16 "$(jq -s length "$d/nocow.json")"
  check_eq "$name: prealloc file: written sectors have csums, unwritten ones do not" \
    "$(printf 'true %.0s' {1..4})$(printf 'false %.0s' {1..28})" \
    "$(jq -j '"\(.csum != null) "' "$d/prealloc.json")"

  unmount_btrfs
  local dev0=${DEVS[0]}
  dump_csums "$dev0" "$d/dump.txt"
  for f in data nocow prealloc; do
    probe_csums "$d/$f.json" >"$d/$f.csums"
    oracle_csums "$d/$f.json" "$d/dump.txt" >"$d/$f.csums.oracle"
    check "$name: $f: stored csums = dump-tree --csum-items" diff -u "$d/$f.csums.oracle" "$d/$f.csums"
  done
  for f in data nocow; do
    probe_copies "$d/$f.json" >"$d/$f.copies"
    oracle_copies "$d/$f.json" "$dev0" >"$d/$f.copies.oracle"
    check "$name: $f: copies = btrfs-map-logical ($(wc -l <"$d/$f.copies") sampled copies)" \
      diff -u "$d/$f.copies.oracle" "$d/$f.copies"
  done
  check "$name: clean fs: btrfs check --check-data-csum passes" check_data_csum "$dev0" "$d/check0"
  check_eq "$name: clean fs: btrfs check reports no csum error" "" "$(cat "$d/check0")"
  mount_btrfs

  # Damage mirror 1 of the sector at offset 8192: like media corruption of one copy.
  damage_sectors "$MNT/data" 8192 1 one:1
  local bad=${DAMAGED[0]}
  check_eq "$name: damaged logical = probe's logical of offset 8192" "$bad" \
    "$(jq -r 'select(.file_offset == 8192) | .logical' "$d/data.json")"
  check "$name: core_probe after damage" probe "$MNT/data" "$d/data.after.json"
  local want_matches
  want_matches=$(jq -nc --argjson n "$ncopies" '[false] + [range(1; $n) | true]')
  check_eq "$name: damaged sector: mirror 1 differs, the other mirrors match" "$want_matches" \
    "$(jq -c --argjson l "$bad" 'select(.logical == $l) | [.copies[] | .match]' "$d/data.after.json")"
  check_eq "$name: every other sector still matches on every copy" 0 \
    "$(jq -s --argjson l "$bad" '[.[] | select(.logical != $l) | .copies[] | select(.match != true)] | length' "$d/data.after.json")"
  check_eq "$name: the stored csums did not change" "$(probe_csums "$d/data.json")" "$(probe_csums "$d/data.after.json")"

  unmount_btrfs
  check_fails "$name: damaged fs: btrfs check --check-data-csum fails" check_data_csum "$dev0" "$d/check1"
  check_eq "$name: btrfs check reports mirror 1 with our csum of it and the stored csum" \
    "$(cat "$d/check1")" \
    "$(jq -r --argjson l "$bad" 'select(.logical == $l) | .csum as $want | .copies[] | select(.match == false)
         | "mirror \(.mirror) bytenr \($l) csum 0x\(.csum) expected csum 0x\($want)"' "$d/data.after.json")"
  note "$name: $((SECONDS - t0)) s"
}

run_config single 1 1 -d single -m single --csum crc32c
run_config dup 2 1 -d dup -m dup --csum xxhash
run_config raid1 2 2 -d raid1 -m raid1 --csum sha256
run_config raid1c3 3 3 -d raid1c3 -m raid1c3 --csum blake2
run_config raid10 2 4 -d raid10 -m raid10 --csum blake2
run_config raid0 1 2 -d raid0 -m raid1 --csum crc32c
finish
