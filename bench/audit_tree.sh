#!/usr/bin/env bash
# Benchmark: vmcsum audit over a tree of many files holding some images, against
# `find TREE -type f` on the same tree in the same run (warm cache, median of N runs).
# Goal (issue 3): audit takes at most 2x find's time. Not a test: prints numbers and a ratio.
#   bench/audit_tree.sh [FILES] [IMAGES] [RUNS]     defaults 100000 1000 5; run as root
set -euo pipefail
files=${1:-100000} images=${2:-1000} runs=${3:-5}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vmcsum=${VMCSUM:-$here/build/vmcsum}
PATH=$PATH:/usr/sbin:/sbin
[[ $(id -u) -eq 0 ]] || { echo "bench: needs root (loop-mounted btrfs)" >&2; exit 77; }

tmp=$(mktemp -d /tmp/vmcsum-bench.XXXXXX)
loop=""
cleanup() {
  set +e
  mountpoint -q "$tmp/mnt" && umount "$tmp/mnt"
  [[ -n $loop ]] && losetup -d "$loop"
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

truncate -s 4G "$tmp/fs.img"
loop=$(losetup -f --show "$tmp/fs.img")
mkfs.btrfs -q -f "$loop" >/dev/null
mkdir "$tmp/mnt"
mount "$loop" "$tmp/mnt"
tree=$tmp/mnt/tree

echo "building a tree of $files files with $images images..."
qemu-img create -q -f qcow2 "$tmp/mnt/seed.qcow2" 1G
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

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_cmd() { # prints seconds
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || true
  e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}
# Warm the cache once for both.
find "$tree" -type f >/dev/null
"$vmcsum" --json audit --kernel-log '' --libvirt-dir /nonexistent --libvirt-run-dir /nonexistent \
  --pve-dir /nonexistent "$tree" >"$tmp/audit.json" || true
found=$(jq '.images | length' "$tmp/audit.json")

f_times=() a_times=()
for ((r = 0; r < runs; r++)); do
  f_times+=("$(time_cmd find "$tree" -type f)")
  a_times+=("$(time_cmd "$vmcsum" --json audit --kernel-log '' --libvirt-dir /nonexistent \
    --libvirt-run-dir /nonexistent --pve-dir /nonexistent "$tree")")
done
f=$(printf '%s\n' "${f_times[@]}" | median)
a=$(printf '%s\n' "${a_times[@]}" | median)
ratio=$(echo "$a / $f" | bc -l)
printf 'find -type f:  %.3f s (median of %d)\n' "$f" "$runs"
printf 'vmcsum audit:  %.3f s (median of %d), %d images found\n' "$a" "$runs" "$found"
printf 'ratio audit/find: %.2fx (goal: at most 2x)\n' "$ratio"
