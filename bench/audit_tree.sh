#!/usr/bin/env bash
# Benchmark: vmcsum audit over a tree of many files holding some images, against
# `find TREE -type f` on the same tree in the same run, warm cache and cold cache (the page
# cache dropped before every run of either tool). Goal (issue 16): audit takes at most 1.5x
# find's time, warm and cold, and finds every image. Not a test: prints numbers and ratios.
#   bench/audit_tree.sh [FILES] [IMAGES] [RUNS]     defaults 100000 1000 5; run as root
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
files=${1:-100000} images=${2:-1000} runs=${3:-5}
bench_require jq bc mkfs.btrfs losetup qemu-img python3
# mkfs.btrfs's default profiles. --direct-io, as every other bench: the loop device then passes
# the requests in flight to its backing file together, as a disk takes a queue of them; a
# buffered loop device reads its backing file one request at a time (drivers/block/loop.c,
# lo_read_simple() per command of a worker), which no disk does, and which hides what reads in
# flight together gain (the cold audit here: 2.6x find's time buffered, 1.8-2.0x direct).
bench_loop_btrfs 4096 - --direct-io
# The kernel falls back to buffered I/O when the backing file cannot do direct I/O (tmpfs).
echo "loop device direct I/O: $(cat "/sys/block/${BENCH_LOOP##*/}/loop/dio" 2>/dev/null || echo unknown) (1: on)"
tree=$BENCH_MNT/tree

echo "building a tree of $files files with $images images..."
qemu-img create -q -f qcow2 "$BENCH_MNT/seed.qcow2" 1G
dirs=$((files / 500 + 1))
python3 - "$tree" "$files" "$images" "$dirs" <<'PY'
import os, sys, shutil
tree, files, images, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
seed = open(os.path.join(os.path.dirname(tree), "seed.qcow2"), "rb").read()
for d in range(dirs):
    os.makedirs(f"{tree}/d{d // 20}/s{d}", exist_ok=True)
every = max(1, files // images)
made = 0
for i in range(files):
    d = i % dirs
    if i % every == 0 and made < images:
        with open(f"{tree}/d{d // 20}/s{d}/vm{i}.qcow2", "wb") as f:
            f.write(seed)
        made += 1
    else:
        with open(f"{tree}/d{d // 20}/s{d}/f{i}.txt", "wb") as f:
            f.write(b"x" * (i % 3000))
PY
sync
echo "tree: $(find "$tree" -type f | wc -l) files, $(find "$tree" -name '*.qcow2' | wc -l) images"

time_cmd() { # prints seconds
  local s e
  s=$(bench_now)
  "$@" >/dev/null 2>&1 || true
  e=$(bench_now)
  echo "$e - $s" | bc -l
}
# min median max of the numbers on stdin
stats() { sort -g | awk '{a[NR] = $1} END {printf "%.3f %.3f %.3f", a[1], a[int((NR + 1) / 2)], a[NR]}'; }
# audit of the tree alone: no kernel log, no libvirt or Proxmox configuration; a private state
# directory of its own, so that the kernel record entry it adds (one per filesystem) is paid.
audit=("$VMCSUM" --state-dir "$BENCH_TMP/state" --json audit --kernel-log '' --libvirt-dir /nonexistent
  --libvirt-run-dir /nonexistent --pve-dir /nonexistent "$tree")
"${audit[@]}" >"$BENCH_TMP/audit.json" || true
found=$(jq '.images | length' "$BENCH_TMP/audit.json")
find "$tree" -name '*.qcow2' >"$BENCH_TMP/images"

# One mode: RUNS alternating runs of each tool, then min/median/max, ratio of medians, spread.
measure() { # warm|cold
  local mode=$1 f_times=() a_times=() f_reads=() a_reads=() r n0
  find "$tree" -type f >/dev/null # warm both (a cold run drops it again)
  "${audit[@]}" >/dev/null || true
  for ((r = 0; r < runs; r++)); do
    [[ $mode == cold ]] && bench_cold
    n0=$(bench_dev_reads "$BENCH_LOOP")
    f_times+=("$(time_cmd find "$tree" -type f)")
    f_reads+=($(($(bench_dev_reads "$BENCH_LOOP") - n0)))
    [[ $mode == cold ]] && bench_cold
    n0=$(bench_dev_reads "$BENCH_LOOP")
    a_times+=("$(time_cmd "${audit[@]}")")
    a_reads+=($(($(bench_dev_reads "$BENCH_LOOP") - n0)))
  done
  local fs name lo hi f_min f_med f_max a_min a_med a_max
  read -r f_min f_med f_max <<<"$(printf '%s\n' "${f_times[@]}" | stats)"
  read -r a_min a_med a_max <<<"$(printf '%s\n' "${a_times[@]}" | stats)"
  printf '%s cache, %d runs each (min/median/max, seconds):\n' "$mode" "$runs"
  printf '  find -type f:  %s / %s / %s\n' "$f_min" "$f_med" "$f_max"
  printf '  vmcsum audit:  %s / %s / %s\n' "$a_min" "$a_med" "$a_max"
  printf '  ratio audit/find (%s, medians): %.2fx (goal: at most 1.5x)\n' "$mode" \
    "$(echo "$a_med / $f_med" | bc -l)"
  if [[ $mode == cold ]]; then
    # What a cold audit must read that find never does: each image's inode (find takes the
    # file type from the directory entry, audit stats the images) and its first 4 KiB (the
    # format), each a read of its own wherever the images lie; the device's own count.
    local f_rd a_rd
    f_rd=$(printf '%s\n' "${f_reads[@]}" | bench_median)
    a_rd=$(printf '%s\n' "${a_reads[@]}" | bench_median)
    printf '  read requests the device completed (medians): find %s, audit %s: %.1f more per image\n' \
      "$f_rd" "$a_rd" "$(echo "($a_rd - $f_rd) / $((found > 0 ? found : 1))" | bc -l)"
    # The floor of those reads: find, then no more than an lstat and the first 4 KiB of each
    # image, one after the other (what any examination by content needs). Audit reading about
    # as many requests as this says its extra time is these reads, not reads of its own.
    local n0 s e
    bench_cold
    n0=$(bench_dev_reads "$BENCH_LOOP")
    s=$(bench_now)
    find "$tree" -type f >/dev/null
    python3 -c 'import os, sys
for p in sys.stdin.read().split("\n"):
    if p:
        os.lstat(p); fd = os.open(p, os.O_RDONLY); os.pread(fd, 4096, 0); os.close(fd)' <"$BENCH_TMP/images"
    e=$(bench_now)
    printf '  floor, find then lstat + first 4 KiB of each image one by one: %s read requests, %.3f s\n' \
      "$(($(bench_dev_reads "$BENCH_LOOP") - n0))" "$(echo "$e - $s" | bc -l)"
  fi
  for fs in "find $f_min $f_max" "audit $a_min $a_max"; do
    read -r name lo hi <<<"$fs"
    if (($(echo "$hi > $lo * 1.15" | bc -l))); then
      printf '  note: %s runs differ by more than 15%% (%s to %s s): the machine was busy\n' \
        "$name" "$lo" "$hi"
    fi
  done
}
echo "images found by audit: $found of $images"
measure warm
measure cold
