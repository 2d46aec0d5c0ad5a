#!/usr/bin/env bash
# One idempotent entry point: install every build and test dependency from Debian 12's archive,
# then configure and build into build/. Run as root (apt-get). Safe to run again.
#   scripts/setup.sh            install + build (Release with debug info)
#   scripts/setup.sh --no-build install only
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
no_build=0
for arg in "$@"; do
  case "$arg" in
    --no-build) no_build=1 ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 64 ;;
  esac
done

# Build tools and libraries (why each one is here: README "Dependencies").
build_deps=(
  build-essential cmake pkg-config clang clang-format
  libcli11-dev nlohmann-json3-dev libbtrfsutil-dev doctest-dev libmount-dev
  libpugixml-dev libsystemd-dev libxxhash-dev libisal-dev libgcrypt20-dev
  libclang-rt-14-dev
)
# Oracles and fixtures the tests use: tools nobody on this project wrote.
test_deps=(
  btrfs-progs e2fsprogs util-linux jq qemu-utils user-mode-linux attr acl tmux strace
  groff-base bash-completion fish zsh kmod procps psmisc xxd
  systemd-journal-remote python3-jsonschema
  debhelper lintian devscripts man-db mandoc ansible-core python3-apt prometheus
)

missing=()
for p in "${build_deps[@]}" "${test_deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# btrfs and loop must be available to the integration tests; load them when they are modules.
if [[ $(id -u) -eq 0 ]]; then
  modprobe btrfs 2>/dev/null || true
  modprobe loop 2>/dev/null || true
fi

((no_build)) && exit 0
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${VMCSUM_CMAKE_ARGS:-} >/dev/null
cmake --build "$here/build" -j"$(nproc)"
