#!/usr/bin/env bash
# Benchmark: `vmcsum repair` of an image whose every extent holds a false mismatch (the same
# garbage on both copies of one sector per extent, as the race leaves it), against the obvious
# baseline on the same data in the same run: `cp --reflink=never --sparse=always` of the image
# and `sync` (one read and one write of every byte). repair reads each byte, writes the backup
# and the image, reads both back and scrubs the ranges per copy, so expect about 3-4x; peak
# resident memory must stay bounded (issue 5/6: <= 64 MiB whatever the size).
#   bench/repair_cost.sh [MIB] [RUNS]     defaults 512 3; run as root; not a test
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mib=${1:-512} runs=${2:-3}
bench_require jq bc mkfs.btrfs losetup filefrag btrfs-map-logical /usr/bin/time
bench_loop_btrfs $((mib * 6 + 1024)) dup --direct-io
img=$BENCH_MNT/vm.raw

make_image() {
  rm -f "$img"
  # 16 MiB writes: extents of up to 16 MiB, each gets one damaged sector.
  dd if=/dev/urandom of="$img" bs=16M count=$((mib / 16)) status=none
  sync
}

damage_every_extent() {
  local logicals=() l
  while read -r l; do logicals+=("$l"); done < <(filefrag -v -b4096 "$img" |
    awk '/^ *[0-9]+:/ { gsub(/[.:]/, " "); print ($4 + 1) * 4096 }')
  umount "$BENCH_MNT"
  head -c 4096 /dev/urandom >"$BENCH_TMP/garbage"
  for l in "${logicals[@]}"; do
    btrfs-map-logical -l "$l" -b 4096 "$BENCH_LOOP" 2>/dev/null |
      awk '$1 == "mirror" { print $8, $6 }' |
      while read -r dev phys; do
        dd if="$BENCH_TMP/garbage" of="$dev" bs=4096 seek="$phys" oflag=seek_bytes,direct \
          conv=notrunc status=none
      done
  done
  mount "$BENCH_LOOP" "$BENCH_MNT"
  echo "${#logicals[@]}"
}

declare -a cp_s=() rep_s=() rss=()
for ((r = 0; r < runs; r++)); do
  make_image
  # The baseline reads the same bytes before they are damaged (cp stops at the first EIO).
  bench_cold
  t0=$(bench_now)
  cp --reflink=never --sparse=always "$img" "$BENCH_MNT/copy.raw"
  sync
  t1=$(bench_now)
  rm -f "$BENCH_MNT/copy.raw"
  sync
  n=$(damage_every_extent)
  rm -rf "$BENCH_TMP/backup"
  bench_cold
  t2=$(bench_now)
  /usr/bin/time -f "%M" -o "$BENCH_TMP/rss" "$VMCSUM" --json repair --no-progress \
    --backup-dir "$BENCH_TMP/backup" "$img" >"$BENCH_TMP/repair.json" || true
  t3=$(bench_now)
  action=$(jq -r '.files[0].action' "$BENCH_TMP/repair.json")
  [[ $action == repaired ]] || { echo "run $r: repair said $action" >&2; jq . "$BENCH_TMP/repair.json" >&2; exit 1; }
  echo "run $r: $n damaged extents, $(jq '.files[0].repaired | length' "$BENCH_TMP/repair.json") sectors repaired"
  cp_s+=("$(echo "$t1 - $t0" | bc -l)")
  rep_s+=("$(echo "$t3 - $t2" | bc -l)")
  rss+=("$(cat "$BENCH_TMP/rss")")
done
cp_m=$(printf '%s\n' "${cp_s[@]}" | bench_median)
rep_m=$(printf '%s\n' "${rep_s[@]}" | bench_median)
rss_max=$(printf '%s\n' "${rss[@]}" | sort -g | tail -1)
awk -v mib="$mib" -v cp="$cp_m" -v rep="$rep_m" -v rss="$rss_max" -v runs="$runs" 'BEGIN {
  printf "image: %d MiB, dup, every extent damaged (median of %d runs, cold cache)\n", mib, runs
  printf "cp --reflink=never --sparse=always + sync: %.2f s (%.0f MiB/s)\n", cp, mib / cp
  printf "vmcsum repair (backup, rewrite, verify):   %.2f s (%.0f MiB/s)\n", rep, mib / rep
  printf "ratio repair/cp time: %.2f\n", rep / cp
  printf "vmcsum peak resident memory: %.1f MiB (goal <= 64)\n", rss / 1024
}'
