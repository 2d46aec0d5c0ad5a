#!/usr/bin/env bash
# vmcsum scrub on real btrfs with injected damage, held against two oracles:
#  * the bad-sector list (logical addresses) = what btrfs check --check-data-csum reports on the
#    unmounted filesystem,
#  * the sectors of no matching copy are exactly where a read through the filesystem gives EIO
#    (dd iflag=direct), and the kernel-verified pass says so (findings mode, the default, and a
#    full pass, which also finds no EIO the per-copy pass missed).
# Classes (issue 19: deliberate damage is never the race): every copy overwritten with the same
# bytes -> undetermined (no signature, no O_DIRECT writer; fstests btrfs/268 damages raid1 so);
# one copy of a file -> media, repairable; a compressed extent -> media (compressed-extent).
# Profiles single, dup, raid1 (two devices), raid1c3, raid10 (four devices); checksums crc32c,
# xxhash, sha256, blake2; a compressed file (damaged on disk too), a file with holes and a
# preallocated range. Every document is validated against tests/schema/scrub.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq filefrag fallocate btrfs btrfs-map-logical dd
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"

scrub_json() { # OUT ARGS... ; records the exit status in OUT.rc
  local out=$1 rc=0
  shift
  "$VMCSUM" --json scrub --no-progress "$@" >"$out" 2>"$out.err" || rc=$?
  echo "$rc" >"$out.rc"
  # A run killed by a signal (an abort: a sanitizer's report, std::terminate) says why only on
  # its stderr, which the test directory's cleanup removes: into the log with it.
  if ((rc >= 128)); then
    note "vmcsum scrub $* ended with status $rc; its stderr (last 60 lines):"
    tail -n 60 "$out.err" | sed 's/^/#   /' >&2
  fi
}

# Overwrites sector LOGICAL on every copy (all) or on mirror N (one:N), below btrfs.
damage_logical() { # LOGICAL MODE
  local logical=$1 mode=$2 copies mirror dev phys
  unmount_btrfs
  copies=$(copies_of "$logical" "${DEVS[0]}")
  head -c 4096 /dev/urandom >"$IT_TMP/garbage.logical"
  while read -r mirror dev phys; do
    if [[ $mode == all || $mode == "one:$mirror" ]]; then
      dd if="$IT_TMP/garbage.logical" of="$dev" bs=4096 count=1 seek="$phys" \
        oflag=seek_bytes,direct conv=notrunc,fsync status=none
    fi
  done <<<"$copies"
  mount_btrfs
  drop_caches
}

# "bytenr" of every data-csum complaint of btrfs check, unique and sorted.
check_bad_logicals() { # DEV OUT
  btrfs check --check-data-csum "$1" >"$2.full" 2>&1 || true
  grep -oE '^mirror [0-9]+ bytenr [0-9]+ csum ' "$2.full" | awk '{print $4}' | sort -n -u >"$2"
}

eio_at() { # FILE OFFSET ; succeeds when an O_DIRECT read of that sector gives an error
  ! dd if="$1" of=/dev/null bs=4096 count=1 skip=$(($2 / 4096)) iflag=direct status=none 2>/dev/null
}

run_config() { # NAME NDEV NCOPIES mkfs-args...
  local name=$1 ndev=$2 ncopies=$3
  shift 3
  local t0=$SECONDS d=$IT_TMP/$1
  mkdir -p "$d"
  make_btrfs --devices "$ndev" -- "$@"
  dd if=/dev/urandom of="$MNT/all.raw" bs=1M count=1 status=none
  dd if=/dev/urandom of="$MNT/one.raw" bs=1M count=1 status=none
  touch "$MNT/comp.raw"
  btrfs property set "$MNT/comp.raw" compression zstd
  head -c 1M < <(yes "compressible text for zstd, vmcsum scrub") >"$MNT/comp.raw"
  # holes and a preallocated range: data at 1 MiB, hole before, 256 KiB unwritten at 2 MiB
  truncate -s 4M "$MNT/holes.raw"
  dd if=/dev/urandom of="$MNT/holes.raw" bs=64K count=1 seek=16 conv=notrunc status=none
  fallocate -o 2M -l 256K "$MNT/holes.raw"
  sync

  scrub_json "$d/clean.json" "$MNT"
  check_eq "$name: clean: exit 0" 0 "$(cat "$d/clean.json.rc")"
  check_eq "$name: clean: schema" vmcsum.scrub/2 "$(jq -r .schema "$d/clean.json")"
  if [[ $name == single ]]; then
    # A state directory that cannot be used (a file in its place): the warnings it gives make
    # the clean run's exit status 1, and the document's notes say why.
    : >"$d/state-is-a-file"
    scrub_json "$d/nostate.json" --state-dir "$d/state-is-a-file" "$MNT"
    check_eq "$name: clean, unusable state directory: exit 1, notes say so" "1 true" \
      "$(cat "$d/nostate.json.rc") $(jq '[.notes[] | select(test("not a directory|Not a directory"))] | length > 0' "$d/nostate.json")"
  fi
  check_eq "$name: clean: no bad sector" 0 "$(jq '[.files[].bad[]] | length' "$d/clean.json")"
  check_eq "$name: clean: $ncopies copies" "[$ncopies]" \
    "$(jq -c '[.files[] | select(.path | test("(all|one|holes)")) | .copies] | unique' "$d/clean.json")"
  check_eq "$name: all.raw: 1 MiB checked" 1048576 \
    "$(jq '.files[] | select(.path | endswith("/all.raw")) | .checked_bytes' "$d/clean.json")"
  check "$name: comp.raw: compressed bytes verified" \
    jq -e '.files[] | select(.path | endswith("/comp.raw")) | .compressed_bytes > 0 and .checked_bytes > 0' "$d/clean.json"
  check_eq "$name: holes.raw: 64 KiB checked, 256 KiB preallocated skipped" "65536 262144" \
    "$(jq -r '.files[] | select(.path | endswith("/holes.raw")) | "\(.checked_bytes) \(.skipped_bytes)"' "$d/clean.json")"

  damage_sectors "$MNT/all.raw" 8192 2 all
  if ((ncopies > 1)); then
    damage_sectors "$MNT/one.raw" 4096 1 one:1
  fi
  local comp_logical
  comp_logical=$(filefrag -v -b4096 "$MNT/comp.raw" | awk '/encoded/ { gsub(/[.:]/, " "); print $4 * 4096; exit }')
  if [[ -n $comp_logical ]]; then
    damage_logical "$comp_logical" all
  else
    note "$name: comp.raw has no encoded extent"
  fi

  scrub_json "$d/bad.json" --no-kernel-pass "$MNT"
  check_eq "$name: damaged: exit 2" 2 "$(cat "$d/bad.json.rc")"
  local want_all=undetermined
  check_eq "$name: all.raw: offsets 8192 12288, $want_all" "8192 $want_all,12288 $want_all" \
    "$(jq -r '[.files[] | select(.path | endswith("/all.raw")) | .bad[] | "\(.offset) \(.class)"] | join(",")' "$d/bad.json")"
  check_eq "$name: all.raw: no copy matches" "[false]" \
    "$(jq -c '[.files[] | select(.path | endswith("/all.raw")) | .bad[].copies[].matches] | unique' "$d/bad.json")"
  if ((ncopies > 1)); then
    check_eq "$name: all.raw: copies identical" "[true]" \
      "$(jq -c '[.files[] | select(.path | endswith("/all.raw")) | .bad[].copies_identical] | unique' "$d/bad.json")"
    check_eq "$name: one.raw: offset 4096, media, repairable, mirror 1 bad" "4096 media true false" \
      "$(jq -r '.files[] | select(.path | endswith("/one.raw")) | .bad[] | "\(.offset) \(.class) \(.repairable) \(.copies[0].matches)"' "$d/bad.json")"
  fi
  if [[ -n $comp_logical ]]; then
    check_eq "$name: comp.raw: the damaged on-disk sector found, compressed" "$comp_logical true" \
      "$(jq -r '.files[] | select(.path | endswith("/comp.raw")) | .bad[] | "\(.logical) \(.compressed)"' "$d/bad.json")"
    check_eq "$name: comp.raw: media, the race excluded by the compressed extent" "media true" \
      "$(jq -r '.files[] | select(.path | endswith("/comp.raw")) | .bad[] | "\(.class) \(.evidence_codes | index("compressed-extent") != null)"' "$d/bad.json")"
  fi
  check_eq "$name: no artificial damage is called false-mismatch" 0 \
    "$(jq '[.files[].bad[] | select(.class == "false-mismatch")] | length' "$d/bad.json")"
  check_eq "$name: holes.raw: nothing bad" 0 \
    "$(jq '.files[] | select(.path | endswith("/holes.raw")) | .bad | length' "$d/bad.json")"

  # oracle 1: btrfs check on the unmounted filesystem
  jq -r '.files[].bad[].logical' "$d/bad.json" | sort -n -u >"$d/ours"
  unmount_btrfs
  check_bad_logicals "${DEVS[0]}" "$d/check"
  mount_btrfs
  drop_caches
  check "$name: bad logicals = btrfs check --check-data-csum ($(wc -l <"$d/check"))" \
    diff -u "$d/check" "$d/ours"

  # oracle 2: the kernel's EIO, by dd and by vmcsum's own kernel pass
  check "$name: all.raw: EIO at 8192" eio_at "$MNT/all.raw" 8192
  check "$name: all.raw: EIO at 12288" eio_at "$MNT/all.raw" 12288
  check_fails "$name: all.raw: no EIO at 0" eio_at "$MNT/all.raw" 0
  # The default kernel pass reads the findings only; then a full one reads every data range
  # (what remains to read after the findings run: it repaired one.raw and confirmed the rest).
  scrub_json "$d/kernel.json" "$MNT"
  check_eq "$name: kernel pass: exit 2" 2 "$(cat "$d/kernel.json.rc")"
  check_eq "$name: kernel pass: findings mode, run on every file" '["findings"]' \
    "$(jq -c '[.files[].kernel_pass | select(.run) | .mode] | unique' "$d/kernel.json")"
  check_eq "$name: kernel pass: EIO exactly where no copy matches" "[true]" \
    "$(jq -c '[.files[].bad[] | select(.compressed | not) | select(all(.copies[]; .matches | not)) | .kernel_eio] | unique' "$d/kernel.json")"
  scrub_json "$d/kernel_full.json" --kernel-pass=full "$MNT"
  check_eq "$name: full kernel pass: exit 2, mode full" "2 [\"full\"]" \
    "$(cat "$d/kernel_full.json.rc") $(jq -c '[.files[].kernel_pass.mode] | unique' "$d/kernel_full.json")"
  check_eq "$name: full kernel pass: EIO exactly where no copy matches" "[true]" \
    "$(jq -c '[.files[].bad[] | select(.compressed | not) | select(all(.copies[]; .matches | not)) | .kernel_eio] | unique' "$d/kernel_full.json")"
  check_eq "$name: full kernel pass: no EIO the per-copy pass missed" "[]" \
    "$(jq -c '[.files[].kernel_pass.eio_not_found_per_copy[]]' "$d/kernel_full.json")"
  if ((ncopies > 1)); then
    check_eq "$name: one.raw: no EIO (a good copy serves the read)" false \
      "$(jq '.files[] | select(.path | endswith("/one.raw")) | .bad[0].kernel_eio' "$d/kernel.json")"
    # Whether the kernel's read repaired mirror 1 depends on the mirror its PID picked
    # (repaired_by_read); either way the copies are reported as the per-copy pass saw them:
    # one bad, so not identical (after a repair by the read, the old scrub reported the copies
    # of its re-read: identical).
    check_eq "$name: one.raw: the copies as the per-copy pass saw them: not identical" false \
      "$(jq -r '.files[] | select(.path | endswith("/one.raw")) | .bad[0].copies_identical' "$d/kernel.json")"
    note "$name: one.raw: repaired_by_read $(jq -r '.files[] | select(.path | endswith("/one.raw")) | .bad[0].repaired_by_read' "$d/kernel.json")"
    check_fails "$name: one.raw: dd reads offset 4096" eio_at "$MNT/one.raw" 4096
  fi
  check_schema scrub "$d/clean.json" "$d/bad.json" "$d/kernel.json" "$d/kernel_full.json"
  note "$name: $((SECONDS - t0)) s"
}

run_config single 1 1 -d single -m single --csum crc32c
run_config dup 1 2 -d dup -m dup --csum xxhash
run_config raid1 2 2 -d raid1 -m raid1 --csum sha256
run_config raid1c3 3 3 -d raid1c3 -m raid1c3 --csum blake2
run_config raid10 4 2 -d raid10 -m raid10 --csum crc32c
finish
