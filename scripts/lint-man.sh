#!/usr/bin/env bash
# Lints man pages: groff -ww and mandoc -T lint (style level included) must say nothing.
# Used by the test suite (ctest lint.man, on the configured pages) and by scripts/test.sh (on
# the installed ones). mandoc answers 1 for style remarks and 2+ for worse; every remark counts.
#   scripts/lint-man.sh PAGE...
set -uo pipefail
(($#)) || { echo "usage: $0 PAGE..." >&2; exit 64; }
for tool in groff mandoc; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
out=""
for page in "$@"; do
  out+=$(groff -man -ww -z "$page" 2>&1)
  out+=$(mandoc -T lint "$page" 2>&1)
done
if [[ -n $out ]]; then
  echo "man page warnings:"; echo "$out"; exit 1
fi
echo "man pages: groff -ww and mandoc -T lint report nothing ($# pages)"
