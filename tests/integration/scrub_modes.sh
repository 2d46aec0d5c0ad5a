#!/usr/bin/env bash
# vmcsum scrub: how it runs and what it takes into account, on real btrfs:
#  * --limit-rate: a scrub of N MiB at R MiB/s takes at least about N/R seconds (the clock is
#    the oracle), and without the limit it is much faster;
#  * the progress bar: on stderr only when it is a terminal (script(1) gives it one), never on
#    stdout, not with -q, not when stderr is not a terminal (--json piped, as scripts run it);
#  * the cache mode a libvirt domain XML gives an image (a config dir of our own) is evidence,
#    and decides a single-copy sector written by a kernel without the buffered fallback (a kernel
#    record made as 6.1.0 before the files were written); written under 6.18.0 (the fallback)
#    the same damage is media;
#  * compressed extents (mount -o compress-force=zstd): a bad on-disk sector is reported with the
#    file range of its extent, and kernel_eio agrees with the kernel's own EIO (dd iflag=direct)
#    over exactly that range.
# Every document is validated against tests/schema/scrub.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq filefrag btrfs btrfs-map-logical dd script
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"

D=$IT_TMP/t
mkdir -p "$D/empty"
scrub_json() { # OUT ARGS... ; exit status in OUT.rc, seconds in OUT.secs
  local out=$1 rc=0 t0
  shift
  t0=$(date +%s.%N)
  "$VMCSUM" --json scrub --no-progress --no-history "$@" >"$out" 2>"$out.err" || rc=$?
  awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.2f\n", a - b }' >"$out.secs"
  echo "$rc" >"$out.rc"
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; } # A >= B (decimals)

# --- --limit-rate ---------------------------------------------------------------------------------
make_btrfs -- -d single -m dup
dd if=/dev/urandom of="$MNT/big.raw" bs=1M count=16 status=none
sync
scrub_json "$D/fast.json" --no-kernel-pass "$MNT/big.raw"
scrub_json "$D/slow.json" --no-kernel-pass --limit-rate 4M "$MNT/big.raw"
check_eq "limit-rate: both exit 0" "0 0" "$(cat "$D/fast.json.rc") $(cat "$D/slow.json.rc")"
check_eq "limit-rate: 16 MiB checked" 16777216 "$(jq '.files[0].checked_bytes' "$D/slow.json")"
fast=$(cat "$D/fast.json.secs")
slow=$(cat "$D/slow.json.secs")
note "16 MiB per copy: ${fast}s unlimited, ${slow}s at 4 MiB/s"
# 16 MiB at 4 MiB/s: 4 s; the limiter lets the first request (4 MiB) through at once.
check "limit-rate 4M: at least (16 - 4) / 4 = 3 s (took $slow s)" ge "$slow" 3
check "limit-rate 4M: at most about twice N/R (took $slow s)" ge 8 "$slow"
check "no limit: at least 3 times faster ($fast s vs $slow s)" ge "$slow" "$(awk -v f="$fast" 'BEGIN { print 3 * f }')"
# A full kernel-verified pass reads the file again through btrfs: the limit covers both passes.
scrub_json "$D/slow2.json" --kernel-pass=full --limit-rate 8M "$MNT/big.raw"
slow2=$(cat "$D/slow2.json.secs")
check "limit-rate 8M with the kernel pass: 32 MiB read, at least (32 - 8) / 8 = 3 s (took $slow2 s)" \
  ge "$slow2" 3
check_eq "limit-rate: kernel pass ran" true "$(jq '.files[0].kernel_pass.run' "$D/slow2.json")"

# --- progress bar ---------------------------------------------------------------------------------
# script(1) runs the command on a pseudo-terminal and copies what reaches it to the typescript;
# stdout is redirected to a file inside, so the typescript holds only stderr.
on_tty() { # TYPESCRIPT STDOUT-FILE VMCSUM-ARGS...
  local ts=$1 outf=$2 cmd
  shift 2
  printf -v cmd '%q ' "$VMCSUM" "$@"
  script -qec "$cmd >$(printf %q "$outf")" "$ts" >/dev/null 2>&1 || true
}
# The bar: name, the pass it is in (per-copy, kernel), percent.
bar_drawn() { grep -qaE $'\r\x1b\\[K.*big\\.raw +([a-z-]+ +)?[0-9]+%' "$1"; }
no_escapes() { ! grep -qaP '\r|\x1b' "$1"; }
on_tty "$D/tty.ts" "$D/tty.out" scrub --no-history --no-kernel-pass --limit-rate 8M "$MNT/big.raw"
check "progress: drawn on stderr when it is a terminal" bar_drawn "$D/tty.ts"
check "progress: several updates" test "$(grep -aoE '[0-9]+% ' "$D/tty.ts" | sort -u | wc -l)" -ge 3
ends_cleared() { # what follows the last "\r ESC [K" is no bar (the typescript ends with script's footer)
  local last
  last=$(grep -aoP '\r\x1b\[K[^\r\x1b]*' "$1" | tail -n1)
  [[ -n $last && $last != *%* ]]
}
check "progress: the line is cleared at the end" ends_cleared "$D/tty.ts"
check "progress: never on stdout" no_escapes "$D/tty.out"
check "progress: stdout has the table" grep -q 'big.raw' "$D/tty.out"
on_tty "$D/q.ts" "$D/q.out" -q scrub --no-history --no-kernel-pass --limit-rate 8M "$MNT/big.raw"
check_fails "progress: not with -q" bar_drawn "$D/q.ts"
on_tty "$D/np.ts" "$D/np.out" scrub --no-progress --no-history --no-kernel-pass "$MNT/big.raw"
check_fails "progress: not with --no-progress" bar_drawn "$D/np.ts"
on_tty "$D/json.ts" "$D/json.out" --json scrub --no-history --no-kernel-pass --limit-rate 8M "$MNT/big.raw"
check "progress: --json stdout on a terminal is still one clean document" \
  jq -e '.schema == "vmcsum.scrub/2"' "$D/json.out"
check "progress: --json stdout has no escape sequences" no_escapes "$D/json.out"
"$VMCSUM" --json scrub --no-history --no-kernel-pass --limit-rate 8M "$MNT/big.raw" 2>"$D/pipe.err" |
  cat >"$D/pipe.out"
check "progress: --json piped, stderr not a terminal: no bar" no_escapes "$D/pipe.err"
check "progress: --json piped: valid JSON" jq -e '.files[0].checked_bytes == 16777216' "$D/pipe.out"
check_schema scrub "$D/fast.json" "$D/slow.json" "$D/slow2.json" "$D/json.out" "$D/pipe.out"

# --- the configured cache mode as evidence (libvirt XML) ------------------------------------------
# Two kernel records, made before the files are written: which kernel wrote them is what counts.
S61=$IT_TMP/state61
S618=$IT_TMP/state618
"$VMCSUM" --state-dir "$S61" record --kernel-release 6.1.0 "$MNT" >/dev/null
"$VMCSUM" --state-dir "$S618" record --kernel-release 6.18.0 "$MNT" >/dev/null
dd if=/dev/urandom of="$MNT/direct.raw" bs=64K count=1 status=none
dd if=/dev/urandom of="$MNT/buffered.raw" bs=64K count=1 status=none
dd if=/dev/urandom of="$MNT/plain.raw" bs=64K count=1 status=none
mkdir -p "$D/libvirt/qemu" "$D/run/qemu"
cat >"$D/libvirt/qemu/vm1.xml" <<EOF
<domain type='kvm'>
  <name>vm1</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source file='$MNT/direct.raw'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='writeback'/>
      <source file='$MNT/buffered.raw'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOF
for f in direct buffered plain; do
  damage_sectors "$MNT/$f.raw" 4096 1 all
done
cfg=(--libvirt-dir "$D/libvirt" --libvirt-run-dir "$D/run" --pve-dir "$D/empty" --no-kernel-pass)
scrub_json "$D/cfg61.json" --state-dir "$S61" "${cfg[@]}" --kernel-release 6.1.0 "$MNT/direct.raw" "$MNT/buffered.raw" "$MNT/plain.raw"
scrub_json "$D/cfg618.json" --state-dir "$S618" "${cfg[@]}" --kernel-release 6.18.0 "$MNT/direct.raw" "$MNT/buffered.raw" "$MNT/plain.raw"
byname() { jq -r --arg n "$2" ".files[] | select(.path | endswith(\"/\" + \$n)) | $3" "$1"; }
check_eq "config: direct.raw configured by vm1 with cache=none (O_DIRECT)" \
  '[{"source":"libvirt:vm1","cache":"none","io":"native","o_direct":true,"target":"vda"}]' \
  "$(byname "$D/cfg61.json" direct.raw '.configured | tojson')"
check_eq "config: buffered.raw configured by vm1 with cache=writeback" \
  '[{"source":"libvirt:vm1","cache":"writeback","io":"","o_direct":false,"target":"vdb"}]' \
  "$(byname "$D/cfg61.json" buffered.raw '.configured | tojson')"
check_eq "config: plain.raw named by no configuration" '[]' "$(byname "$D/cfg61.json" plain.raw '.configured | tojson')"
check_eq "config, 6.1 (no fallback): the only copy of a cache=none image is a false mismatch" \
  false-mismatch "$(byname "$D/cfg61.json" direct.raw '.bad[0].class')"
check "config: the evidence names the domain and the cache mode" \
  jq -e '.files[] | select(.path | endswith("/direct.raw")) | .bad[0].evidence | any(. == "the image is configured with O_DIRECT (libvirt:vm1 cache=none)")' "$D/cfg61.json"
check_eq "config, 6.1: cache=writeback stays undetermined" undetermined \
  "$(byname "$D/cfg61.json" buffered.raw '.bad[0].class')"
check "config: the evidence says configured without O_DIRECT" \
  jq -e '.files[] | select(.path | endswith("/buffered.raw")) | .bad[0].evidence | any(test("configured without O_DIRECT \\(libvirt:vm1 cache=writeback\\)"))' "$D/cfg61.json"
check_eq "config, 6.1: unconfigured stays undetermined, no configuration evidence" "undetermined false" \
  "$(byname "$D/cfg61.json" plain.raw '"\(.bad[0].class) \(.bad[0].evidence | any(test("configured")))"')"
check_eq "config, 6.1: written-without-fallback, o-direct-configured" "true true" \
  "$(byname "$D/cfg61.json" direct.raw '.bad[0].evidence_codes | "\(index("written-without-fallback") != null) \(index("o-direct-configured") != null)"')"
check_eq "config, written under 6.18 (buffered fallback): cache=none does not make it the race: media" \
  "media true" \
  "$(byname "$D/cfg618.json" direct.raw '"\(.bad[0].class) \(.bad[0].evidence_codes | index("written-with-fallback") != null)"')"
check "config, 6.18: still said in the evidence" \
  jq -e '.files[] | select(.path | endswith("/direct.raw")) | .bad[0].evidence | any(test("configured with O_DIRECT"))' "$D/cfg618.json"
# the running libvirt status file (<domstatus>) counts too
mv "$D/libvirt/qemu/vm1.xml" "$D/vm1.xml"
{ echo "<domstatus state='running' pid='1'>"; cat "$D/vm1.xml"; echo "</domstatus>"; } >"$D/run/qemu/vm1.xml"
scrub_json "$D/cfgrun.json" --state-dir "$S61" "${cfg[@]}" --kernel-release 6.1.0 "$MNT/direct.raw"
check_eq "config: a running domain's status file is read as well" false-mismatch \
  "$(byname "$D/cfgrun.json" direct.raw '.bad[0].class')"
check_schema scrub "$D/cfg61.json" "$D/cfg618.json" "$D/cfgrun.json"

# --- compressed extents: the file range of the extent, and the kernel's EIO -----------------------
make_btrfs --mount-opts compress-force=zstd -- -d dup -m dup
head -c 1M < <(yes "vmcsum compressed extent test line") >"$MNT/c.raw"
sync
filefrag -v -b4096 "$MNT/c.raw" >"$D/frag"
# the second extent: "   1:   32..  63:  <phys>..  <phys>:   32: ... encoded"
read -r coff clen clog < <(awk '/encoded/ { gsub(/[.:]/, " "); if ($2 > 0) { print $2 * 4096, ($3 - $2 + 1) * 4096, $4 * 4096; exit } }' "$D/frag") || true
if [[ -z ${clog:-} ]]; then
  note "filefrag:"
  _it_indent <"$D/frag"
  check_eq "compress-force=zstd gives encoded extents" yes no
else
  note "compressed extent: file range $coff+$clen, on-disk logical $clog"
  unmount_btrfs
  head -c 4096 /dev/urandom >"$D/garbage"
  while read -r mirror dev phys; do
    dd if="$D/garbage" of="$dev" bs=4096 count=1 seek="$phys" oflag=seek_bytes,direct \
      conv=notrunc,fsync status=none
  done < <(copies_of "$clog" "${DEVS[0]}")
  mount_btrfs
  drop_caches
  scrub_json "$D/comp.json" "$MNT/c.raw"
  check_eq "compressed: exit 2" 2 "$(cat "$D/comp.json.rc")"
  check_eq "compressed: one bad sector, at the damaged on-disk logical" "1 $clog true" \
    "$(jq -r '.files[0].bad | "\(length) \(.[0].logical) \(.[0].compressed)"' "$D/comp.json")"
  check_eq "compressed: offset and length are the extent's file range (filefrag)" "$coff $clen" \
    "$(jq -r '.files[0].bad[0] | "\(.offset) \(.length)"' "$D/comp.json")"
  check_eq "compressed: every copy bad, identical: media (O_DIRECT never writes compressed)" \
    "media false true" \
    "$(jq -r '.files[0].bad[0] | "\(.class) \(.copies | any(.matches)) \(.evidence_codes | index("compressed-extent") != null)"' "$D/comp.json")"
  check_eq "compressed: kernel_eio set" true "$(jq '.files[0].bad[0].kernel_eio' "$D/comp.json")"
  check_eq "compressed: every EIO attributed to the extent" '[]' \
    "$(jq -c '.files[0].kernel_pass.eio_not_found_per_copy' "$D/comp.json")"
  # oracle: the kernel's EIO, sector by sector, is exactly the extent's file range
  eio=()
  for ((o = coff - 8192; o < coff + clen + 8192; o += 4096)); do
    if ! dd if="$MNT/c.raw" of=/dev/null bs=4096 count=1 skip=$((o / 4096)) iflag=direct status=none 2>/dev/null; then
      eio+=("$o")
    fi
  done
  check_eq "compressed: dd iflag=direct fails exactly over the extent's file range" \
    "$coff..$((coff + clen - 4096)) $((clen / 4096))" "${eio[0]:-none}..${eio[-1]:-none} ${#eio[@]}"
  check_eq "compressed: vmcsum's EIO sector count = dd's" "${#eio[@]}" \
    "$(jq '.files[0].kernel_pass.eio_sectors' "$D/comp.json")"
  check_schema scrub "$D/comp.json"
fi

finish
