# shellcheck shell=bash disable=SC2034
# (SC2034: OUT, ERR, RC are read by the sourcing test.)
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 The vmcsum authors
#
# Helpers shared by the repair tests (repair.sh, repair_kill.sh, uml_repair.sh). Source after
# lib.sh. Every oracle here is a tool nobody on this project wrote: the kernel's EIO, a
# ro,rescue=ignoredatacsums mount, btrfs scrub, btrfs check, dump-tree, btrfs-map-logical.

OUT=$IT_TMP/repair.json
ERR=$IT_TMP/repair.err
RC=0
BK=$IT_TMP/backup # --backup-dir: outside the filesystems under test
mkdir -p -- "$BK"

# vrepair ARGS... : vmcsum --json repair --backup-dir $BK ARGS; the document in $OUT, stderr in
# $ERR, the exit status in $RC. Never blocks for more than 5 minutes.
# VREPAIR_RUN: the command that runs vmcsum (set for a run in ONE_TASK: the binary itself then, as
# the harness's wrapper forks).
VREPAIR_RUN=("$VMCSUM")
vrepair() {
  set +e
  timeout -k 5 300 "${VREPAIR_RUN[@]}" --json repair --backup-dir "$BK" "$@" >"$OUT" 2>"$ERR"
  RC=$?
  set -e
  _vrepair_note "$@"
}
# Notes the outcome of the last run (action, code, reason of each file), for diagnosis, and keeps
# the document for check_schema --by-name "$DOCS"/* at the end of the test.
DOCS=$IT_TMP/json-docs
mkdir -p -- "$DOCS"
_DOC_SEQ=0
_vrepair_note() {
  local s
  if [[ -s $OUT ]]; then
    _DOC_SEQ=$((_DOC_SEQ + 1))
    cp -- "$OUT" "$DOCS/$_DOC_SEQ.json"
  fi
  s=$(jq -c '[.files[]? | {action, code, reason}]' "$OUT" 2>/dev/null) || s=$(head -c 300 "$ERR")
  note "repair ${*##*/}: exit $RC: ${s:0:400}"
}
# vundo BACKUP ARGS... : vmcsum --json repair --undo BACKUP ARGS (same outputs as vrepair).
vundo() {
  set +e
  timeout -k 5 300 "$VMCSUM" --json repair --undo "$@" >"$OUT" 2>"$ERR"
  RC=$?
  set -e
  _vrepair_note --undo "$@"
}
# jf FILTER : a field of the last document (nothing, never a failure, when it has none).
jf() { jq -r "$@" "$OUT" 2>/dev/null || true; }
# jfile NAME FILTER : FILTER applied to the entry of the last document whose path ends in /NAME.
jfile() {
  jq -c -r --arg n "/$1" "[.files[]? | select(.path | endswith(\$n))][0] | $2" "$OUT" 2>/dev/null || true
}

# Backups in $BK: complete ones, pending ones and temp files.
backups() { find "$BK" -maxdepth 1 -type f -name '*.vmcsum-backup' -printf '%f\n' | sort; }
pending() { find "$BK" -maxdepth 1 -type f -name '*.vmcsum-backup.pending' -printf '%f\n' | sort; }
backup_count() { find "$BK" -maxdepth 1 -type f | wc -l; }
# Does FILE end with the trailer "VMCE" + u64 count + u64 hash (a complete backup)?
backup_complete() { [[ $(tail -c 20 -- "$1" | head -c 4) == VMCE ]]; }

# ign_read FILE OUT : copies FILE as a ro,rescue=ignoredatacsums mount of its filesystem returns
# it (no checksum verified: on dup, mirror 1), then mounts the filesystem as before.
ign_read() {
  local file=$1 out=$2 mnt id opts rel rc=0
  mnt=$(findmnt -n -o TARGET -T "$file")
  id=$(_it_fs_id "$mnt")
  rel=${file#"$mnt"}
  opts=$(_it_mount_opts "$id")
  local -a devs
  read -r -a devs <<<"${_IT_FS_DEVS[$id]}"
  unmount_btrfs "$id"
  mount -t btrfs -o "ro,rescue=ignoredatacsums${opts:+,$opts}" -- "${devs[0]}" "$mnt"
  cat -- "$mnt$rel" >"$out" || rc=$?
  umount -- "$mnt"
  _it_flushbufs "${devs[@]}"
  mount_btrfs "$id"
  drop_caches
  return "$rc"
}

# sector_scan FILE REF : reads FILE sector by sector through the page cache (dropped first) and
# prints "eio OFFSET" for each sector the kernel refuses and "diff OFFSET" for each one that
# reads but differs from REF; "size A B" when the sizes differ. No output: identical, no EIO.
sector_scan() {
  drop_caches
  perl -e '
    use strict; use warnings;
    my ($f, $r) = @ARGV;
    open(my $fh, "<:raw", $f) or die "$f: $!\n";
    open(my $rh, "<:raw", $r) or die "$r: $!\n";
    my ($o, $rb, $b) = (0, "", "");
    while (1) {
      my $n = sysread($rh, $rb, 4096);
      die "$r: $!\n" unless defined $n;
      last if $n == 0;
      sysseek($fh, $o, 0) or die "seek $f: $!\n";
      my $m = sysread($fh, $b, 4096);
      if (!defined $m) { print "eio $o\n"; }
      elsif ($m != $n || $b ne $rb) { print "diff $o\n"; }
      $o += $n;
    }
    my ($fs, $rs) = ((stat $fh)[7], (stat $rh)[7]);
    print "size $fs $rs\n" if $fs != $rs;
  ' "$1" "$2"
}

# reads_ok FILE : the whole file reads through the filesystem without an error (cache dropped).
reads_ok() {
  drop_caches
  cat -- "$1" >/dev/null
}
# eio_at FILE OFFSET : an O_DIRECT read of the sector at OFFSET fails.
eio_at() {
  ! dd if="$1" of=/dev/null bs=4096 count=1 skip=$(($2 / 4096)) iflag=direct status=none 2>/dev/null
}
# bytes_at FILE OFFSET COUNT : sha256 of COUNT bytes at OFFSET.
bytes_at() {
  dd if="$1" bs=4096 skip=$(($2 / 4096)) count=$(($3 / 4096)) status=none 2>/dev/null | sha256sum | cut -c1-64
}

# btrfs_scrub_uncorrectable MNT : runs btrfs scrub start -B -R and prints its uncorrectable_errors
# count (csum_errors and corrected_errors to stderr via note).
btrfs_scrub_uncorrectable() {
  local out
  out=$(btrfs scrub start -B -R "$1" 2>&1) || true
  note "btrfs scrub: $(grep -E '(csum_errors|uncorrectable_errors|corrected_errors):' <<<"$out" | tr -s ' \t\n' ' ')"
  awk '$1 == "uncorrectable_errors:" { print $2; found = 1 } END { if (!found) print "unknown" }' <<<"$out"
}

# check_bad_logicals DEV : "bytenr" of every data-csum complaint of btrfs check (unmounted fs).
check_bad_logicals() {
  _it_flush_fs_of "$1"
  btrfs check --check-data-csum "$1" 2>&1 | grep -oE '^mirror [0-9]+ bytenr [0-9]+ csum ' |
    awk '{print $4}' | sort -n -u || true
}

# extent_refs FILE : one line per EXTENT_DATA item of FILE, from dump-tree of its subvolume:
# "FILEOFF DISK_BYTENR DISK_NUM_BYTES EXTENT_OFFSET NUM_BYTES". Syncs first.
extent_refs() {
  local f=$1 dev tree ino
  dev=$(findmnt -n -o SOURCE -T "$f" | sed 's/\[.*//')
  tree=$(btrfs inspect-internal rootid "$f")
  ino=$(stat -c %i "$f")
  sync -f "$f"
  btrfs filesystem sync "$f" >/dev/null
  _it_flush_fs_of "$dev"
  btrfs inspect-internal dump-tree -t "$tree" "$dev" 2>/dev/null | awk -v ino="$ino" '
    $1 == "item" && $4 == "(" ino && $5 == "EXTENT_DATA" { off = $6; sub(/\)$/, "", off); hit = 1; next }
    hit && $1 == "extent" && $2 == "data" && $3 == "disk" { bytenr = $5; nr = $7; next }
    hit && $1 == "extent" && $2 == "data" && $3 == "offset" { print off, bytenr, nr, $4, $6; hit = 0; next }
    $1 == "item" { hit = 0 }'
}

# extent_items DEV : "BYTENR LENGTH" of every data EXTENT_ITEM in the extent tree.
extent_items() {
  _it_flush_fs_of "$1"
  btrfs inspect-internal dump-tree -t extent "$1" 2>/dev/null |
    awk '$1 == "item" && $5 == "EXTENT_ITEM" { b = $4; sub(/^\(/, "", b); l = $6; sub(/\)$/, "", l); print b, l }'
}

# damaged_extents REFS LOGICAL... : "DISK_BYTENR DISK_NUM_BYTES" of each extent holding one of
# the logical addresses (REFS: a file with extent_refs lines), unique.
damaged_extents() {
  local refs=$1
  shift
  awk -v ls="$*" 'BEGIN { n = split(ls, L, " ") }
    { for (i = 1; i <= n; i++) if (L[i] + 0 >= $2 + 0 && L[i] + 0 < $2 + $3) print $2, $3 }' "$refs" |
    sort -u
}
# ranges_of REFS BYTENR... : "FILEOFF NUM_BYTES" of every file range referencing those extents.
ranges_of() {
  local refs=$1
  shift
  awk -v bs="$*" 'BEGIN { n = split(bs, B, " ") }
    { for (i = 1; i <= n; i++) if ($2 == B[i]) print $1, $5 }' "$refs" | sort -n
}

# device_copies_sha DEV LOGICAL... : sha256 of every copy of each sector, read from the devices
# (filesystem unmounted or synced).
device_copies_sha() {
  local dev=$1 l mirror d phys
  shift
  for l in "$@"; do
    while read -r mirror d phys; do
      printf '%s %s ' "$l" "$mirror"
      dd if="$d" bs=4096 count=1 skip="$phys" iflag=skip_bytes,direct status=none | sha256sum | cut -c1-64
    done < <(copies_of "$l" "$dev")
  done
}

# write_copy DEV LOGICAL MIRROR SRC : writes the 4096 bytes of SRC over copy MIRROR of LOGICAL,
# below btrfs (filesystem unmounted).
write_copy() {
  local dev=$1 l=$2 want=$3 src=$4 mirror d phys
  while read -r mirror d phys; do
    [[ $mirror == "$want" ]] || continue
    dd if="$src" of="$d" bs=4096 count=1 seek="$phys" oflag=seek_bytes,direct conv=notrunc,fsync status=none
    return 0
  done < <(copies_of "$l" "$dev")
  note "write_copy: logical $l has no mirror $want"
  return 1
}

# is_backup_name NAME IMAGE INODE : NAME is "<IMAGE>.<INODE>.<YYYYmmddTHHMMSSZ>.vmcsum-backup".
is_backup_name() {
  local re="^${2//./\\.}\\.$3\\.[0-9]{8}T[0-9]{6}Z\\.vmcsum-backup\$"
  [[ $1 =~ $re ]]
}
# has_nocow_attr FILE : lsattr shows the C attribute.
has_nocow_attr() { lsattr -d -- "$1" | awk '{ exit ($1 ~ /C/) ? 0 : 1 }'; }

# journal_has_repair PATH BACKUP_NAME : the system journal has vmcsum's line for PATH with a
# backup named BACKUP_NAME (fields VMCSUM_PATH, VMCSUM_BACKUP).
journal_has_repair() {
  journalctl -t vmcsum -o json --no-pager -n 50 2>/dev/null |
    jq -e --arg p "$1" --arg b "$2" \
      'select(.VMCSUM_PATH == $p and ((.VMCSUM_BACKUP // "") | endswith($b)))' >/dev/null
}

wait_file() { # FILE : waits up to 10 s for FILE to exist
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -e $1 ]] && return 0
    sleep 0.1
  done
  note "timed out waiting for $1"
  return 1
}

# sha_of FILE : sha256 of FILE's content, or "unreadable" when a read fails.
sha_of() {
  local s
  s=$(sha256sum <"$1" 2>/dev/null) || s=unreadable
  printf '%s\n' "${s%% *}"
}

# damage_at_all FILE : an image of NEXT (set by the caller) 1 MiB extents, 2 sectors damaged
# with different bytes on each copy (the race's signature) in every other extent, written in a
# gap of the kernel record (a state directory of its own per call: this host's kernel falls back,
# and a record that dates the file excludes the race). Sets IMG, DAMAGED_OFFS (file offsets) and
# REF (the original, with mirror 1's bytes where damaged: what a repair from mirror 1 leaves).
REC_SEQ=0
damage_at_all() {
  local f=$1 i off
  IMG=$f
  REC_SEQ=$((REC_SEQ + 1))
  export VMCSUM_STATE_DIR=$IT_TMP/record.$REC_SEQ
  for ((i = 0; i < NEXT; i++)); do
    dd if=/dev/urandom of="$f" bs=1M count=1 seek="$i" conv=notrunc status=none
    sync -f "$f"
  done
  REF=$IT_TMP/$(basename "$f").ref
  cp -- "$f" "$REF"
  DAMAGED_OFFS=()
  for ((i = 0; i < NEXT; i += 2)); do
    off=$((i * M + (RANDOM % 200) * 4096))
    damage_sectors "$f" "$off" 2 differ
    dd if="$LAST_GARBAGE" of="$REF" bs=4096 seek=$((off / 4096)) count=2 conv=notrunc status=none
    DAMAGED_OFFS+=("$off" $((off + 4096)))
  done
}
