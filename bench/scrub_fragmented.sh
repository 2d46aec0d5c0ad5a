#!/usr/bin/env bash
# Benchmark: vmcsum scrub of a heavily fragmented image (what a COW image becomes after a guest's
# random writes) against its contiguous twin (`cp --reflink=never` of it: same bytes, few
# extents), in the same run. Two fixtures (MODE):
# - rewrite (default): MIB of random data, then random 4 KiB pwrites (WRITES of them, an fsync
#   every 5,000, so each lands in its own extent), as in /work/shared/notes/performance-facts.md:
#   an image the guest keeps rewriting.
# - fill: an empty (sparse) image of MIB whose every 4 KiB block is written once, in random order
#   (an fsync every 5,000; WRITES unused): an image the guest filled by random writes, as a
#   thin-provisioned disk is. No byte of it is overwritten, so its extents hold only the image.
# `dd iflag=direct bs=4M` of each file (file order) is printed beside it: reading a fragmented
# file in file order is random I/O.
# Goal (issue 16): the fragmented image scrubs at least 0.8x as fast as its twin; peak
# resident memory <= 64 MiB.
# Also printed: what each image holds on disk and what each scrub read from the loop device (its
# own /sys count). A random write to the middle of an extent leaves the whole old extent
# allocated (btrfs frees an extent only when no byte of it is referenced), so the fragmented
# image's extents hold more bytes than the image; scrub reads the dead 4 KiB between live
# sectors rather than split its reads into tens of thousands of small ones. Reading its extents
# whole, an I/O-bound scrub of the image reaches at most twin bytes / fragmented bytes of the
# twin's speed; the device throughput ratio (bytes read per second, fragmented against twin) says
# how near it is.
# Also timed: both scrubs again with the filesystem's trees in the page cache (the copies are
# still read from the device, with O_DIRECT). A cold scrub of the fragmented image must first
# list its extent items from disk (a 16 KiB leaf for every ~200 extents, read one at a time by
# each of the kernel's tree searches) before the first sorted read can start: the difference
# between the two ratios is that listing, on this machine's device.
#   bench/scrub_fragmented.sh [MIB] [WRITES] [RUNS] [MODE]
#     defaults 1024 131072 3 rewrite; MODE rewrite|fill; root; not a test
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mib=${1:-1024} writes=${2:-131072} runs=${3:-3} mode=${4:-rewrite}
[[ $mode == rewrite || $mode == fill ]] ||
  { echo "bench: mode $mode: rewrite or fill" >&2; exit 64; }
bench_require jq bc mkfs.btrfs losetup filefrag python3 /usr/bin/time
bench_loop_btrfs $((mib * 3 + 1024)) single/dup --direct-io
frag=$BENCH_MNT/frag.raw twin=$BENCH_MNT/twin.raw
used0=$(bench_data_used "$BENCH_MNT")
if [[ $mode == rewrite ]]; then
  echo "writing $mib MiB, then $writes random 4 KiB writes..."
  dd if=/dev/urandom of="$frag" bs=4M count=$((mib / 4)) status=none
  sync
else
  echo "filling $mib MiB by 4 KiB writes in random order..."
  truncate -s "${mib}M" "$frag"
fi
python3 - "$frag" "$mib" "$writes" "$mode" <<'EOF'
import os, random, sys
path, mib, writes, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
blocks = mib * 256
rng = random.Random(16)
if mode == "fill":
    order = list(range(blocks))
    rng.shuffle(order)
else:
    order = [rng.randrange(blocks) for _ in range(writes)]
fd = os.open(path, os.O_WRONLY)
for i, block in enumerate(order):
    os.pwrite(fd, os.urandom(4096), block * 4096)
    if i % 5000 == 4999:
        os.fsync(fd)
os.fsync(fd)
os.close(fd)
EOF
used1=$(bench_data_used "$BENCH_MNT")
cp --reflink=never "$frag" "$twin"
sync
used2=$(bench_data_used "$BENCH_MNT")
extents() { filefrag "$1" | awk '{ print $2 }'; }
echo "extents: fragmented $(extents "$frag"), twin $(extents "$twin")"

declare -A secs=() devread=()
rss=()
timed() { # [--warm] LABEL COMMAND...  (--warm: the page cache kept; the command run once before)
  local warm=0 label t0 t1 r0 r1
  [[ $1 == --warm ]] && { warm=1; shift; }
  label=$1
  shift
  if ((warm)); then
    "$@"
  else
    bench_cold
  fi
  r0=$(bench_dev_read "$BENCH_LOOP")
  t0=$(bench_now)
  "$@"
  t1=$(bench_now)
  r1=$(bench_dev_read "$BENCH_LOOP")
  secs[$label]+="$(echo "$t1 - $t0" | bc -l) "
  devread[$label]+="$((r1 - r0)) "
}
scrub() {
  /usr/bin/time -f "%M" -o "$BENCH_TMP/rss" "$VMCSUM" --json scrub --no-progress --no-history \
    "$1" >"$BENCH_TMP/scrub.json" || true
  [[ $(jq '.files[0].examined' "$BENCH_TMP/scrub.json") == true ]] ||
    { echo "bench: scrub of $1 failed" >&2; jq . "$BENCH_TMP/scrub.json" >&2; exit 1; }
  rss+=("$(cat "$BENCH_TMP/rss")")
}
for ((r = 0; r < runs; r++)); do
  timed dd-twin dd if="$twin" of=/dev/null bs=4M iflag=direct status=none
  timed dd-frag dd if="$frag" of=/dev/null bs=4M iflag=direct status=none
  timed scrub-twin scrub "$twin"
  timed scrub-frag scrub "$frag"
  # The filesystem's trees cached (scrub reads the copies with O_DIRECT: the data still comes
  # from the device): what is left without listing the fragmented image's extent items and
  # csums from disk, which a cold scrub must do before its first sorted read.
  timed --warm scrub-twin-warm scrub "$twin"
  timed --warm scrub-frag-warm scrub "$frag"
done
echo "image: $mib MiB ($mode), single data, $runs cold runs each"
# shellcheck disable=SC2086 # $1 is a space-separated list
med() { printf '%s\n' $1 | bench_median; }
for l in dd-twin dd-frag scrub-twin scrub-frag scrub-twin-warm scrub-frag-warm; do
  # shellcheck disable=SC2086 # a space-separated list
  bench_stats "$l" s ${secs[$l]}
done
echo "ratio dd fragmented/twin throughput: $(echo "$(med "${secs[dd-twin]}") / $(med "${secs[dd-frag]}")" | bc -l | xargs printf "%.2f")"
echo "ratio scrub fragmented/twin throughput: $(echo "$(med "${secs[scrub-twin]}") / $(med "${secs[scrub-frag]}")" | bc -l | xargs printf "%.2f") (goal >= 0.8)"
echo "  with the filesystem's trees in the page cache (data still read from the device):" \
  "$(echo "$(med "${secs[scrub-twin-warm]}") / $(med "${secs[scrub-frag-warm]}")" | bc -l | xargs printf "%.2f");" \
  "the cold scrub's extra $(echo "($(med "${secs[scrub-frag]}") - $(med "${secs[scrub-frag-warm]}")) - ($(med "${secs[scrub-twin]}") - $(med "${secs[scrub-twin-warm]}"))" | bc -l | xargs printf "%.2f") s" \
  "is reading the fragmented image's metadata (its extent items: a leaf for every ~200 extents)"
mibs() { echo "$1 / 1048576" | bc -l | xargs printf "%.0f"; }
frag_bytes=$((used1 - used0)) twin_bytes=$((used2 - used1))
((frag_bytes > 0 && twin_bytes > 0)) ||
  { echo "bench: btrfs filesystem df saw no data written ($used0 $used1 $used2)" >&2; exit 1; }
echo "data extents on disk: fragmented $(mibs $frag_bytes) MiB, twin $(mibs $twin_bytes) MiB" \
  "(btrfs filesystem df before and after each was written)"
bound=$(echo "$twin_bytes / $frag_bytes" | bc -l | xargs printf "%.2f")
echo "  reading its extents whole, an I/O-bound scrub of it reaches at most $bound of the twin's speed"
# Bytes the device served per second of each scrub (medians of the runs).
rate() { echo "$(med "${devread[$1]}") / $(med "${secs[$1]}")" | bc -l; }
echo "read from the device per scrub: fragmented $(mibs "$(med "${devread[scrub-frag]}")") MiB," \
  "twin $(mibs "$(med "${devread[scrub-twin]}")") MiB"
echo "ratio device throughput during scrub, fragmented/twin: $(echo "$(rate scrub-frag) / $(rate scrub-twin)" |
  bc -l | xargs printf "%.2f") (1.00: the fragmented scrub drives the device as fast as the twin's)"
echo "ratio scrub/dd of the twin: $(echo "$(med "${secs[dd-twin]}") / $(med "${secs[scrub-twin]}")" | bc -l | xargs printf "%.2f")"
echo "vmcsum peak resident memory: $(printf '%s\n' "${rss[@]}" | sort -g | tail -1 | awk '{ printf "%.1f", $1 / 1024 }') MiB (goal <= 64)"
