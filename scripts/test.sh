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
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMCSUM_WERROR=ON -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
cmake --build build -j"$jobs"

step "tests"
status=0
ctest --test-dir build --output-on-failure -j1 || status=1

step "install into a staging directory (what a packager does)"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
DESTDIR="$stage" cmake --install build --prefix /usr >/dev/null
for f in usr/sbin/vmcsum usr/share/man/man8/vmcsum.8 usr/share/man/man8/vmcsum-scrub.8 \
         usr/share/vmcsum/schemas/scrub.json usr/share/bash-completion/completions/vmcsum \
         usr/share/zsh/vendor-completions/_vmcsum usr/share/fish/vendor_completions.d/vmcsum.fish \
         usr/lib/systemd/system/vmcsum-record.service usr/lib/systemd/system/vmcsum-audit.timer \
         usr/lib/systemd/system/vmcsum-scrub.timer usr/lib/systemd/system/vmcsum-audit.service \
         usr/lib/systemd/system/vmcsum-scrub.service etc/default/vmcsum; do
  if [[ -e $stage/$f ]]; then echo "installed /$f"; else echo "MISSING /$f"; status=1; fi
done
# Every page: groff -ww and mandoc -T lint (style level included) say nothing.
if [[ -f $stage/usr/share/man/man8/vmcsum-scrub.8 ]]; then
  scripts/lint-man.sh "$stage"/usr/share/man/man8/vmcsum*.8 || status=1
else
  echo "MISSING man pages"; status=1
fi

if command -v systemd-analyze >/dev/null; then
  # The units name /usr/sbin/vmcsum and man:vmcsum(8), which live in the staging tree, not on
  # this host: verify copies that point there.
  mkdir "$stage/verify"
  for u in "$stage"/usr/lib/systemd/system/vmcsum-*; do
    sed "s|/usr/sbin/vmcsum|$stage/usr/sbin/vmcsum|g" "$u" >"$stage/verify/${u##*/}"
  done
  if ua=$(MANPATH=$stage/usr/share/man systemd-analyze verify "$stage"/verify/* 2>&1) && [[ -z $ua ]]; then
    echo "systemd units: systemd-analyze verify reports nothing"
  else
    echo "systemd-analyze verify:"; echo "$ua"; status=1
  fi
fi

if ((!quick)); then
  step "Debian package: build, lintian, hardening-check, install, run, purge"
  scripts/package-test.sh --keep "$stage/debs" || status=1

  step "Ansible example (contrib/ansible) run locally against the package"
  scripts/ansible-test.sh "$stage/debs" || status=1

  step "AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DVMCSUM_SANITIZE=ON -DVMCSUM_WERROR=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  # user-mode-linux runs host binaries inside a 6.1 guest where ASan's shadow mappings do not
  # fit; those tests already ran above with the normal build.
  # The 50-kill trials already ran above (their figures are the normal build's); under the
  # sanitizers 10 each look for memory errors on the same paths in a quarter of the time.
  SET_KILLS=10 REPAIR_KILLS=10 \
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
