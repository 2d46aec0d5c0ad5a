#!/usr/bin/env bash
# Benchmark (issue 16): `vmcsum repair` of an image with a few damaged extents against one
# `vmcsum scrub` of the same image in the same run (goal: repair <= 1.3x scrub), and against the
# obvious copy baseline, `cp --reflink=never --sparse=always` + `sync` (one read and one write of
# every byte). Repair scrubs the whole image once per copy, then re-verifies only what it reread
# or rewrote, so its cost over one scrub is the backup, the rewrite and the read-back of the
# damaged extents. Each run damages DAMAGED extents afresh (different garbage on each copy of one
# sector, as the race leaves it), times a cold scrub, then a cold repair of it. Peak resident
# memory must stay bounded (<= 64 MiB whatever the size).
#   bench/repair_cost.sh [MIB] [RUNS] [DAMAGED]   defaults 2048 3 4; run as root; not a test
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mib=${1:-2048} runs=${2:-3} damaged=${3:-4}
bench_require jq bc mkfs.btrfs losetup filefrag btrfs-map-logical /usr/bin/time
# dup: the image twice, its copy twice, the backup, and room for the rewritten extents.
bench_loop_btrfs $((mib * 5 + 1024)) dup --direct-io
img=$BENCH_MNT/vm.raw

# 16 MiB O_DIRECT writes: one 16 MiB extent each (buffered writeback would make 128 MiB ones),
# closer to a VM image's extents than whole-file ones. A fresh image per run.
make_image() {
  rm -f "$img"
  dd if=/dev/urandom of="$img" bs=16M count=$((mib / 16)) oflag=direct status=none
  sync
}

# Damages one sector in each of `damaged` extents spread evenly over the file (FIEMAP merges
# physically adjacent extents, so the sectors are picked by file offset, each in its own 16 MiB
# write); prints how many.
damage_extents() {
  local logicals=() l
  while read -r l; do logicals+=("$l"); done < <(filefrag -v -b4096 "$img" |
    awk -v n="$damaged" -v blocks=$((mib * 256)) '
      /^ *[0-9]+:/ { gsub(/[.:]/, " "); k++; ls[k] = $2; le[k] = $3; ps[k] = $4 }
      END { for (i = 0; i < n; i++) { f = int((i + 0.5) * blocks / n) + 1
        for (j = 1; j <= k; j++) if (f >= ls[j] && f <= le[j]) { printf "%.0f\n", (ps[j] + f - ls[j]) * 4096; break } } }')
  umount "$BENCH_MNT"
  # btrfs-map-logical reads the device through its page cache, which may still hold tree blocks
  # of before the mount (btrfs writes past that cache): drop it, or sectors land elsewhere.
  bench_cold
  for l in "${logicals[@]}"; do
    btrfs-map-logical -l "$l" -b 4096 "$BENCH_LOOP" 2>/dev/null |
      awk '$1 == "mirror" { print $8, $6 }' |
      while read -r dev phys; do
        # Other garbage on each copy: the race's signature, so repair rewrites it.
        head -c 4096 /dev/urandom |
          dd of="$dev" bs=4096 seek="$phys" iflag=fullblock oflag=seek_bytes,direct \
            conv=notrunc status=none
      done
  done
  mount "$BENCH_LOOP" "$BENCH_MNT"
  echo "${#logicals[@]}"
}

# min, median, max of the numbers on stdin, and whether they spread by more than 15%.
stats() {
  sort -g | awk '{a[NR] = $1} END {
    med = a[int((NR + 1) / 2)]
    printf "min %.2f median %.2f max %.2f", a[1], med, a[NR]
    if (a[1] > 0 && (a[NR] - a[1]) / a[1] > 0.15) printf " (runs differ by %.0f%%: more than 15%%)", (a[NR] - a[1]) / a[1] * 100
  }'
}

declare -a cp_s=() scrub_s=() rep_s=() ratio=() rss=() backup_b=()
for ((r = 0; r < runs; r++)); do
  make_image
  bench_cold
  t0=$(bench_now)
  cp --reflink=never --sparse=always "$img" "$BENCH_MNT/copy.raw"
  sync
  t1=$(bench_now)
  rm -f "$BENCH_MNT/copy.raw"
  sync
  n=$(damage_extents)
  bench_cold
  t2=$(bench_now)
  # A state directory of the run's own: the kernel record a run writes would date the next
  # run's fresh damage to a known kernel (and classify it media: left, not repaired).
  state=$BENCH_TMP/state.$r
  "$VMCSUM" --json --state-dir "$state" scrub --no-progress --no-history "$img" \
    >"$BENCH_TMP/scrub.json" || true
  t3=$(bench_now)
  bad=$(jq '.files[0].bad | length' "$BENCH_TMP/scrub.json")
  rm -rf "$BENCH_TMP/backup"
  bench_cold
  t4=$(bench_now)
  /usr/bin/time -f "%M" -o "$BENCH_TMP/rss" "$VMCSUM" --json --state-dir "$state" repair --no-progress \
    --backup-dir "$BENCH_TMP/backup" "$img" >"$BENCH_TMP/repair.json" || true
  t5=$(bench_now)
  action=$(jq -r '.files[0].action' "$BENCH_TMP/repair.json")
  if [[ $action == clean && $bad == 0 ]]; then
    # The damage missed the file (btrfs-map-logical mapped it elsewhere): not a repair to time.
    echo "run $r: the damage was not found by scrub or repair: run not counted"
    continue
  fi
  [[ $action == repaired ]] || { echo "run $r: repair said $action" >&2; jq . "$BENCH_TMP/repair.json" >&2; exit 1; }
  echo "run $r: $n damaged sectors, scrub found $bad bad," \
    "$(jq '.files[0].repaired | length' "$BENCH_TMP/repair.json") repaired," \
    "$(jq '.files[0].ranges | length' "$BENCH_TMP/repair.json") range(s)," \
    "$(jq '.files[0].rewritten_bytes' "$BENCH_TMP/repair.json") bytes rewritten"
  cp_s+=("$(echo "$t1 - $t0" | bc -l)")
  scrub_s+=("$(echo "$t3 - $t2" | bc -l)")
  rep_s+=("$(echo "$t5 - $t4" | bc -l)")
  ratio+=("$(echo "($t5 - $t4) / ($t3 - $t2)" | bc -l)")
  rss+=("$(cat "$BENCH_TMP/rss")")
  backup_b+=("$(jq '.files[0].backup_bytes' "$BENCH_TMP/repair.json")")
done
cp_m=$(printf '%s\n' "${cp_s[@]}" | bench_median)
scrub_m=$(printf '%s\n' "${scrub_s[@]}" | bench_median)
rep_m=$(printf '%s\n' "${rep_s[@]}" | bench_median)
ratio_m=$(printf '%s\n' "${ratio[@]}" | bench_median)
rss_max=$(printf '%s\n' "${rss[@]}" | sort -g | tail -1)
((${#rep_s[@]})) || { echo "no run counted" >&2; exit 1; }
echo "image: $mib MiB, dup, $damaged sectors damaged per run (each in its own 16 MiB extent), ${#rep_s[@]} of $runs runs counted, cold cache"
echo "cp --reflink=never --sparse=always + sync (s): $(printf '%s\n' "${cp_s[@]}" | stats)"
echo "vmcsum scrub (s):                             $(printf '%s\n' "${scrub_s[@]}" | stats)"
echo "vmcsum repair (s):                            $(printf '%s\n' "${rep_s[@]}" | stats)"
echo "ratio repair/scrub, per run:                  $(printf '%s\n' "${ratio[@]}" | stats)"
# Backup format 2 keeps every copy of each bad sector and only a digest of the rest of the
# rewritten ranges: a few KiB per bad sector, whatever the extents' size.
echo "backup file (bytes), per run:                 $(printf '%s\n' "${backup_b[@]}" | stats | sed 's/\.00//g')"
awk -v cp="$cp_m" -v sc="$scrub_m" -v rep="$rep_m" -v ratio="$ratio_m" -v rss="$rss_max" 'BEGIN {
  printf "ratio repair/scrub (median of the per-run ratios): %.2f (goal <= 1.3): %s\n", ratio,
    ratio <= 1.3 ? "met" : "NOT met"
  printf "ratio repair/(cp + sync) (medians): %.2f\n", rep / cp
  printf "vmcsum repair peak resident memory: %.1f MiB (goal <= 64): %s\n", rss / 1024,
    rss / 1024 <= 64 ? "met" : "NOT met"
}'
