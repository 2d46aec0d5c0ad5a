#!/usr/bin/env bash
# vmcsum show against real btrfs, checked with tools nobody here wrote: lsattr, dump-tree
# (inode flags), dump-super (checksum type, sector size), btrfs filesystem df/du, filefrag,
# btrfs inspect-internal rootid / subvolid-resolve, stat.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq lsattr filefrag btrfs setpriv mkfifo
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"

# The inode flags field of INODE_ITEM `ino` in tree `tree`, as dump-tree prints it: "0x3".
dump_tree_flags() { # DEV TREE INO
  btrfs inspect-internal dump-tree -t "$2" "$1" 2>/dev/null | awk -v ino="$3" '
    $1 == "item" && $4 == "(" ino && $5 == "INODE_ITEM" { hit = 1; next }
    hit && $1 == "sequence" { for (i = 1; i <= NF; i++) if ($i == "flags") { split($(i+1), a, "("); if (!done) print a[1]; done = 1 } }
    $1 == "item" { hit = 0 }'
}

json_of() { # PATH -> the show entry
  "$VMCSUM" --json show -- "$1" | jq -c '.files[0]'
}

# Compares one file's JSON with every oracle.
check_file() { # PATH DEV
  local f=$1 dev=$2 j ino rootid
  j=$(json_of "$f")
  ino=$(stat -c %i "$f")
  rootid=$(btrfs inspect-internal rootid "$f")
  local want_nocow=false
  [[ $(lsattr -d "$f" | awk '{print $1}') == *C* ]] && want_nocow=true
  check_eq "$f: nocow = lsattr" "$want_nocow" "$(jq -r .nocow <<<"$j")"
  local flags
  flags=$(dump_tree_flags "$dev" "$rootid" "$ino")
  check_eq "$f: inode flags = dump-tree ($flags)" "$((flags))" \
    "$(jq -r '[.inode_flags[] | {NODATASUM:1,NODATACOW:2,READONLY:4,NOCOMPRESS:8,PREALLOC:16,SYNC:32,IMMUTABLE:64,APPEND:128,NODUMP:256,NOATIME:512,DIRSYNC:1024,COMPRESS:2048}[.]] | add // 0' <<<"$j")"
  local want_nds=false
  (((flags & 1) != 0)) && want_nds=true
  check_eq "$f: nodatasum = dump-tree" "$want_nds" "$(jq -r .nodatasum <<<"$j")"
  check_eq "$f: subvolume_id = rootid" "$rootid" "$(jq -r .subvolume_id <<<"$j")"
  check_eq "$f: size = stat" "$(stat -c %s "$f")" "$(jq -r .size <<<"$j")"
  check_eq "$f: allocated = stat" "$(($(stat -c %b "$f") * $(stat -c %B "$f")))" "$(jq -r .allocated <<<"$j")"
  if [[ -f $f ]]; then
    check_eq "$f: extents = filefrag" "$(filefrag "$f" | sed -E 's/.*: ([0-9]+) extents? found/\1/')" \
      "$(jq -r .extents <<<"$j")"
    local total excl
    read -r total excl _ < <(btrfs filesystem du --raw "$f" | tail -1)
    check_eq "$f: shared_bytes = fi du total - exclusive" "$((total - excl))" "$(jq -r .shared_bytes <<<"$j")"
  fi
  check_eq "$f: nothing unknown as root" "{}" "$(jq -c .unknown <<<"$j")"
  if [[ -d $f ]]; then
    check_eq "$f: no extent facts for a directory" "null null" "$(jq -r '"\(.extents) \(.shared_bytes)"' <<<"$j")"
  fi
}

# Facts of the whole filesystem against dump-super and fi df.
check_fs() { # DEV EXPECT_CSUM EXPECT_PROFILE FILE
  local j
  j=$(json_of "$4")
  local super
  super=$(btrfs inspect-internal dump-super "$1")
  check_eq "csum_type = dump-super" "$(awk '$1 == "csum_type" {gsub(/[()]/, "", $3); print $3}' <<<"$super")" \
    "$(jq -r .csum_type <<<"$j")"
  check_eq "csum_type is $2" "$2" "$(jq -r .csum_type <<<"$j")"
  check_eq "sector_size = dump-super" "$(awk '$1 == "sectorsize" {print $2}' <<<"$super")" \
    "$(jq -r .sector_size <<<"$j")"
  local dfprof
  dfprof=$(btrfs filesystem df "$MNT" | awk -F'[ ,:]+' '$1 == "Data" {print tolower($2)}' | head -1)
  check_eq "data_profile = fi df" "$dfprof" "$(jq -r .data_profile <<<"$j")"
  check_eq "data_profile is $3" "$3" "$(jq -r .data_profile <<<"$j")"
}

populate() { # DIR
  local d=$1
  dd if=/dev/urandom of="$d/plain.raw" bs=1M count=6 status=none
  touch "$d/nocow.raw" && chattr +C "$d/nocow.raw"
  dd if=/dev/urandom of="$d/nocow.raw" bs=1M count=3 conv=notrunc status=none
  cp --reflink=always "$d/plain.raw" "$d/clone.raw"
  truncate -s 1G "$d/sparse.raw"
  dd if=/dev/urandom of="$d/sparse.raw" bs=64K count=16 seek=1000 conv=notrunc status=none
  dd if=/dev/urandom of="$d/sparse.raw" bs=64K count=3 seek=5 conv=notrunc status=none
  mkdir "$d/nocow-dir" && chattr +C "$d/nocow-dir"
  # +C on a non-empty file is silently ignored by the kernel: show must say "no".
  dd if=/dev/urandom of="$d/late.raw" bs=64K count=1 status=none
  chattr +C "$d/late.raw" 2>/dev/null || true
  sync
}

run_config() { # DESC CSUM PROFILE MOUNT_OPTS MKFS_ARGS...
  local desc=$1 csum=$2 profile=$3 mopts=$4
  shift 4
  note "--- $desc"
  make_btrfs --size 512 --mount-opts "$mopts" "$@"
  populate "$MNT"
  check_fs "${DEVS[0]}" "$csum" "$profile" "$MNT/plain.raw"
  local f
  for f in plain.raw nocow.raw clone.raw sparse.raw nocow-dir late.raw; do
    check_file "$MNT/$f" "${DEVS[0]}"
  done
  check_eq "late +C on non-empty file did not stick" "false" "$(json_of "$MNT/late.raw" | jq -r .nocow)"
  check_eq "reflinked file shares all its bytes" "$(stat -c %s "$MNT/plain.raw")" \
    "$(json_of "$MNT/clone.raw" | jq -r .shared_bytes)"
}

run_config "single, crc32c" crc32c single "" -d single -m single --csum crc32c
run_config "dup, xxhash" xxhash64 dup "" -d dup -m dup --csum xxhash
run_config "raid1 over two devices, sha256" sha256 raid1 "" --devices 2 -d raid1 -m raid1 --csum sha256

# blake2 with compression: the mount option, a property and the attribute.
run_config "single, blake2, compress=zstd" blake2 single "compress=zstd" --csum blake2
head -c 4M < <(yes "compressible text for zstd") >"$MNT/text.raw"
touch "$MNT/prop.raw" && btrfs property set "$MNT/prop.raw" compression lzo
touch "$MNT/attr.raw" && chattr +c "$MNT/attr.raw"
sync
j=$(json_of "$MNT/text.raw")
check_eq "compression from the mount option" "zstd mount" "$(jq -r '"\(.compression) \(.compression_source)"' <<<"$j")"
check "compressed extents counted (filefrag says encoded)" \
  bash -c "[[ \$(jq -r .compressed_bytes <<<'$j') -gt 0 ]] && filefrag -v '$MNT/text.raw' | grep -q encoded"
check_eq "compressed file extents = filefrag" "$(filefrag "$MNT/text.raw" | sed -E 's/.*: ([0-9]+) extents? found/\1/')" "$(jq -r .extents <<<"$j")"
check_eq "compression from the property" "lzo property" "$(json_of "$MNT/prop.raw" | jq -r '"\(.compression) \(.compression_source)"')"
# chattr +c makes the kernel store the mount's algorithm as the property (btrfs_fileattr_set).
check_eq "chattr +c: compression zstd" "zstd" "$(json_of "$MNT/attr.raw" | jq -r .compression)"
check "chattr +c: lsattr shows c" bash -c "lsattr '$MNT/attr.raw' | cut -d' ' -f1 | grep -q c"
# The property "no" is the attribute m (FS_NOCOMP_FL); chattr -c removes the property the
# kernel stored (fstests btrfs/059): vmcsum reads the property only where an attribute shows
# one, so these say what the kernel does, checked against btrfs property get and lsattr.
touch "$MNT/nocomp.raw" && btrfs property set "$MNT/nocomp.raw" compression no
check "property no: lsattr shows m" bash -c "lsattr '$MNT/nocomp.raw' | cut -d' ' -f1 | grep -q m"
check_eq "property no: compression none" "none property" "$(json_of "$MNT/nocomp.raw" | jq -r '"\(.compression) \(.compression_source)"')"
chattr -c "$MNT/attr.raw"
check_eq "chattr -c: btrfs property get shows no compression" "" "$(btrfs property get "$MNT/attr.raw" compression)"
check_eq "chattr -c: the mount option again" "zstd mount" "$(json_of "$MNT/attr.raw" | jq -r '"\(.compression) \(.compression_source)"')"
btrfs property set "$MNT/prop.raw" compression ""
check_eq "property reset: lsattr shows neither c nor m" "" "$(lsattr "$MNT/prop.raw" | cut -d' ' -f1 | tr -cd 'cm')"
check_eq "property reset: the mount option again" "zstd mount" "$(json_of "$MNT/prop.raw" | jq -r '"\(.compression) \(.compression_source)"')"

# NODATASUM without NOCOW: a file created under -o nodatasum (lsattr shows nothing).
run_config "single, nodatasum mount" crc32c single "nodatasum" -d single -m single
check_eq "nodatasum mount: file has NODATASUM" "true" "$(json_of "$MNT/plain.raw" | jq -r .nodatasum)"
check_eq "nodatasum mount: but no NOCOW" "false" "$(json_of "$MNT/plain.raw" | jq -r .nocow)"
check_eq "nodatasum mount: lsattr shows no C" "----" "$(lsattr "$MNT/plain.raw" | cut -c1-4 | tr -d 'a-zA-Z' | tr -c '-' '-' | head -c4)"

# A subvolume: id and path agree with btrfs inspect-internal.
btrfs subvolume create "$MNT/vms" >/dev/null
mkdir -p "$MNT/vms/sub"
dd if=/dev/urandom of="$MNT/vms/sub/guest.img" bs=64K count=2 status=none
sync
j=$(json_of "$MNT/vms/sub/guest.img")
svid=$(btrfs inspect-internal rootid "$MNT/vms/sub/guest.img")
check_eq "subvolume id = rootid" "$svid" "$(jq -r .subvolume_id <<<"$j")"
check_eq "subvolume path = subvolid-resolve" "$(btrfs inspect-internal subvolid-resolve "$svid" "$MNT")" "$(jq -r .subvolume_path <<<"$j")"
check_file "$MNT/vms/sub/guest.img" "${DEVS[0]}"

# --- bad input -------------------------------------------------------------------------------------
weird=$MNT/$'bad\xffname\n.raw'
printf 'x' >"$weird"
mkfifo "$MNT/fifo"
ln -s plain.raw "$MNT/link.raw"
out=$IT_TMP/bad.json
set +e
timeout 20 "$VMCSUM" --json show "$weird" "$MNT/fifo" "$MNT/link.raw" "$MNT/missing.raw" /proc/self/status >"$out" 2>"$IT_TMP/bad.err"
rc=$?
set -e
check_eq "missing path: exit 3, the others still reported" 3 "$rc"
check "JSON stays valid with a non-UTF-8 name" jq -e . "$out"
check_eq "non-UTF-8 name escaped reversibly" 'bad\xffname\x0a.raw' "$(jq -r '.files[0].path' "$out" | sed 's|.*/||')"
check_eq "non-UTF-8 name flagged" false "$(jq -r '.files[0].path_is_utf8' "$out")"
check_eq "FIFO examined without blocking" "fifo" "$(jq -r '.files[1].kind' "$out")"
# Where it lies is known (findmnt, the oracle), its btrfs facts are not (it is never opened).
check_eq "FIFO on btrfs: on_btrfs, fs as findmnt says, fsid unknown and why" \
  "true $(findmnt -n -o FSTYPE -T "$MNT/fifo") null not a regular file or directory" \
  "$(jq -r '.files[1] | "\(.on_btrfs) \(.fs) \(.fsid) \(.unknown.fsid)"' "$out")"
check_eq "symlink followed and reported" "plain.raw file" "$(jq -r '.files[2] | "\(.symlink_target) \(.kind)"' "$out")"
check_eq "missing path has an error" "false" "$(jq -r '.files[3].examined' "$out")"
check_eq "non-btrfs path says so" "false proc" "$(jq -r '.files[4] | "\(.on_btrfs) \(.fs)"' "$out")"
check_eq "stdout is only the document" 1 "$(jq -s length "$out")"
check "error on stderr names the missing path" grep -q 'missing.raw' "$IT_TMP/bad.err"

set +e
"$VMCSUM" show /proc/self/status >/dev/null 2>&1
rc=$?
set -e
check_eq "non-btrfs path alone: exit 1 (warning)" 1 "$rc"
set +e
"$VMCSUM" show "$MNT/fifo" >"$IT_TMP/fifo.txt" 2>"$IT_TMP/fifo.err"
rc=$?
set -e
check_eq "FIFO alone: exit 1, the reason on stderr" "1 1" "$rc $(grep -c 'not a regular file' "$IT_TMP/fifo.err")"
check "text table on a clean btrfs file exits 0" "$VMCSUM" show "$MNT/plain.raw"
# Output that cannot be written (/dev/full: ENOSPC on every write) is no success.
for fmt in --json --color=never; do
  set +e
  "$VMCSUM" "$fmt" show "$MNT/plain.raw" >/dev/full 2>"$IT_TMP/full.err"
  rc=$?
  set -e
  check_eq "stdout on a full device ($fmt): exit 3, ENOSPC on stderr" "3 1" \
    "$rc $(grep -c 'writing to standard output failed: No space left on device' "$IT_TMP/full.err")"
done

# --- unprivileged: degrade, say why ------------------------------------------------------------
chmod o+rx "$IT_TMP" "$(dirname "$MNT")" "$MNT"
chmod o+r "$MNT/plain.raw"
set +e
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$VMCSUM" --json show "$MNT/plain.raw" >"$IT_TMP/nobody.json" 2>/dev/null
rc=$?
set -e
check_eq "unprivileged: exit 1 (facts unknown)" 1 "$rc"
check_eq "unprivileged: nocow still known" false "$(jq -r '.files[0].nocow' "$IT_TMP/nobody.json")"
check_eq "unprivileged: nodatasum null" null "$(jq -r '.files[0].nodatasum' "$IT_TMP/nobody.json")"
check "unprivileged: the reason names CAP_SYS_ADMIN" \
  jq -e '.files[0].unknown.nodatasum | test("CAP_SYS_ADMIN")' "$IT_TMP/nobody.json"
check_eq "unprivileged: csum type still known" crc32c "$(jq -r '.files[0].csum_type' "$IT_TMP/nobody.json")"
# A file in a directory nobody may search: what it is cannot be known; it is not "missing".
mkdir -m 0700 "$MNT/private"
: >"$MNT/private/x.raw"
set +e
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$VMCSUM" --json show \
  "$MNT/private/x.raw" >"$IT_TMP/denied.json" 2>/dev/null
rc=$?
set -e
check_eq "unprivileged, directory not searchable: kind unknown, the error says why, exit 3" \
  "unknown Permission denied 3" \
  "$(jq -r '.files[0] | "\(.kind) \(.error)"' "$IT_TMP/denied.json" | sed 's/ (.*//') $rc"

check_schema show "$out" "$IT_TMP/nobody.json" "$IT_TMP/denied.json"
finish
