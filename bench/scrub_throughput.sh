#!/usr/bin/env bash
# Benchmark: vmcsum scrub's per-copy pass against `dd iflag=direct bs=4M` reading the same copies
# from the device, in the same run, with vmcsum's peak resident memory.
# Goal (issue 5): scrub throughput >= 0.9x dd's; resident memory <= 64 MiB.
#   bench/scrub_throughput.sh [MIB] [PROFILE]     defaults 1024 dup; run as root
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mib=${1:-1024} profile=${2:-dup}
bench_require jq bc mkfs.btrfs losetup filefrag btrfs-map-logical /usr/bin/time
bench_loop_btrfs $((mib * 3 + 1024)) "$profile"
f=$BENCH_MNT/image.raw
echo "writing $mib MiB ($profile)..."
dd if=/dev/urandom of="$f" bs=4M count=$((mib / 4)) status=none
bench_cold

# every copy of every extent: "device physical length" from FIEMAP + btrfs-map-logical
ranges=$BENCH_TMP/ranges
: >"$ranges"
while read -r logical len; do
  btrfs-map-logical -l "$logical" -b 4096 "$BENCH_LOOP" 2>/dev/null |
    awk -v len="$len" '$1 == "mirror" { print $8, $6, len }' >>"$ranges"
done < <(filefrag -v -b4096 "$f" | awk '/^ *[0-9]+:/ { gsub(/[.:]/, " "); print $4 * 4096, $6 * 4096 }')

t0=$(bench_now)
while read -r dev phys len; do
  dd if="$dev" of=/dev/null bs=4M iflag=direct,skip_bytes,count_bytes skip="$phys" count="$len" status=none
done <"$ranges"
t1=$(bench_now)
/usr/bin/time -f "%M" -o "$BENCH_TMP/rss" "$VMCSUM" --json scrub --no-progress --no-history \
  --no-kernel-pass "$f" >"$BENCH_TMP/scrub.json" || true
t2=$(bench_now)
bytes=$(awk '{ s += $3 } END { print s }' "$ranges")
awk -v b="$bytes" -v dd="$(echo "$t1 - $t0" | bc)" -v sc="$(echo "$t2 - $t1" | bc)" \
  -v rss="$(cat "$BENCH_TMP/rss")" -v bad="$(jq '[.files[].bad[]] | length' "$BENCH_TMP/scrub.json")" 'BEGIN {
  printf "copies read: %.0f MiB\n", b / 1048576
  printf "dd iflag=direct bs=4M: %.2f s, %.0f MiB/s\n", dd, b / 1048576 / dd
  printf "vmcsum scrub:          %.2f s, %.0f MiB/s (bad sectors: %d)\n", sc, b / 1048576 / sc, bad
  printf "ratio scrub/dd throughput: %.2f (goal >= 0.9)\n", dd / sc
  printf "vmcsum peak resident memory: %.1f MiB (goal <= 64)\n", rss / 1024
}'
