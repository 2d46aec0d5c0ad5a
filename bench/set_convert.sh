#!/usr/bin/env bash
# Benchmark: `vmcsum set --nocow|--cow` on an image, against `cp --reflink=never --sparse=always`
# + `sync` of the same image to the same kind of file (a NOCOW one for --nocow), cold cache
# (drop_caches before every run), median of RUNS runs per direction.
# Goals (issue 4): the copy phase (copy + fdatasync: the data is on disk) at least 0.9x cp's
# throughput; the whole command, verification included (the copy read back from the disk, not
# from the page cache), at most 1.6x cp + sync's time. Not a test: prints numbers and ratios.
#   bench/set_convert.sh [SIZE_MIB] [RUNS] [DIR]     defaults 2048 3; run as root
# Without DIR it makes a btrfs on a loop device with --direct-io=on, so that what btrfs writes
# and reads back really goes to the disk below (not to the page cache of the backing file).
# With DIR (a directory on btrfs) it runs there and leaves nothing behind.
set -euo pipefail
size_mib=${1:-2048} runs=${2:-3} dir=${3:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vmcsum=${VMCSUM:-$here/build/vmcsum}
PATH=$PATH:/usr/sbin:/sbin
[[ $(id -u) -eq 0 ]] || { echo "bench: needs root (loop device, drop_caches)" >&2; exit 77; }
for c in jq bc mkfs.btrfs losetup chattr; do
  command -v "$c" >/dev/null || { echo "bench: $c not found" >&2; exit 77; }
done
[[ -x $vmcsum ]] || { echo "bench: $vmcsum not built (set VMCSUM)" >&2; exit 77; }

tmp=$(mktemp -d /tmp/vmcsum-bench-set.XXXXXX)
loop=""
work=""
cleanup() {
  set +e
  [[ -n $work ]] && rm -rf "$work"
  mountpoint -q "$tmp/mnt" && umount "$tmp/mnt"
  [[ -n $loop ]] && losetup -d "$loop"
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

if [[ -z $dir ]]; then
  truncate -s $((size_mib * 3 + 1024))M "$tmp/fs.img"
  loop=$(losetup -f --show --direct-io=on "$tmp/fs.img")
  mkfs.btrfs -q -f -d single -m dup "$loop" >/dev/null
  mkdir "$tmp/mnt"
  mount "$loop" "$tmp/mnt"
  dir=$tmp/mnt
  where="a new btrfs on $loop (direct I/O to $tmp/fs.img)"
else
  where=$dir
fi
work=$(mktemp -d "$dir/vmcsum-bench.XXXXXX")
img=$work/vm.raw

# A VM image: mostly data, a few holes (8 MiB every 256 MiB), incompressible.
echo "making a ${size_mib} MiB image in $where..."
truncate -s "${size_mib}M" "$img"
for ((off = 0; off < size_mib; off += 256)); do
  n=$((size_mib - off < 248 ? size_mib - off : 248))
  dd if=/dev/urandom of="$img" bs=1M count="$n" seek="$off" conv=notrunc status=none
done
sync
data=$(($(stat -c %b "$img") * 512))

now() { date +%s.%N; }
cold() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

declare -A cp_copy cp_total vm_copy vm_total vm_verify
for target in nocow cow; do
  for ((r = 0; r < runs; r++)); do
    # cp + sync into a file of the same kind (cp keeps the NOCOW of an existing empty target).
    dest=$work/cp.raw
    rm -f "$dest"
    touch "$dest"
    [[ $target == nocow ]] && chattr +C "$dest"
    cold
    t0=$(now)
    cp --reflink=never --sparse=always "$img" "$dest"
    t1=$(now)
    sync
    t2=$(now)
    cp_copy[$target]+="$(echo "$t1 - $t0" | bc -l) "
    cp_total[$target]+="$(echo "$t2 - $t0" | bc -l) "
    rm -f "$dest"
    sync

    # vmcsum: the image is converted to $target (and back, untimed, between runs).
    want_back=$([[ $target == nocow ]] && echo cow || echo nocow)
    "$vmcsum" -q set --"$want_back" "$img" >/dev/null 2>&1 || true
    cold
    t0=$(now)
    "$vmcsum" --json set --"$target" "$img" >"$tmp/set.json"
    t1=$(now)
    [[ $(jq -r '.files[0].action' "$tmp/set.json") == rewritten ]] || {
      echo "bench: vmcsum did not rewrite the image:" >&2
      jq '.files[0] | {action, code, reason}' "$tmp/set.json" >&2
      exit 1
    }
    vm_copy[$target]+="$(jq -r '.files[0].seconds | .copy + .flush' "$tmp/set.json") "
    vm_verify[$target]+="$(jq -r '.files[0].seconds.verify' "$tmp/set.json") "
    vm_total[$target]+="$(echo "$t1 - $t0" | bc -l) "
  done
done

mib() { echo "$data / 1048576 / $1" | bc -l; }
echo
printf 'image: %s MiB logical, %d MiB of data; %d runs per case, cold cache\n' "$size_mib" \
  $((data / 1048576)) "$runs"
fail=0
for target in nocow cow; do
  cc=$(tr ' ' '\n' <<<"${cp_copy[$target]}" | grep . | median)
  ct=$(tr ' ' '\n' <<<"${cp_total[$target]}" | grep . | median)
  vc=$(tr ' ' '\n' <<<"${vm_copy[$target]}" | grep . | median)
  vv=$(tr ' ' '\n' <<<"${vm_verify[$target]}" | grep . | median)
  vt=$(tr ' ' '\n' <<<"${vm_total[$target]}" | grep . | median)
  copy_ratio=$(echo "$ct / $vc" | bc -l)
  total_ratio=$(echo "$vt / $ct" | bc -l)
  echo "--- to $target"
  printf '  cp + sync:          %6.2f s (cp %.2f s + sync %.2f s)  %7.1f MiB/s\n' "$ct" "$cc" \
    "$(echo "$ct - $cc" | bc -l)" "$(mib "$ct")"
  printf '  vmcsum copy phase:  %6.2f s (copy + fdatasync)            %7.1f MiB/s\n' "$vc" "$(mib "$vc")"
  printf '  vmcsum verify:      %6.2f s (read back from disk)         %7.1f MiB/s\n' "$vv" "$(mib "$vv")"
  printf '  vmcsum whole:       %6.2f s\n' "$vt"
  printf '  copy phase throughput vs cp + sync: %.2fx (goal: at least 0.9x)\n' "$copy_ratio"
  printf '  whole command time vs cp + sync:    %.2fx (goal: at most 1.6x)\n' "$total_ratio"
  (($(echo "$copy_ratio < 0.9 || $total_ratio > 1.6" | bc -l))) && fail=1
done
((fail)) && echo "goals: NOT met" || echo "goals: met"
