#!/usr/bin/env bash
# Paths named on the command line against paths met in a walked tree, for the commands that walk
# directories of images (scrub, repair, audit): a symlink named on the command line is followed
# once (like find -H: /var/lib/libvirt/images -> /srv/images is a common layout), a symlink
# below it never. Oracle: GNU find -H ARG -type f, each path canonicalized by realpath: the
# regular files the command must take, and only those.
#  * a symlink to a directory of images, and one to an image;
#  * inside the tree, a symlink to an image outside it and one to a directory: not followed;
#  * a dangling symlink: exit 3 and a reason that says so, nothing scrubbed or repaired.
# And what scripts read from the tables: -o path --no-headings prints those files' paths and
# nothing else (no details, notes or summary around the rows).
# Every document is validated against its schema.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq find realpath
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"

make_btrfs --size 256 -d dup -m dup
cd "$MNT"
mkdir images other other/deeper
for f in images/a.raw images/b.raw other/outside.raw other/deeper/d.raw; do
  head -c 1048576 /dev/urandom >"$f"
done
ln -s ../other/outside.raw images/link-to-outside.raw
ln -s ../other/deeper images/link-to-dir
ln -s images imglnk
ln -s images/a.raw alnk
ln -s nothing-here dangling
sync

# The regular files find -H takes for ARG, canonical, sorted, one line.
want() { find -H "$1" -type f -print0 | xargs -0 realpath | LC_ALL=C sort | paste -sd ' '; }
# jq FILTER over a document's paths, sorted, one line.
got() { jq -r "$2" "$1" | LC_ALL=C sort | paste -sd ' '; }
run() { # OUT ARGS... ; the exit status in OUT.rc
  local out=$1 rc=0
  shift
  VMCSUM_STATE_DIR=$IT_TMP/state "$VMCSUM" --json "$@" >"$out" 2>"$out.err" || rc=$?
  echo "$rc" >"$out.rc"
}

check_eq "oracle: the directory behind the symlink holds two images" 2 "$(want imglnk | wc -w)"
for arg in imglnk alnk images; do
  w=$(want "$arg")
  run "$IT_TMP/scrub.$arg.json" scrub --no-progress --no-history "$arg"
  check_eq "scrub $arg: the files find -H takes, exit 0" "$w 0" \
    "$(got "$IT_TMP/scrub.$arg.json" '.files[].canonical_path') $(cat "$IT_TMP/scrub.$arg.json.rc")"
  check_eq "scrub $arg: every file examined, 2 copies verified" "true 2" \
    "$(jq -r '[(all(.files[]; .examined)), ([.files[].copies] | min)] | join(" ")' "$IT_TMP/scrub.$arg.json")"
  run "$IT_TMP/repair.$arg.json" repair -n --no-progress "$arg"
  check_eq "repair -n $arg: the files find -H takes, all clean, exit 0" "$w 0" \
    "$(got "$IT_TMP/repair.$arg.json" '.files[] | select(.action == "clean") | .canonical_path') $(cat "$IT_TMP/repair.$arg.json.rc")"
  run "$IT_TMP/audit.$arg.json" audit --kernel-log "" "$arg"
  check_eq "audit $arg: the images among the files find -H takes" "$w" \
    "$(jq -r '.images[].path' "$IT_TMP/audit.$arg.json" | xargs -r realpath | LC_ALL=C sort | paste -sd ' ')"
done
check_eq "audit alnk: listed under the image's canonical path, its format from the image's name" \
  "$(realpath alnk) raw" "$(jq -r '.images[0] | "\(.path) \(.format)"' "$IT_TMP/audit.alnk.json")"
# Not followed below the named path: neither the file nor the directory the links lead to.
check_eq "scrub imglnk: nothing outside the directory" "" \
  "$(jq -r '.files[].canonical_path | select(contains("/other/"))' "$IT_TMP/scrub.imglnk.json")"

run "$IT_TMP/scrub.dangling.json" scrub --no-progress --no-history dangling
check_eq "scrub of a dangling symlink: exit 3, not examined, says dangling" "3 false true" \
  "$(cat "$IT_TMP/scrub.dangling.json.rc") $(jq -r '.files[0] | "\(.examined) \(.error | test("dangling"))"' "$IT_TMP/scrub.dangling.json")"
run "$IT_TMP/repair.dangling.json" repair -n --no-progress dangling
check_eq "repair -n of a dangling symlink: exit 3, refused" "3 refused" \
  "$(cat "$IT_TMP/repair.dangling.json.rc") $(jq -r '.files[0].action' "$IT_TMP/repair.dangling.json")"

# Tables for scripts: the rows only.
w=$(want imglnk | tr ' ' '\n')
check_eq "audit -o path --no-headings: the image paths, nothing else" "$w" \
  "$(VMCSUM_STATE_DIR=$IT_TMP/state "$VMCSUM" audit --kernel-log "" -o path --no-headings imglnk 2>/dev/null | LC_ALL=C sort)"
check_eq "scrub -o path,bad --no-headings: one row per file, nothing else" "$(sed 's/$/  0/' <<<"$w")" \
  "$(VMCSUM_STATE_DIR=$IT_TMP/state "$VMCSUM" scrub --no-progress --no-history -o path,bad --no-headings imglnk 2>/dev/null | LC_ALL=C sort)"

check_schema --by-name "$IT_TMP"/*.json
cd /
finish
