#!/usr/bin/env bash
# RAID5/RAID6 data (issue 17) on real btrfs, through tests/tools/raid56_probe (the mapping and
# parity code of src/btrfs/raid56.cpp), held against oracles that do not use that code:
#  * mapping: each sampled sector's data location = btrfs-map-logical mirror 1, its full
#    stripe's P = mirror 2 and Q = mirror 3 (btrfs-progs' __btrfs_map_block raid_map);
#  * the known pattern written (every sector tagged with its file offset) is found at each
#    sector's mapped device offset (dd from the device);
#  * P of sampled sectors = the xor of the units btrfs-map-logical names, computed in perl; Q of
#    one sector recomputed in perl bit by bit over GF(2^8);
#  * clean filesystem: every sector's csum matches, P and Q hold, every rebuild matches;
#  * damage one data sector: only it stops matching, its rebuilds from P, Q and P+Q match;
#    damage P (Q) of a sector: only that parity check fails; RAID6, both data units of one full
#    stripe damaged: only the P+Q rebuild gives them back;
#  * btrfs check --check-data-csum flags no sector but damaged data ones (progs 6.2 misses
#    some on RAID5/6), and reads through the kernel return the pattern (btrfs rebuilds the
#    damaged sectors from parity, as the probe did).
# raid5 on 3 devices and raid6 on 4, with the four checksum types between them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq perl filefrag btrfs btrfs-map-logical dd cmp
: "${VMCSUM_TOOLS:?VMCSUM_TOOLS must point at the test tools directory}"
PROBE=$VMCSUM_TOOLS/raid56_probe
[[ -x $PROBE ]] || skip "raid56_probe not built: $PROBE"
grep -qw raid6_pq /proc/modules 2>/dev/null || modprobe raid6_pq 2>/dev/null || true

SIZE=$((1024 * 1024)) # 256 sectors: 8 full stripes of 128 KiB on either layout
UNIT=65536

# pattern OFFSET : the 4096 bytes the test file holds at file offset OFFSET.
pattern() {
  perl -e 'my $s = sprintf("raid56 sector at %012d|", $ARGV[0]); print substr($s x 200, 0, 4096)' "$1"
}
write_pattern() { # FILE
  perl -e 'for (my $o = 0; $o < $ARGV[0]; $o += 4096) {
      my $s = sprintf("raid56 sector at %012d|", $o); print substr($s x 200, 0, 4096) }' \
    "$SIZE" >"$1"
}

# dev_sector DEV PHYSICAL OUT : one sector from the device, O_DIRECT (the medium, no bdev cache).
dev_sector() {
  dd if="$1" of="$3" bs=4096 count=1 skip="$2" iflag=skip_bytes,direct status=none
}

# devid -> device: mkfs.btrfs numbers the devices in command-line order.
dev_of() { echo "${DEVS[$(($1 - 1))]}"; }

# "mirror device physical" lines of btrfs-map-logical for one sector.
map_sector() { # LOGICAL
  btrfs-map-logical -l "$1" -b 4096 "${DEVS[0]}" 2>&1 | awk -v l="$1" '
    $1 == "mirror" && $3 == "logical" && $5 == "physical" && $7 == "device" && $4 == l { print $2, $8, $6 }'
}

# The mapping of sampled sectors (every 8th: both units of every full stripe, several offsets
# in a unit) as the probe says and as btrfs-map-logical says.
SAMPLE='select((.file_offset / 4096) % 8 == 3)'
probe_map() { # PROBE_OUT NPARITY
  jq -r --argjson np "$2" "$SAMPLE"' | . as $s | ($s.physical - $s.data[$s.data_index].physical) as $off
    | "\($s.logical) 1 \($s.device) \($s.physical)",
      "\($s.logical) 2 \($s.p.devid) \($s.p.physical + $off)",
      (if $np == 2 then "\($s.logical) 3 \($s.q.devid) \($s.q.physical + $off)" else empty end)' "$1" |
    while read -r l m d p; do
      [[ $d == /* ]] || d=$(dev_of "$d")
      echo "$l $m $d $p"
    done
}
oracle_map() { # PROBE_OUT
  local l
  for l in $(jq -r "$SAMPLE"' | .logical' "$1"); do
    map_sector "$l" | sed "s/^/$l /"
  done
}

# Every sector's bytes at the probe's device offset equal the pattern of its file offset.
pattern_at_mapped_offsets() { # PROBE_OUT
  local off dev phys bad=0
  while read -r off dev phys; do
    dev_sector "$dev" "$phys" "$IT_TMP/.sector"
    cmp -s "$IT_TMP/.sector" <(pattern "$off") || { echo "file offset $off: not at $dev:$phys"; bad=1; }
  done < <(jq -r '"\(.file_offset) \(.device) \(.physical)"' "$1")
  return $bad
}

# parity_by_hand LOGICAL FULL_LOGICAL NDATA NPARITY : reads, at the device offsets
# btrfs-map-logical gives, the sector of every data unit of the full stripe at the same unit
# offset, and P (and Q); checks P = xor and Q = sum 2^j D_j over GF(2^8)/0x11d in perl.
parity_by_hand() {
  local l=$1 full=$2 ndata=$3 np=$4 j off u m d p
  off=$(((l - full) % UNIT))
  local -a files=()
  for ((j = 0; j < ndata; j++)); do
    u=$((full + j * UNIT + off))
    read -r m d p < <(map_sector "$u" | awk '$1 == 1')
    dev_sector "$d" "$p" "$IT_TMP/.d$j"
    files+=("$IT_TMP/.d$j")
  done
  while read -r m d p; do
    ((m >= 2 && m <= np + 1)) || continue
    dev_sector "$d" "$p" "$IT_TMP/.par$m"
  done < <(map_sector "$l")
  files+=("$IT_TMP/.par2")
  ((np == 2)) && files+=("$IT_TMP/.par3")
  perl -e '
    use strict; use warnings;
    my ($np, @f) = @ARGV;
    my @b = map { local $/; open(my $h, "<:raw", $_) or die "$_: $!\n"; scalar <$h> } @f;
    my $q = $np == 2 ? pop @b : undef;
    my $p = pop @b;
    my $x = "\0" x 4096; $x ^= $_ for @b; # string xor
    die "P is not the xor of the data units\n" unless $x eq $p;
    exit 0 unless defined $q;
    sub gmul { my ($a, $c) = @_; my $r = 0;
      while ($c) { $r ^= $a if $c & 1; $a <<= 1; $a ^= 0x11d if $a & 0x100; $c >>= 1 } $r }
    for my $i (0 .. 4095) {
      my ($s, $g) = (0, 1);
      for my $d (@b) { $s ^= gmul($g, ord(substr($d, $i, 1))); $g = gmul($g, 2) }
      die "Q byte $i: want $s, found " . ord(substr($q, $i, 1)) . "\n" if $s != ord(substr($q, $i, 1));
    }' "$np" "${files[@]}"
}

# btrfs check --check-data-csum's complaints, as "logical" lines (any mirror).
check_data_csum() { # OUT ; returns btrfs check's exit status
  local rc=0
  btrfs check --check-data-csum "${DEVS[0]}" >"$1.full" 2>&1 || rc=$?
  grep -oE '^mirror [0-9]+ bytenr [0-9]+ csum ' "$1.full" | awk '{ print $4 }' | sort -nu >"$1" || true
  return $rc
}

probe() { # FILE OUT
  "$PROBE" "$1" >"$2"
}

# A parity check covers one sector-sized slice of every unit of a full stripe: the slices are
# named "full_logical:offset in unit". The slices of the sectors LOGICALS...:
slices_of() { # PROBE_OUT LOGICALS...
  local out=$1
  shift
  jq -r --arg ls "$*" 'select(.logical as $l | $ls | split(" ") | map(tonumber) | index($l))
    | "\(.full_logical):\((.logical - .full_logical) % 65536)"' "$out" | sort -u | tr '\n' ' '
}
# ... and those of the sectors for which FILTER holds.
slices_where() { # PROBE_OUT FILTER
  jq -r "select($2)"' | "\(.full_logical):\((.logical - .full_logical) % 65536)"' "$1" |
    sort -u | tr '\n' ' '
}

# pick PROBE_OUT ROW DATA_INDEX UNIT_OFFSET : the file offset of the sector in the file's
# ROW-th full stripe (0 = the first the file touches), in data unit DATA_INDEX, UNIT_OFFSET
# bytes into it.
pick() {
  jq -s -r --argjson r "$2" --argjson i "$3" --argjson o "$4" '
    ([.[] | .full_logical] | unique | .[$r]) as $full
    | .[] | select(.full_logical == $full and .data_index == $i
                   and (.logical - .full_logical) % 65536 == $o) | .file_offset' "$1"
}

# jq over the probe output: the sorted logicals of sectors for which FILTER holds.
where() { # PROBE_OUT FILTER
  jq -r "select($2) | .logical" "$1" | sort -n | tr '\n' ' '
}

# vmcsum scrub (issue 17 phase 2) on the same damage, against the same oracles.
DOCS=$IT_TMP/json-docs
mkdir -p "$DOCS"
# vscrub OUT FILE [ARGS] : vmcsum --json scrub of FILE (a copy kept for check_schema).
vscrub() {
  local out=$1 f=$2
  shift 2
  VMCSUM_STATE_DIR=$IT_TMP/state "$VMCSUM" --json scrub --no-progress --no-history "$@" "$f" \
    >"$out" 2>"$out.err" || true
  cp -- "$out" "$DOCS/scrub-$(basename "$(dirname "$out")")-$(basename "$out")"
}
# The copies vmcsum lists for the bad sector at LOGICAL, as "kind:matches" words (kind: device,
# or the rebuild).
copies_at() { # DOC LOGICAL
  jq -r --argjson l "$2" '.files[0].bad[] | select(.logical == $l)
    | [.copies[] | "\(.rebuilt // "device"):\(.matches)"] | join(" ")' "$1"
}
# "device physical" of the stale parity sectors vmcsum lists, sorted.
stale_parity() { # DOC
  jq -r '.files[0].parity[] | select(.stale_sectors > 0) | "\(.device) \(.physical + .first_offset)"' \
    "$1" | sort | tr '\n' ' '
}
# "device physical" of mirror M of LOGICAL (btrfs-map-logical; 2 = P, 3 = Q).
mirror_at() { # LOGICAL M
  map_sector "$1" | awk -v m="$2" '$1 == m { print $2, $3 }'
}
read_all() { cat -- "$1" >/dev/null; }
# btrfs scrub's own verdict on the whole filesystem.
btrfs_scrub_clean() {
  btrfs scrub start -B "$MNT" >"$IT_TMP/btrfs-scrub.out" 2>&1 || return 1
  grep -q 'no errors found' "$IT_TMP/btrfs-scrub.out"
}

run_config() { # NAME PROFILE NDEV CSUM
  local name=$1 profile=$2 ndev=$3 csum=$4 np=1 d
  [[ $profile == raid6 ]] && np=2
  local ndata=$((ndev - np))
  make_btrfs --devices "$ndev" --size 512 -- -d "$profile" -m raid1 --csum "$csum"
  d=$IT_TMP/$name
  mkdir -p "$d"
  # A small file first, so the test file starts inside a stripe unit, not on a full stripe.
  head -c 12288 /dev/urandom >"$MNT/lead"
  sync
  write_pattern "$MNT/f"
  sync

  check "$name: raid56_probe" probe "$MNT/f" "$d/clean.json"
  check_eq "$name: one line per sector" 256 "$(jq -s length "$d/clean.json")"
  check_eq "$name: $ndata data units and $np parity per full stripe" "[$ndata]" \
    "$(jq -sc '[.[] | .data | length] | unique' "$d/clean.json")"
  check_eq "$name: clean: every sector matches its csum, P/Q hold, every rebuild matches" "" \
    "$(where "$d/clean.json" ".data_match != true or .p_ok != true or .from_p_match != true
       or ($np == 2 and (.q_ok != true or .from_q_match != true or .from_pq_match != true))
       or ($np == 1 and (.q_ok != null or .from_q_match != null))")"
  check "$name: the pattern is at every sector's mapped device offset" \
    pattern_at_mapped_offsets "$d/clean.json"

  unmount_btrfs
  probe_map "$d/clean.json" "$np" >"$d/map"
  oracle_map "$d/clean.json" >"$d/map.oracle"
  check "$name: data, P$( ((np == 2)) && echo ", Q") locations = btrfs-map-logical ($(wc -l <"$d/map") sampled)" \
    diff -u "$d/map.oracle" "$d/map"
  local l full
  for l in $(jq -r 'select((.file_offset / 4096) % 37 == 5) | "\(.logical):\(.full_logical)"' "$d/clean.json"); do
    full=${l#*:}
    l=${l%:*}
    check "$name: logical $l: parity by hand (perl) holds" parity_by_hand "$l" "$full" "$ndata" "$np"
  done
  check "$name: clean: btrfs check --check-data-csum passes" check_data_csum "$d/check0"
  mount_btrfs

  # One data sector (mirror 1) in one full stripe, P (mirror 2) of a sector in another, Q
  # (mirror 3) of a third; RAID6 also both data units of a fourth full stripe. The sectors are
  # picked from the probe's full stripes (wherever the allocator put the file) and the chosen
  # ones' mapping was checked against btrfs-map-logical above.
  local s_data s_p s_q s_two0 s_two1
  s_data=$(pick "$d/clean.json" 1 0 8192)
  s_p=$(pick "$d/clean.json" 2 1 4096)
  s_q=$(pick "$d/clean.json" 3 0 12288)
  s_two0=$(pick "$d/clean.json" 5 0 24576)
  s_two1=$(pick "$d/clean.json" 5 1 24576)
  damage_sectors "$MNT/f" "$s_data" 1 one:1
  local bad_data=${DAMAGED[0]}
  damage_sectors "$MNT/f" "$s_p" 1 one:2
  local bad_p=${DAMAGED[0]}
  local bad_q=""
  local -a two=()
  if ((np == 2)); then
    damage_sectors "$MNT/f" "$s_q" 1 one:3
    bad_q=${DAMAGED[0]}
    damage_sectors "$MNT/f" "$s_two0" 1 one:1
    two+=("${DAMAGED[0]}")
    damage_sectors "$MNT/f" "$s_two1" 1 one:1
    two+=("${DAMAGED[0]}")
  fi
  check "$name: raid56_probe after damage" probe "$MNT/f" "$d/damaged.json"
  check_eq "$name: damaged: probe still sees 256 sectors" 256 "$(jq -s length "$d/damaged.json")"
  local want_bad
  want_bad=$(printf '%s\n' "$bad_data" "${two[@]}" | sort -n | tr '\n' ' ')
  check_eq "$name: damaged: exactly the damaged data sectors fail their csum" "$want_bad" \
    "$(where "$d/damaged.json" '.data_match != true')"
  check_eq "$name: damaged data sector: rebuilt from P it matches" "true" \
    "$(jq -r --argjson l "$bad_data" 'select(.logical == $l) | .from_p_match' "$d/damaged.json")"
  check_eq "$name: P fails exactly on the slices holding damaged data or P" \
    "$(slices_of "$d/damaged.json" "$bad_data" "$bad_p" "${two[@]}")" \
    "$(slices_where "$d/damaged.json" '.p_ok != true')"
  check_eq "$name: damaged P: the data sector and its rebuilds still match" "true true" \
    "$(jq -r --argjson l "$bad_p" 'select(.logical == $l) | "\(.data_match) \(.from_q_match // true)"' "$d/damaged.json")"
  check_eq "$name: damaged P: the rebuild from P no longer matches" "false" \
    "$(jq -r --argjson l "$bad_p" 'select(.logical == $l) | .from_p_match' "$d/damaged.json")"
  if ((np == 2)); then
    check_eq "$name: Q fails exactly on the slices holding damaged data or Q" \
      "$(slices_of "$d/damaged.json" "$bad_data" "$bad_q" "${two[@]}")" \
      "$(slices_where "$d/damaged.json" '.q_ok != true')"
    check_eq "$name: damaged data sector: rebuilt from Q and from P+Q it matches" "true true" \
      "$(jq -r --argjson l "$bad_data" 'select(.logical == $l) | "\(.from_q_match) \(.from_pq_match)"' "$d/damaged.json")"
    check_eq "$name: two damaged units of one full stripe share it" 1 \
      "$(jq -s --arg two "${two[*]}" '[.[] | select(.logical as $l | $two | split(" ") | map(tonumber) | index($l)) | .full_logical] | unique | length' "$d/damaged.json")"
    check_eq "$name: two damaged units: only the P+Q rebuild gives them back" \
      "false false true false false true " \
      "$(jq -j --arg two "${two[*]}" 'select(.logical as $l | $two | split(" ") | map(tonumber) | index($l)) | "\(.from_p_match) \(.from_q_match) \(.from_pq_match) "' "$d/damaged.json")"
  fi
  # vmcsum scrub, per-copy pass only (a read through btrfs would repair what it reads).
  vscrub "$d/v1.json" "$MNT/f" --no-kernel-pass
  check_eq "$name: vmcsum: exactly the damaged data sectors are bad" "$want_bad" \
    "$(jq -r '.files[0].bad[].logical' "$d/v1.json" | sort -n | tr '\n' ' ')"
  local want_copies="device:false from-p:true"
  ((np == 2)) && want_copies+=" from-q:true from-p-q:true"
  check_eq "$name: vmcsum: damaged data sector: device copy bad, every rebuild matches" \
    "$want_copies" "$(copies_at "$d/v1.json" "$bad_data")"
  check_eq "$name: vmcsum: damaged data sector: media, repairable" "media true" \
    "$(jq -r --argjson l "$bad_data" '.files[0].bad[] | select(.logical == $l) | "\(.class) \(.repairable)"' "$d/v1.json")"
  if ((np == 2)); then
    check_eq "$name: vmcsum: two damaged units of a row: only the P+Q rebuild matches" \
      "device:false from-p:false from-q:false from-p-q:true device:false from-p:false from-q:false from-p-q:true" \
      "$(copies_at "$d/v1.json" "${two[0]}") $(copies_at "$d/v1.json" "${two[1]}")"
  fi
  check_eq "$name: vmcsum: parity mismatches explained by bad data: $np per damaged row" \
    $((np * (np == 2 ? 2 : 1))) "$(jq '[.files[0].parity[] | select(.stale_sectors == 0)] | length' "$d/v1.json")"
  check_eq "$name: vmcsum: every parity mismatch is one sector" "[1]" \
    "$(jq -c '[.files[0].parity[].sectors] | unique' "$d/v1.json")"
  unmount_btrfs
  local want_stale
  want_stale=$({
    mirror_at "$bad_p" 2
    if [[ -n $bad_q ]]; then mirror_at "$bad_q" 3; fi
  } | sort | tr '\n' ' ')
  check_eq "$name: vmcsum: stale parity = the damaged P$( ((np == 2)) && echo "/Q") (btrfs-map-logical)" \
    "$want_stale" "$(stale_parity "$d/v1.json")"
  # btrfs-progs 6.2 exits 0 here and is no oracle for RAID5/6 data: in two runs on RAID5 it
  # listed the damaged data sector once (12 KiB into a full stripe) and not at all the next
  # time (8 KiB into another); on RAID6 it listed none. Whatever it lists must be damaged data,
  # never a sector whose only fault is its parity.
  check_data_csum "$d/check1" || true
  check_eq "$name: btrfs check flags only damaged data sectors" "" \
    "$(comm -23 <(sort -u "$d/check1") <(printf '%s\n' "$bad_data" "${two[@]}" | sort -u))"
  mount_btrfs
  # The kernel reads the file back whole: it rebuilds the damaged sectors from parity (and
  # repairs them on disk), as the probe's rebuilds said it could.
  drop_caches
  check "$name: kernel read returns the pattern" cmp "$MNT/f" <(write_pattern /dev/stdout)
  # That read rewrote the bad data units (the device copy now holds the pattern); vmcsum agrees,
  # and still lists the damaged P/Q: btrfs reads do not check parity.
  local dev phys
  read -r dev phys < <(mirror_at "$bad_data" 1)
  dev_sector "$dev" "$phys" "$IT_TMP/.sector"
  check "$name: after the kernel read: the data unit holds the pattern again" \
    cmp "$IT_TMP/.sector" <(pattern "$s_data")
  vscrub "$d/v3.json" "$MNT/f"
  check_eq "$name: vmcsum after the kernel read: no bad sector, the same stale parity" \
    "0 $want_stale" "$(jq '.files[0].bad | length' "$d/v3.json") $(stale_parity "$d/v3.json")"
  check_eq "$name: vmcsum: stale parity alone is a warning (exit 1)" "warning 1" \
    "$(jq -r '"\(.files[0].severity) \(.exit_code)"' "$d/v3.json")"
  check "$name: btrfs scrub corrects the parity" btrfs scrub start -B "$MNT"
  check "$name: a second btrfs scrub finds nothing" btrfs_scrub_clean
  vscrub "$d/v4.json" "$MNT/f"
  check_eq "$name: vmcsum after btrfs scrub: clean, every full stripe checked" "0 0 true" \
    "$(jq -r '.files[0] | "\(.bad | length) \(.parity | length) \(.parity_checked_stripes >= 8)"' "$d/v4.json")"
  check_eq "$name: vmcsum after btrfs scrub: exit 0" 0 "$(jq .exit_code "$d/v4.json")"
  degraded_check "$name" "$d" "$ndev"
  repair_false_mismatch "$name" "$d"
  release_btrfs
}

# degraded_check NAME DIR NDEV : the last device gone, mounted degraded (read-only: no write may
# leave it behind); vmcsum says which sectors it could not verify (those whose data unit the
# probe found on that device) and checks no full stripe with a unit there. Then all devices again.
degraded_check() {
  local name=$1 d=$2 ndev=$3 missing
  local -a imgs=("${IMGS[@]:0:ndev-1}") all=("${IMGS[@]}")
  missing=${DEVS[ndev - 1]}
  unmount_btrfs
  btrfs device scan --forget "$missing" >/dev/null 2>&1 || true
  release_btrfs
  adopt_btrfs --mount-opts degraded,ro "${imgs[@]}"
  drop_caches
  check "$name: degraded: the kernel reads the whole file" read_all "$MNT/f"
  vscrub "$d/v7.json" "$MNT/f"
  local on_missing
  on_missing=$(jq -s --arg m "$missing" '[.[] | select(.device == $m)] | length * 4096' "$d/clean.json")
  check_eq "$name: degraded: examined, nothing bad, the sectors on device $ndev skipped, the rest checked" \
    "true 0 $on_missing $((SIZE - on_missing))" \
    "$(jq -r '.files[0] | "\(.examined) \(.bad | length) \(.skipped_bytes) \(.checked_bytes)"' "$d/v7.json")"
  check "$name: degraded: a note names the missing device" \
    jq -e --arg n "device $ndev is missing (degraded)" '.files[0].notes | any(startswith($n))' "$d/v7.json"
  check_eq "$name: degraded: no full stripe checked (each has a unit on the missing device)" 0 \
    "$(jq '.files[0].parity_checked_stripes' "$d/v7.json")"
  release_btrfs
  adopt_btrfs "${all[@]}"
}

# repair_false_mismatch NAME DIR : different bytes on the data unit, P and Q of one sector (the
# race's signature: no copy, rebuilt or not, matches); vmcsum calls it a false mismatch and
# repair rewrites the device copy through the filesystem: kernel reads and btrfs scrub are clean.
repair_false_mismatch() {
  local name=$1 d=$2 s_r bad_r
  s_r=$(pick "$d/clean.json" 6 0 4096)
  damage_sectors "$MNT/f" "$s_r" 1 differ
  bad_r=${DAMAGED[0]}
  cp -- "$LAST_GARBAGE" "$d/garbage1"
  drop_caches
  check_fails "$name: race damage: the kernel read fails (EIO)" \
    dd if="$MNT/f" of=/dev/null bs=4096 count=1 skip=$((s_r / 4096)) iflag=direct status=none
  vscrub "$d/v5.json" "$MNT/f" --no-kernel-pass
  check_eq "$name: race damage: one bad sector, no copy matches, copies differ" \
    "$bad_r false false" \
    "$(jq -r '.files[0].bad[] | "\(.logical) \(any(.copies[]; .matches)) \(.copies_identical)"' "$d/v5.json")"
  check_eq "$name: race damage: classified false-mismatch" false-mismatch \
    "$(jq -r '.files[0].bad[0].class' "$d/v5.json")"
  local rc=0
  VMCSUM_STATE_DIR=$IT_TMP/state "$VMCSUM" --json repair --backup-dir "$d/bk" "$MNT/f" \
    >"$d/repair.json" 2>"$d/repair.err" || rc=$?
  cp -- "$d/repair.json" "$DOCS/repair-$name.json"
  check_eq "$name: repair: exit 0, repaired" "0 repaired" "$rc $(jq -r '.files[0].action' "$d/repair.json")"
  drop_caches
  check "$name: after repair: the kernel reads the whole file" read_all "$MNT/f"
  check "$name: after repair: the sector holds the device copy's bytes (mirror 1)" \
    cmp <(dd if="$MNT/f" bs=4096 count=1 skip=$((s_r / 4096)) status=none) <(head -c 4096 "$d/garbage1")
  check "$name: after repair: btrfs scrub finds nothing" btrfs_scrub_clean
  vscrub "$d/v6.json" "$MNT/f"
  check_eq "$name: after repair: vmcsum finds nothing" "0 0" \
    "$(jq -r '.files[0] | "\(.bad | length) \(.parity | length)"' "$d/v6.json")"
}

run_config r5-crc32c raid5 3 crc32c
run_config r6-xxhash raid6 4 xxhash
run_config r5-sha256 raid5 3 sha256
run_config r6-blake2 raid6 4 blake2
check_schema --by-name "$DOCS"/*
finish
