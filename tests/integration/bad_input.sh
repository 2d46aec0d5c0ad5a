#!/usr/bin/env bash
# Bad inputs, table-driven: every row is one awkward path (missing, a FIFO, a device, a symlink
# loop, a name that is not UTF-8, a 16 TiB sparse file, a file on tmpfs/ext4/overlay/procfs, a
# read-only mount or snapshot, a full filesystem, a caller without privilege...), and every
# command that takes a path runs on it. Each case asserts, without trusting vmcsum's own words:
#  * no hang: it ends within `timeout 60`, and no crash (exit status below 128, no sanitizer or
#    std::terminate text on stderr);
#  * the exit status is one vmcsum(8) documents (0, 1, 2, 3, 64) and the JSON's exit_code says
#    the same;
#  * stdout is exactly one JSON document with a "schema" key (jq);
#  * a failure says why: stderr, or a non-empty reason/error/message in the JSON;
#  * nothing changed on disk: find -printf (type, size, mode, owner, inode, mtime, link target),
#    sha256sum and lsattr of the input (and what it points to) are the same before and after, and
#    no file appeared next to it. Where the input is a valid image or directory and the command
#    is `set --nocow` (which is then supposed to act), only the data must be unchanged.
# A case that fails because of a known bug in another part of vmcsum is listed in KNOWN below:
# it prints "# KNOWN: ..." and is left out of the asserted set instead of failing.
# Last line before the summary: "# figures: bad-input rows=N commands=M cases=K failed=F known=J",
# read by scripts/reliability.sh.
# shellcheck disable=SC2317 # (the row_* functions are called by name, from ROWS)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq lsattr setpriv mkfifo mknod python3 sha256sum timeout mkfs.ext4 losetup
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"

NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all)
# Users other than root must reach the test's files: $IT_TMP is mktemp's 0700.
chmod 711 "$IT_TMP"
NOBODY_STATE=$IT_TMP/state-nobody
mkdir -p "$NOBODY_STATE"
chown 65534:65534 "$NOBODY_STATE"

# --- the filesystems ------------------------------------------------------------------------------
make_btrfs --size 256 -d single -m dup
MAIN=$MNT
make_btrfs --size 256 -d single -m dup
RO=$MNT
make_btrfs --size 256 -d single -m single
FULL=$MNT
OUT=$IT_TMP/outside # not below any filesystem the rows hand to vmcsum
mkdir -p "$OUT" "$IT_TMP/cases"
printf 'outside the tree\n' >"$OUT/target"

extra_mount() { # MOUNTPOINT mount-args...
  mkdir -p -- "$1"
  _IT_MOUNTS+=("$1")
  mount "${@:2}" "$1"
}

# Data that a scrub would check: 1 MiB of pseudo-random bytes, written through the page cache.
fill_file() { head -c "${2:-1048576}" /dev/urandom >"$1"; }

# --- the rows: one setup function each; it sets P (the path handed to vmcsum), optionally
# WATCH (more paths that must not change), AS (nobody: run as uid 65534 without capabilities)
# and VALID (1: the input is a real image or directory, so `set --nocow` may convert it).
row_missing() { P=$IT_TMP/does-not-exist; }
row_empty_arg() { P=""; }
row_directory() {
  P=$MAIN/dir
  mkdir -p "$P"
  fill_file "$P/img"
  VALID=1
}
row_fifo() {
  P=$MAIN/fifo
  mkfifo "$P"
}
row_char_device() {
  P=$MAIN/null
  mknod "$P" c 1 3
}
row_block_device() {
  truncate -s 8M "$IT_TMP/blockdev.img"
  P=$(_it_losetup "$IT_TMP/blockdev.img")
  _IT_LOOPS+=("$P")
  _IT_IMAGES+=("$IT_TMP/blockdev.img")
  head -c 65536 /dev/urandom | dd of="$P" bs=64k conv=notrunc,fsync status=none
}
row_socket() {
  P=$MAIN/socket
  python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$P"
}
row_symlink_loop() {
  P=$MAIN/loop-a
  ln -s loop-b "$P"
  ln -s loop-a "$MAIN/loop-b"
}
row_dangling_symlink() {
  P=$MAIN/dangling
  ln -s does-not-exist "$P"
}
# A directory whose only entry is a symlink to a file on another filesystem: the walk must not
# follow it (vmcsum(8): symbolic links inside a directory are never followed).
row_symlink_out() {
  P=$MAIN/linkdir
  mkdir -p "$P"
  ln -s "$OUT/target" "$P/escape"
  WATCH=("$OUT/target")
  VALID=1
}
row_newline_name() {
  P=$MAIN/$'new\nline.img'
  fill_file "$P"
  VALID=1
}
row_non_utf8_name() {
  P=$MAIN/$'bad\xff\xfename.img'
  fill_file "$P"
  VALID=1
}
row_sparse_16t() {
  P=$MAIN/sparse16t.img
  truncate -s 16T "$P"
  printf 'data at the start\n' | dd of="$P" conv=notrunc status=none
  VALID=1
}
row_tmpfs() {
  extra_mount "$IT_TMP/tmpfs" -t tmpfs -o size=16m tmpfs
  P=$IT_TMP/tmpfs/img
  fill_file "$P"
}
row_ext4() {
  truncate -s 64M "$IT_TMP/ext4.img"
  _IT_IMAGES+=("$IT_TMP/ext4.img")
  mkfs.ext4 -q -F "$IT_TMP/ext4.img"
  local dev
  dev=$(_it_losetup "$IT_TMP/ext4.img")
  _IT_LOOPS+=("$dev")
  extra_mount "$IT_TMP/ext4" -t ext4 "$dev"
  P=$IT_TMP/ext4/img
  fill_file "$P"
}
# Overlay with its lower layer on btrfs: the file's data is on btrfs, but the path is not.
row_overlay() {
  mkdir -p "$MAIN/lower"
  fill_file "$MAIN/lower/img"
  extra_mount "$IT_TMP/ovl-rw" -t tmpfs -o size=16m tmpfs
  mkdir -p "$IT_TMP/ovl-rw/upper" "$IT_TMP/ovl-rw/work"
  extra_mount "$IT_TMP/ovl" -t overlay \
    -o "lowerdir=$MAIN/lower,upperdir=$IT_TMP/ovl-rw/upper,workdir=$IT_TMP/ovl-rw/work" overlay
  P=$IT_TMP/ovl/img
  WATCH=("$MAIN/lower/img")
}
row_procfs() { P=/proc/version; }
row_unreadable() {
  P=$MAIN/unreadable.img
  fill_file "$P"
  chmod 000 "$P"
  AS=nobody
}
row_read_only_mount() {
  P=$RO/img
  fill_file "$P"
  sync -f "$P"
  mount -o remount,ro "$RO"
}
row_read_only_snapshot() {
  mkdir -p "$MAIN/subvol-src"
  btrfs subvolume create "$MAIN/subvol" >/dev/null
  fill_file "$MAIN/subvol/img"
  btrfs subvolume snapshot -r "$MAIN/subvol" "$MAIN/snap-ro" >/dev/null
  P=$MAIN/snap-ro/img
}
# An image with checksummed data on a filesystem with no room left for data: anything that needs
# a copy must refuse and leave the image as it was.
row_full_filesystem() {
  P=$FULL/img
  fill_file "$P" $((4 << 20))
  sync -f "$P"
  dd if=/dev/zero of="$FULL/filler" bs=1M status=none 2>/dev/null || true
  sync -f "$FULL"
  # The last sectors of the last data chunk.
  dd if=/dev/zero of="$FULL/filler2" bs=4k status=none 2>/dev/null || true
  sync -f "$FULL"
}
row_non_root() {
  P=$MAIN/plain.img
  fill_file "$P"
  AS=nobody
}

ROWS=(missing empty_arg directory fifo char_device block_device socket symlink_loop
  dangling_symlink symlink_out newline_name non_utf8_name sparse_16t tmpfs ext4 overlay procfs
  unreadable read_only_mount read_only_snapshot full_filesystem non_root)

# --- the commands: name -> argv after `vmcsum --json` (the path follows) -----------------------------
COMMANDS=(audit show set_nocow set_dry scrub repair_dry repair probe bench)
declare -A ARGV=(
  [audit]="audit"
  [show]="show"
  [set_nocow]="set --nocow"
  [set_dry]="set --nocow -n"
  [scrub]="scrub --no-progress --no-history"
  [repair_dry]="repair -n --no-progress"
  [repair]="repair --no-progress"
  [probe]="probe"
  [bench]="bench --seconds 5 --runs 1"
)
# probe and bench measure the filesystem of a directory they write scratch files in: run them
# only where that is a bad place (no btrfs there, no room, read-only, no privilege), not where
# they would legitimately write.
declare -A SKIP_CMD=()
for _r in directory symlink_out newline_name non_utf8_name sparse_16t; do
  SKIP_CMD[$_r/probe]=1 SKIP_CMD[$_r/bench]=1
done

# Cases that fail because of a bug outside this test's territory: "row/command" -> why.
declare -A KNOWN=(
)

# --- fingerprints ---------------------------------------------------------------------------------
# strict: everything stat, sha256sum and lsattr say about PATH (and below it), except atime and
# ctime (reading changes the first; the second moves on a no-op chattr).
fp_strict() {
  local p=$1
  [[ -e $p || -L $p ]] || {
    echo "absent"
    return
  }
  if [[ $p == /proc/* ]]; then
    # procfs makes inodes on lookup and drops them under memory pressure: a file's inode number
    # and times change between two looks with nothing written (seen under load). What can
    # change by a write is its content and mode.
    find -P "$p" -xdev -printf '%P|%y|%m|%U|%G\n' 2>&1 | LC_ALL=C sort
  else
    find -P "$p" -xdev -printf '%P|%y|%s|%m|%U|%G|%i|%T@|%l\n' 2>&1 | LC_ALL=C sort
  fi
  find -P "$p" -xdev -type f -size -1G -exec sha256sum -- {} + 2>&1 | LC_ALL=C sort
  find -P "$p" -xdev -type f -size +1G -printf '%P|%b blocks\n' 2>&1
  find -P "$p" -xdev \( -type f -o -type d \) -exec lsattr -d -- {} + 2>/dev/null | LC_ALL=C sort
}
# content: names, types, sizes and data only (what `set --nocow` must keep when it converts).
fp_content() {
  local p=$1
  [[ -e $p || -L $p ]] || {
    echo "absent"
    return
  }
  find -P "$p" -xdev -printf '%P|%y|%s|%l\n' 2>&1 | LC_ALL=C sort
  find -P "$p" -xdev -type f -size -1G -exec sha256sum -- {} + 2>&1 | awk '{print $1}' | LC_ALL=C sort
}
# The names next to PATH: a temp file, backup or lock left behind shows here.
fp_neighbours() {
  local dir
  [[ -n $1 ]] || return 0
  dir=$(dirname -- "$1")
  [[ $dir == /proc || $dir == /dev ]] && return 0
  find "$dir" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>&1 | LC_ALL=C sort
}
fingerprint() { # LEVEL
  local w
  if [[ $1 == content ]]; then fp_content "$P"; else fp_strict "$P"; fi
  fp_neighbours "$P"
  for w in "${WATCH[@]}"; do fp_strict "$w"; done
}

# --- one case -------------------------------------------------------------------------------------
CASES=0
FAILED=0
KNOWN_HIT=0
run_case() { # ROW CMD
  local row=$1 cmd=$2 id=$1.$2 level=strict before after rc=0 problems=""
  local out=$IT_TMP/cases/$id.json err=$IT_TMP/cases/$id.err
  local -a argv runner=() env=(env "VMCSUM_STATE_DIR=$VMCSUM_STATE_DIR")
  read -r -a argv <<<"${ARGV[$cmd]}"
  if [[ $AS == nobody ]]; then
    runner=("${NOBODY[@]}")
    env=(env "VMCSUM_STATE_DIR=$NOBODY_STATE")
  fi
  [[ $VALID == 1 && $cmd == set_nocow ]] && level=content
  before=$(fingerprint "$level")
  # bench and probe write their scratch files in the current directory when given none; the
  # path is always given here, but a wrong default must not land in the source tree.
  (cd "$IT_TMP/cases" && timeout -k 5 60 "${env[@]}" "${runner[@]}" "$VMCSUM" --json \
    "${argv[@]}" -- "$P" >"$out" 2>"$err" </dev/null) || rc=$?
  after=$(fingerprint "$level")

  if ((rc == 124 || rc == 137)); then
    problems+=" hung (killed by timeout 60);"
  elif ((rc >= 128)); then
    problems+=" killed by signal $((rc - 128));"
  elif [[ ! " 0 1 2 3 64 " == *" $rc "* ]]; then
    problems+=" exit status $rc is not a documented one;"
  fi
  if grep -qE 'terminate called|AddressSanitizer|runtime error:|Assertion .* failed|Segmentation' "$err"; then
    problems+=" crash text on stderr;"
  fi
  local ndocs schema code
  ndocs=$(jq -s 'length' "$out" 2>/dev/null) || ndocs="invalid JSON"
  if [[ $ndocs != 1 ]]; then
    problems+=" stdout is not one JSON document ($ndocs);"
  else
    schema=$(jq -r '.schema // empty' "$out")
    [[ $schema == vmcsum.* ]] || problems+=" no schema key;"
    code=$(jq -r '.exit_code // empty' "$out")
    [[ -z $code || $code == "$rc" ]] || problems+=" JSON exit_code $code but exit status $rc;"
  fi
  if ((rc != 0)) && [[ ! -s $err ]] &&
    ! jq -e '[.. | objects | (.reason?, .error?, .message?) | strings | select(length > 0)] | length > 0' \
      "$out" >/dev/null 2>&1; then
    problems+=" exit status $rc without a message (stderr empty, no reason in the JSON);"
  fi
  if [[ $before != "$after" ]]; then
    problems+=" changed on disk: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -4 | tr '\n' ' ' || true);"
  fi

  CASES=$((CASES + 1))
  if [[ -n $problems && -n ${KNOWN[$row/$cmd]:-} ]]; then
    KNOWN_HIT=$((KNOWN_HIT + 1))
    note "KNOWN: $row/$cmd: ${KNOWN[$row/$cmd]} (this run:$problems)"
    return 0
  fi
  [[ -n $problems ]] && FAILED=$((FAILED + 1))
  # The first stderr line goes into the description, so a log shows what each case said.
  local said
  said=$(head -n 1 "$err" | cut -c 1-140)
  check_eq "$row: ${ARGV[$cmd]} (exit $rc${said:+: $said})" "" "$problems"
  if [[ -n $problems ]]; then
    _it_indent <"$err"
    head -c 600 "$out" | _it_indent
  fi
}

NROWS=0
for row in "${ROWS[@]}"; do
  P="" WATCH=() AS="" VALID=0
  "row_$row"
  NROWS=$((NROWS + 1))
  for cmd in "${COMMANDS[@]}"; do
    [[ -n ${SKIP_CMD[$row/$cmd]:-} ]] && continue
    run_case "$row" "$cmd"
  done
done

# A FIFO named through a symlink, with a writer blocked in open(2) until a reader opens it: no
# command may open it (an open of a device or FIFO can have effects; the woken writer is the
# kernel's own witness that it was opened). Each command gets its own writer.
mkfifo "$MAIN/witness.fifo"
ln -s witness.fifo "$MAIN/witness.img"
for cmd in "${COMMANDS[@]}"; do
  [[ $cmd == probe || $cmd == bench ]] && continue # they measure a filesystem, not the path
  timeout 30 sh -c 'echo x >"$1"' sh "$MAIN/witness.fifo" 2>/dev/null &
  writer=$!
  bg_track "$writer"
  sleep 0.2
  # shellcheck disable=SC2086 # ARGV holds the words of the command
  timeout 20 "$VMCSUM" --json ${ARGV[$cmd]} "$MAIN/witness.img" >/dev/null 2>&1 || true
  sleep 0.5
  check_eq "$cmd of a symlink to a FIFO: never opened (its writer still waits)" waiting \
    "$(kill -0 "$writer" 2>/dev/null && echo waiting || echo woken)"
  kill "$writer" 2>/dev/null || true
  wait "$writer" 2>/dev/null || true
  bg_untrack "$writer"
done

printf '# figures: bad-input rows=%d commands=%d cases=%d failed=%d known=%d\n' \
  "$NROWS" "${#COMMANDS[@]}" "$CASES" "$FAILED" "$KNOWN_HIT"
finish
