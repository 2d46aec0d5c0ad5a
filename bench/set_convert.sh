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
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
size_mib=${1:-2048} runs=${2:-3} dir=${3:-}
bench_require jq bc mkfs.btrfs losetup chattr

if [[ -z $dir ]]; then
  bench_loop_btrfs $((size_mib * 3 + 1024)) single/dup --direct-io
  dir=$BENCH_MNT
  where="a new btrfs on $BENCH_LOOP (direct I/O to $BENCH_TMP/fs.img)"
else
  where=$dir
fi
bench_workdir "$dir"
img=$BENCH_WORK/vm.raw

# A VM image: mostly data, a few holes (8 MiB every 256 MiB), incompressible.
echo "making a ${size_mib} MiB image in $where..."
truncate -s "${size_mib}M" "$img"
for ((off = 0; off < size_mib; off += 256)); do
  n=$((size_mib - off < 248 ? size_mib - off : 248))
  dd if=/dev/urandom of="$img" bs=1M count="$n" seek="$off" conv=notrunc status=none
done
sync
data=$(($(stat -c %b "$img") * 512))

declare -A cp_copy cp_total vm_copy vm_total vm_verify
for target in nocow cow; do
  for ((r = 0; r < runs; r++)); do
    # cp + sync into a file of the same kind (cp keeps the NOCOW of an existing empty target).
    dest=$BENCH_WORK/cp.raw
    rm -f "$dest"
    touch "$dest"
    [[ $target == nocow ]] && chattr +C "$dest"
    bench_cold
    t0=$(bench_now)
    cp --reflink=never --sparse=always "$img" "$dest"
    t1=$(bench_now)
    sync
    t2=$(bench_now)
    cp_copy[$target]+="$(echo "$t1 - $t0" | bc -l) "
    cp_total[$target]+="$(echo "$t2 - $t0" | bc -l) "
    rm -f "$dest"
    sync

    # vmcsum: the image is converted to $target (and back, untimed, between runs).
    want_back=$([[ $target == nocow ]] && echo cow || echo nocow)
    "$VMCSUM" -q set --"$want_back" "$img" >/dev/null 2>&1 || true
    bench_cold
    t0=$(bench_now)
    "$VMCSUM" --json set --"$target" "$img" >"$BENCH_TMP/set.json"
    t1=$(bench_now)
    [[ $(jq -r '.files[0].action' "$BENCH_TMP/set.json") == rewritten ]] || {
      echo "bench: vmcsum did not rewrite the image:" >&2
      jq '.files[0] | {action, code, reason}' "$BENCH_TMP/set.json" >&2
      exit 1
    }
    vm_copy[$target]+="$(jq -r '.files[0].seconds | .copy + .flush' "$BENCH_TMP/set.json") "
    vm_verify[$target]+="$(jq -r '.files[0].seconds.verify' "$BENCH_TMP/set.json") "
    vm_total[$target]+="$(echo "$t1 - $t0" | bc -l) "
  done
done

mib() { echo "$data / 1048576 / $1" | bc -l; }
echo
printf 'image: %s MiB logical, %d MiB of data; %d runs per case, cold cache\n' "$size_mib" \
  $((data / 1048576)) "$runs"
fail=0
for target in nocow cow; do
  cc=$(tr ' ' '\n' <<<"${cp_copy[$target]}" | grep . | bench_median)
  ct=$(tr ' ' '\n' <<<"${cp_total[$target]}" | grep . | bench_median)
  vc=$(tr ' ' '\n' <<<"${vm_copy[$target]}" | grep . | bench_median)
  vv=$(tr ' ' '\n' <<<"${vm_verify[$target]}" | grep . | bench_median)
  vt=$(tr ' ' '\n' <<<"${vm_total[$target]}" | grep . | bench_median)
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
