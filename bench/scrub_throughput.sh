#!/usr/bin/env bash
# Benchmark: vmcsum scrub against `dd iflag=direct bs=4M` reading the same copies from the
# devices, in the same run, with vmcsum's peak resident memory. On one device (single, dup) the
# baseline is one dd after the other over every copy; on two devices (raid1, raid10) it is one
# dd per device, both devices at once (what the hardware allows). For sha256 and blake2 the
# hashing limit of all cores is printed too: vmcsum's own checksum code hashing 4 KiB sectors
# on every core (tests/tools/hash_speed), and the smaller of it and dd, which both bound scrub;
# the hashing limit while dd reads the copies beside it (reading costs the cores too) and the
# ratio to the smaller of that and dd; `openssl speed -multi 2` is printed for reference
# (another library than vmcsum's libgcrypt; for blake2 OpenSSL 3.0 has only BLAKE2b-512, while
# btrfs uses BLAKE2b-256).
# Goals (issue 16): scrub (every copy verified, kernel confirmation of every finding) >= 0.95x
# dd on single and dup, >= 0.9x the parallel dds on raid1/raid10, >= 0.9x of the hashing limit
# on sha256/blake2; peak resident memory <= 64 MiB. The loop devices do direct I/O to their
# backing files, so the host's page cache cannot answer for the disk.
# raid5 (3 devices) and raid6 (4; issue 17): the baseline is one dd per device, all at once,
# over the device's part of every data chunk (data units and parity: what a full read of the
# image's full stripes takes; the image fills the chunks of a fresh filesystem). Scrub reads
# the data units in its per-copy pass and then every full stripe again (data and parity) for
# the parity check, so about (2 * data + parity) / (data + parity) of the dd bytes: its goal
# is printed as 0.9x divided by that.
#   [BENCH_BACKING=/dev/shm] bench/scrub_throughput.sh [MIB] [PROFILE] [RUNS] [CSUM]
#     defaults 1024 dup 3 crc32c; PROFILE single|dup|raid1|raid10|raid5|raid6; run as root;
#     not a test. BENCH_BACKING: see bench/lib.sh (devices in memory)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mib=${1:-1024} profile=${2:-dup} runs=${3:-3} csum=${4:-crc32c}
bench_require jq bc mkfs.btrfs losetup filefrag btrfs-map-logical /usr/bin/time
meta=$profile nparity=0
case $profile in
  single | dup) ndev=1 ;;
  raid1 | raid10) ndev=2 ;;
  raid5) ndev=3 meta=raid1 nparity=1 ;;
  raid6) ndev=4 meta=raid1 nparity=2 ;;
  *) echo "bench: profile $profile: single, dup, raid1, raid10, raid5 or raid6" >&2; exit 64 ;;
esac
bench_loop_btrfs_devs "$ndev" $((mib * 3 / ndev + 1024)) "$profile/$meta" --direct-io
# BENCH_BACKING=/dev/shm: devices in memory, for the hashing goal on a machine whose disk is
# slower than its cores hash (there scrub can only go at the disk's speed).
echo "loop devices' backing files: $BENCH_BACKING_DIR (direct I/O: $(cat "/sys/block/${BENCH_LOOP##*/}/loop/dio" 2>/dev/null || echo unknown))"
btrfs filesystem sync "$BENCH_MNT" >/dev/null
umount "$BENCH_MNT"
# mkfs's default csum is crc32c; others need a new filesystem over the same devices.
if [[ $csum != crc32c ]]; then
  mkfs.btrfs -q -f --csum "$csum" -d "$profile" -m "$meta" "${BENCH_LOOPS[@]}" >/dev/null
fi
mount "$BENCH_LOOP" "$BENCH_MNT"
f=$BENCH_MNT/image.raw
echo "writing $mib MiB ($profile, $csum, $ndev device(s))..."
dd if=/dev/urandom of="$f" bs=4M count=$((mib / 4)) status=none
sync

# every copy of every extent: "device physical length" from FIEMAP + btrfs-map-logical
ranges=$BENCH_TMP/ranges
: >"$ranges"
if ((nparity > 0)); then
  # "device physical length": on each device, the rows (full stripes) of the RAID5/6 data chunks
  # that the image's extents touch, data units and parity (chunk tree: chunk logical, length,
  # data units, and each stripe's devid and offset; mkfs numbers devices in command-line order).
  umount "$BENCH_MNT"
  btrfs inspect-internal dump-tree -t chunk "$BENCH_LOOP" | awk -v np="$nparity" '
    /CHUNK_ITEM/ { c = $0; sub(/.*CHUNK_ITEM /, "", c); sub(/[)].*/, "", c); next }
    $1 == "length" { len = $2; raid = ($0 ~ /type DATA[|]RAID[56]/) }
    $1 == "num_stripes" { n = $2 }
    raid && $1 == "stripe" && $3 == "devid" { print c, len, n - np, $4, $6 }' >"$BENCH_TMP/stripes"
  mount "$BENCH_LOOP" "$BENCH_MNT"
  filefrag -v -b4096 "$f" | awk '/^ *[0-9]+:/ { gsub(/[.:]/, " "); printf "%.0f %.0f\n", $4 * 4096, $6 * 4096 }' |
    awk 'NR == FNR { c[NR] = $1; cl[NR] = $2; nd[NR] = $3; dev[NR] = $4; off[NR] = $5; k = NR; next }
      { for (i = 1; i <= k; i++) if ($1 >= c[i] && $1 < c[i] + cl[i]) {
          w = nd[i] * 65536; r0 = int(($1 - c[i]) / w); r1 = int(($1 + $2 - 1 - c[i]) / w)
          printf "%s %.0f %.0f\n", dev[i], off[i] + r0 * 65536, off[i] + (r1 + 1) * 65536 } }' "$BENCH_TMP/stripes" - |
    sort -k1,1n -k2,2n | awk '
      $1 == d && $2 <= e { if ($3 > e) e = $3; next }
      { if (d != "") printf "%s %.0f %.0f\n", d, s, e - s; d = $1; s = $2; e = $3 }
      END { if (d != "") printf "%s %.0f %.0f\n", d, s, e - s }' |
    while read -r devid phys len; do echo "${BENCH_LOOPS[devid - 1]} $phys $len"; done >"$ranges"
else
  while read -r logical len; do
    btrfs-map-logical -l "$logical" -b 4096 "$BENCH_LOOP" 2>/dev/null |
      awk -v len="$len" '$1 == "mirror" { print $8, $6, len }' >>"$ranges"
  done < <(filefrag -v -b4096 "$f" | awk '/^ *[0-9]+:/ { gsub(/[.:]/, " "); printf "%.0f %.0f\n", $4 * 4096, $6 * 4096 }')
fi
# raid10 over two devices has two stripes of one sub-stripe pair: each device holds a whole
# copy, as on raid1 (btrfs_raid_array: raid10 devs_min 2, sub_stripes 2).
bytes=$(awk '{ s += $3 } END { printf "%.0f\n", s }' "$ranges")

# One dd per device, all devices at once; each reads its copies one after the other.
dd_devices() {
  local dev
  for dev in "${BENCH_LOOPS[@]}"; do
    (awk -v d="$dev" '$1 == d { print $2, $3 }' "$ranges" | while read -r phys len; do
      dd if="$dev" of=/dev/null bs=4M iflag=direct,skip_bytes,count_bytes skip="$phys" \
        count="$len" status=none
    done) &
  done
  wait
}

# scrub LABEL ARGS...: one cold run, seconds appended to secs_LABEL, CPU seconds (user + system)
# to cpu_LABEL, peak RSS (KiB) to rss
declare -A secs=() cpu=()
rss=()
run_scrub() {
  local label=$1 t0 t1 kib user sys
  shift
  bench_cold
  t0=$(bench_now)
  /usr/bin/time -f "%M %U %S" -o "$BENCH_TMP/rss" "$VMCSUM" --json scrub --no-progress \
    --no-history "$@" "$f" >"$BENCH_TMP/scrub.json" || true
  t1=$(bench_now)
  [[ $(jq '.files[0].examined' "$BENCH_TMP/scrub.json") == true ]] ||
    { echo "bench: scrub $* did not examine the image" >&2; jq . "$BENCH_TMP/scrub.json" >&2; exit 1; }
  secs[$label]+="$(echo "$t1 - $t0" | bc -l) "
  read -r kib user sys <"$BENCH_TMP/rss"
  cpu[$label]+="$(echo "$user + $sys" | bc -l) "
  rss+=("$kib")
}

modes=(default per-copy)
"$VMCSUM" scrub --help 2>/dev/null | grep -q -- '--kernel-pass' && modes+=(full)
dd_s=() dd_cpu=()
for ((r = 0; r < runs; r++)); do
  bench_cold
  c0=$(bench_busy_cpu)
  t0=$(bench_now)
  dd_devices
  t1=$(bench_now)
  c1=$(bench_busy_cpu)
  dd_s+=("$(echo "$t1 - $t0" | bc -l)")
  dd_cpu+=("$(echo "$c1 - $c0" | bc -l)")
  run_scrub default
  run_scrub per-copy --no-kernel-pass
  [[ ${modes[-1]} == full ]] && run_scrub full --kernel-pass=full
done

echo "image: $mib MiB, $profile, $csum; copies read: $((bytes / 1048576)) MiB; $runs cold runs each"
bench_stats "dd iflag=direct bs=4M (one per device, in parallel)" s "${dd_s[@]}"
dd_m=$(printf '%s\n' "${dd_s[@]}" | bench_median)
echo "  median $(echo "$bytes / 1048576 / $dd_m" | bc) MiB/s"
for m in "${modes[@]}"; do
  # shellcheck disable=SC2086 # the values are a space-separated list
  bench_stats "vmcsum scrub ($m)" s ${secs[$m]}
  # shellcheck disable=SC2086 # the values are a space-separated list
  med=$(printf '%s\n' ${secs[$m]} | bench_median)
  echo "  median $(echo "$bytes / 1048576 / $med" | bc) MiB/s; ratio scrub/dd throughput: $(echo "$dd_m / $med" | bc -l | xargs printf "%.2f")"
  # The disk's noise only ever adds time, and drifts: the fastest runs of each, and each run
  # against the dd of its own round, say more than the medians on a noisy machine.
  # shellcheck disable=SC2086 # the values are a space-separated list
  paste -d' ' <(printf '%s\n' "${dd_s[@]}") <(printf '%s\n' ${secs[$m]}) >"$BENCH_TMP/pairs"
  read -r lo mid hi <<<"$(awk '{ print $1 / $2 }' "$BENCH_TMP/pairs" | sort -g |
    awk '{ a[NR] = $1 } END { print a[1], a[int((NR + 1) / 2)], a[NR] }')"
  read -r fastest < <(awk 'NR == 1 || $1 < d { d = $1 } NR == 1 || $2 < s { s = $2 } END { print d / s }' \
    "$BENCH_TMP/pairs")
  printf '  ratio of the fastest runs: %.2f; per round (against the dd of the same round): min %.2f / median %.2f / max %.2f\n' \
    "$fastest" "$lo" "$mid" "$hi"
  # shellcheck disable=SC2086 # the values are a space-separated list
  c=$(printf '%s\n' ${cpu[$m]} | bench_median)
  # How busy the cores were: near all of them means the CPU, not the device or the pipeline,
  # bounds this run (the loop devices' own work and the interrupts are not counted here).
  printf '  CPU: median %.2f s (user + system) per %d MiB, %.2f of %d cores busy\n' "$c" \
    $((bytes / 1048576)) "$(echo "$c / $med" | bc -l)" "$(nproc)"
done
goal=0.95
[[ $ndev -gt 1 ]] && goal=0.9
if ((nparity > 0)); then
  ndata=$((ndev - nparity))
  goal=$(echo "0.9 * $ndev / (2 * $ndata + $nparity)" | bc -l | xargs printf "%.2f")
fi
echo "goal: scrub (default) / dd >= $goal"
if [[ $csum == sha256 || $csum == blake2 ]]; then
  # shellcheck disable=SC2086 # the values are a space-separated list
  med=$(printf '%s\n' ${secs[default]} | bench_median)
  scrub_mib=$(echo "$bytes / 1048576 / $med" | bc -l)
  dd_mib=$(echo "$bytes / 1048576 / $dd_m" | bc -l)
  # The hashing limit: vmcsum's own checksum code on every core, 4 KiB per call, as scrub
  # hashes (tests/tools/hash_speed, built beside vmcsum).
  hs=$(dirname "$VMCSUM")/tests/tools/hash_speed
  if [[ -x $hs ]]; then
    type=2
    [[ $csum == blake2 ]] && type=3
    read -r hash_mib ncpu < <("$hs" "$type" 0 3)
    echo "hashing limit of all $ncpu cores (vmcsum's $csum code, tests/tools/hash_speed): $hash_mib MiB/s"
    echo "ratio scrub (default) / hashing limit: $(echo "$scrub_mib / $hash_mib" | bc -l | xargs printf "%.2f") (goal >= 0.9)"
    # What hashing alone costs in CPU, beside what scrub spent in all (its CPU line above): the
    # rest is reading, the csum tree and vmcsum's fixed costs, on the same cores.
    hash_cpu=$(echo "$bytes / 1048576 * $ncpu / $hash_mib" | bc -l)
    # shellcheck disable=SC2086 # the values are a space-separated list
    printf 'hashing the copies alone: %.2f s of CPU (at hash_speed); scrub (default) used %.2f s\n' \
      "$hash_cpu" "$(printf '%s\n' ${cpu[default]} | bench_median)"
    # ratio_to_min LABEL LIMIT [SUFFIX]: scrub (default) against the smaller of dd and LIMIT (MiB/s).
    ratio_to_min() {
      local lim=$2
      (($(echo "$dd_mib < $lim" | bc -l))) && lim=$dd_mib
      echo "ratio scrub (default) / min(dd, $1) = $(printf '%.0f' "$lim") MiB/s: $(echo "$scrub_mib / $lim" | bc -l | xargs printf "%.2f")${3:+ $3}"
    }
    ratio_to_min "hashing limit" "$hash_mib" "(the device and the cores both bound it)"
    # Scrub hashes while its copies stream in, and reading is not free for the cores: the
    # block layer, the loop driver and the interrupts run on them too (and in a VM the host's
    # copy into guest memory competes for the same caches). So the same hashing is measured
    # again while the dd baseline reads the copies over and over beside it: what the cores can
    # hash while the device delivers.
    rm -f "$BENCH_TMP/stop"
    (while [[ ! -e $BENCH_TMP/stop ]]; do dd_devices; done) &
    reading=$!
    sleep 0.2
    read -r busy_mib _ < <("$hs" "$type" 0 3)
    touch "$BENCH_TMP/stop"
    wait "$reading"
    echo "hashing limit of all $ncpu cores while dd reads the copies beside it: $busy_mib MiB/s"
    ratio_to_min "hashing limit while reading" "$busy_mib"
    # That measure is harsh where the device is fast: dd reading over and over takes a core
    # away all the time, scrub's reads only as much as its bytes cost. The bound where the cores
    # must both read and hash the copies: the CPU the whole machine spent busy while dd read
    # them once (the loop device's worker too; a disk doing DMA costs little, a device in memory
    # a copy of every block), plus hashing's CPU, spread over every core.
    read_cpu=$(printf '%s\n' "${dd_cpu[@]}" | bench_median)
    both_mib=$(echo "$bytes / 1048576 / (($hash_cpu + $read_cpu) / $ncpu)" | bc -l)
    printf 'CPU of reading the copies once (the machine busy while dd read them, median): %.2f s; of hashing them: %.2f s\n' \
      "$read_cpu" "$hash_cpu"
    ratio_to_min "all cores reading and hashing" "$both_mib" "(goal >= 0.9)"
  fi
  if command -v openssl >/dev/null; then
    alg=sha256
    [[ $csum == blake2 ]] && alg=blake2b512
    # -multi 2: both cores; the last line is "ALG <kB/s>k" (1000-byte units) for 4 KiB blocks
    kbs=$(openssl speed -evp "$alg" -bytes 4096 -multi 2 -seconds 3 2>/dev/null |
      awk -v a="$alg" '$1 == a { sub(/k$/, "", $2); print $2 }' | tail -1)
    # For reference: OpenSSL 3.0 has no BLAKE2b-256 (only -512, whose speed is printed).
    [[ -n $kbs ]] && echo "for reference, openssl speed -multi 2 ($alg, 4 KiB): $(echo "$kbs * 1000 / 1048576" | bc) MiB/s"
  fi
fi
echo "vmcsum peak resident memory: $(printf '%s\n' "${rss[@]}" | sort -g | tail -1 | awk '{ printf "%.1f", $1 / 1024 }') MiB (goal <= 64)"
