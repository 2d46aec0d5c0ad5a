#!/usr/bin/env bash
# Benchmark: vmcsum audit over a tree of many files holding some images, against
# `find TREE -type f` on the same tree in the same run (warm cache, median of N runs).
# Goal (issue 3): audit takes at most 2x find's time. Not a test: prints numbers and a ratio.
#   bench/audit_tree.sh [FILES] [IMAGES] [RUNS]     defaults 100000 1000 5; run as root
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
files=${1:-100000} images=${2:-1000} runs=${3:-5}
bench_require jq bc mkfs.btrfs losetup qemu-img python3
bench_loop_btrfs 4096 - # mkfs.btrfs's default profiles
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
# audit of the tree alone: no kernel log, no libvirt or Proxmox configuration.
audit=("$VMCSUM" --json audit --kernel-log '' --libvirt-dir /nonexistent --libvirt-run-dir /nonexistent
  --pve-dir /nonexistent "$tree")
# Warm the cache once for both.
find "$tree" -type f >/dev/null
"${audit[@]}" >"$BENCH_TMP/audit.json" || true
found=$(jq '.images | length' "$BENCH_TMP/audit.json")

f_times=() a_times=()
for ((r = 0; r < runs; r++)); do
  f_times+=("$(time_cmd find "$tree" -type f)")
  a_times+=("$(time_cmd "${audit[@]}")")
done
f=$(printf '%s\n' "${f_times[@]}" | bench_median)
a=$(printf '%s\n' "${a_times[@]}" | bench_median)
ratio=$(echo "$a / $f" | bc -l)
printf 'find -type f:  %.3f s (median of %d)\n' "$f" "$runs"
printf 'vmcsum audit:  %.3f s (median of %d), %d images found\n' "$a" "$runs" "$found"
printf 'ratio audit/find: %.2fx (goal: at most 2x)\n' "$ratio"
