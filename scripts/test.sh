#!/usr/bin/env bash
# Installs everything, builds, and runs the whole test suite: the README's test command and
# what CI runs. As root the integration tests use real btrfs on loop devices and
# user-mode-linux; without root they are reported as skipped, never as passed.
#   scripts/test.sh                 everything (what CI runs)
#   scripts/test.sh --quick         one build, unit + integration tests, no sanitizer pass
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
quick=0
[[ ${1:-} == --quick ]] && quick=1

step() { printf '\n=== %s\n' "$*"; }

step "install dependencies"
scripts/setup.sh --no-build

step "static checks"
scripts/check-source.sh

jobs=$(nproc)
step "build (warnings are errors)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMCSUM_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

step "tests"
status=0
ctest --test-dir build --output-on-failure -j1 || status=1

step "install into a staging directory (what a packager does)"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
DESTDIR="$stage" cmake --install build --prefix /usr >/dev/null
for f in usr/sbin/vmcsum usr/share/man/man8/vmcsum.8 usr/share/bash-completion/completions/vmcsum \
         usr/share/zsh/vendor-completions/_vmcsum usr/share/fish/vendor_completions.d/vmcsum.fish \
         usr/lib/systemd/system/vmcsum-record.service; do
  if [[ -e $stage/$f ]]; then echo "installed /$f"; else echo "MISSING /$f"; status=1; fi
done
if man_out=$(groff -man -ww -z "$stage/usr/share/man/man8/vmcsum.8" 2>&1) && [[ -z $man_out ]]; then
  echo "man page: groff -ww reports nothing"
else
  echo "man page warnings:"; echo "$man_out"; status=1
fi

if ((!quick)); then
  step "AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DVMCSUM_SANITIZE=ON -DVMCSUM_WERROR=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  # user-mode-linux runs host binaries inside a 6.1 guest where ASan's shadow mappings do not
  # fit; those tests already ran above with the normal build.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j1 -LE uml || status=1

  step "fuzzing: bounded libFuzzer campaigns over the parsers (clang)"
  # Only the fuzz targets are built here; the rest of the tree was tested above.
  if CXX=clang++ cmake -S . -B build-fuzz -DVMCSUM_FUZZ=ON >/dev/null &&
     cmake --build build-fuzz -j"$jobs" --target fuzz; then
    ctest --test-dir build-fuzz --output-on-failure -L fuzz || status=1
  else
    echo "fuzz build failed"; status=1
  fi
fi

step "reliability figures (tests/RELIABILITY.md)"
# This run's figures go to build/ for a maintainer to look at or commit; CI only checks that the
# committed file is well formed and complete, never that a number stayed the same.
scripts/reliability.sh -o build/RELIABILITY.md || true
scripts/reliability.sh --check || status=1

step "result"
if ((status)); then echo "FAILED"; else echo "all test stages passed"; fi
exit "$status"
