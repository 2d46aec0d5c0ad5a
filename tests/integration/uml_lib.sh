# SPDX-License-Identifier: GPL-2.0-or-later
# uml_lib.sh: run payloads inside a user-mode-linux 6.1 guest (Debian's linux.uml), whose btrfs
# still has the O_DIRECT false-checksum bug that the host kernel fixed (968f19c5b1b7). Source it
# from bash:  . "$(dirname "$0")/uml_lib.sh"
#
# The guest's root file system is the host's / through hostfs, read-only: host binaries (mount,
# btrfs, dio_race, vmcsum) run inside unchanged, and payload scripts are host paths. No root is
# needed to boot; ptrace must be allowed (UML 6.1 runs guest processes under ptrace).
#
# Functions (all of them return a status; none of them exits or sets traps in the caller):
#
#   uml_available
#       Returns 0 if a guest can be booted here. Otherwise prints one line with the reason to
#       stdout and returns 1 (tests: `reason=$(uml_available) || skip "$reason"`). Checks the
#       kernel binary, timeout(1), ptrace policy, the scratch directory (writable, exec-mappable,
#       visible in the guest) and, unless UML_PROBE=0, boots a guest once (~3 s) to prove it.
#
#   uml_run [IMG...] -- SCRIPT [KEY=value...]
#       Boots linux.uml with IMG, IMG2... as ubd0, ubd1... (/dev/ubda, /dev/ubdb... in the guest)
#       and runs SCRIPT as the only job of uml_init.sh, the guest's PID 1. KEY=value words become
#       environment variables of SCRIPT (keys: [A-Za-z_][A-Za-z0-9_]*; values: no whitespace or
#       commas, since they travel on the kernel command line). SCRIPT also gets UML_RESULT, a
#       writable host directory (see UML_OUTDIR). SCRIPT's stdout+stderr is printed to stdout
#       after the guest has powered off. Returns SCRIPT's exit status; 125 if the guest never
#       reported one (boot failure, crash, timeout: the tail of the console goes to stderr);
#       2 on a usage error. The whole run is wrapped in timeout(1) and uses a private scratch
#       directory as TMPDIR (UML's memory file) and HOME (~/.uml), removed afterwards.
#
#   uml_make_race_image IMG SIZE_MIB PROFILE
#       The fixture for tests that need REAL false checksum mismatches. Creates IMG (sparse,
#       SIZE_MIB MiB, 256 is plenty; an existing IMG is replaced) with mkfs.btrfs -d PROFILE
#       -m PROFILE (PROFILE: single or dup), boots a guest that mounts it and runs
#         dio_race --size N            /csum_file    checksummed: blocks get false mismatches
#         dio_race --size N --nocow-first /nocow_file NOCOW/NODATASUM control: always readable
#       (N = UML_RACE_MIB MiB, default 8), then syncs and unmounts. Prints dio_race's summary
#       lines. Returns 0 when both files were written; the image is then unmounted and clean
#       except for the data checksums of csum_file. How many blocks go bad varies from run to run
#       (8 MiB on dup: hundreds of 2048), and a kernel with the fix produces none: callers must
#       verify (btrfs check --check-data-csum IMG on the host) and skip if there are none.
#       Needs mkfs.btrfs and $VMCSUM_TOOLS/dio_race (or UML_DIO_RACE).
#
# Environment (all optional):
#   UML_KERNEL    kernel binary (default: linux.uml from PATH, else /usr/bin/linux.uml)
#   UML_TIMEOUT   seconds before a guest is killed (default 120)
#   UML_MEM       guest memory (default 128M)
#   UML_TMPBASE   where scratch directories go (default $TMPDIR, else /tmp); must allow exec
#                 mappings and must not be under /dev, /proc or /sys (hidden in the guest)
#   UML_OUTDIR    host directory to use as UML_RESULT instead of a scratch one, to keep files
#                 the payload writes there (same restriction as UML_TMPBASE)
#   UML_CONSOLE_LOG  if set, the guest console (kernel log) is copied to this file
#   UML_PROBE     0 = uml_available skips its test boot
#   UML_RACE_MIB  MiB per file written by uml_make_race_image (default 8)
#   UML_DIO_RACE  dio_race binary (default $VMCSUM_TOOLS/dio_race)
#
# Facts behind the choices: /work/shared/notes/reproducing-the-bug.md.

_uml_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

_uml_kernel() {
  if [[ -n ${UML_KERNEL-} ]]; then
    echo "$UML_KERNEL"
  else
    command -v linux.uml 2>/dev/null || echo /usr/bin/linux.uml
  fi
}

_uml_tmpbase() {
  echo "${UML_TMPBASE:-${TMPDIR:-/tmp}}"
}

# Prints why DIR cannot be shared with the guest, or nothing. The guest mounts its own /dev,
# /proc and /sys over the host's, so host paths below them are invisible to it.
_uml_dir_problem() {
  local dir
  dir=$(readlink -f -- "$1" 2>/dev/null) || dir=$1
  case $dir in
    /dev | /dev/* | /proc | /proc/* | /sys | /sys/*)
      echo "$1 is under /dev, /proc or /sys, which the guest does not see"
      return
      ;;
  esac
  case $dir in
    *[[:space:],]*)
      echo "$1 contains whitespace or a comma (paths travel on the kernel command line)"
      return
      ;;
  esac
  if [[ ! -d $dir || ! -w $dir ]]; then
    echo "$1 is not a writable directory"
    return
  fi
  if command -v findmnt >/dev/null 2>&1; then
    local opts
    opts=$(findmnt -no OPTIONS -T "$dir" 2>/dev/null)
    if [[ ,$opts, == *,noexec,* ]]; then
      echo "$1 is on a noexec mount (UML maps its memory file there with PROT_EXEC)"
      return
    fi
  fi
}

uml_available() {
  if [[ -n ${_UML_AVAILABLE-} ]]; then
    [[ $_UML_AVAILABLE == yes ]] && return 0
    echo "$_UML_AVAILABLE"
    return 1
  fi
  local reason
  reason=$(_uml_available_reason)
  _UML_AVAILABLE=${reason:-yes}
  [[ $_UML_AVAILABLE == yes ]] && return 0
  echo "$_UML_AVAILABLE"
  return 1
}

# Prints the reason UML cannot run, or nothing.
_uml_available_reason() {
  local kernel problem scope
  kernel=$(_uml_kernel)
  if [[ ! -x $kernel ]]; then
    echo "user-mode-linux kernel $kernel not found (Debian package user-mode-linux)"
    return
  fi
  if ! command -v timeout >/dev/null 2>&1; then
    echo "timeout(1) not found"
    return
  fi
  if ! "$kernel" --version >/dev/null 2>&1; then
    echo "$kernel does not run on this machine"
    return
  fi
  if [[ -r /proc/sys/kernel/yama/ptrace_scope ]]; then
    scope=$(</proc/sys/kernel/yama/ptrace_scope)
    if [[ $scope == 3 ]]; then
      echo "ptrace is disabled (kernel.yama.ptrace_scope=3); UML 6.1 needs it"
      return
    fi
  fi
  problem=$(_uml_dir_problem "$(_uml_tmpbase)")
  if [[ -n $problem ]]; then
    echo "scratch directory unusable: $problem (set UML_TMPBASE)"
    return
  fi
  if [[ ${UML_PROBE-1} != 0 ]]; then
    _uml_probe_boot
  fi
}

# Boots a guest that only checks it got its parameter; prints the reason on failure.
_uml_probe_boot() {
  local dir rc out
  dir=$(mktemp -d "$(_uml_tmpbase)/uml-probe.XXXXXX") || {
    echo "cannot create a scratch directory in $(_uml_tmpbase)"
    return
  }
  printf '%s\n' '#!/bin/sh' 'test "$UML_PROBE_TOKEN" = ok && echo uml-probe-ok' >"$dir/probe.sh"
  out=$(UML_TIMEOUT=60 UML_OUTDIR='' uml_run -- "$dir/probe.sh" UML_PROBE_TOKEN=ok 2>&1)
  rc=$?
  rm -rf -- "$dir"
  if [[ $rc != 0 || $out != *uml-probe-ok* ]]; then
    echo "test boot of $(_uml_kernel) failed (status $rc): $(tail -n 3 <<<"$out" | tr '\n' ' ')"
  fi
}

# uml_run [IMG...] -- SCRIPT [KEY=value...]
# The body runs in a subshell, so its traps and variables never leak into the caller.
uml_run() (
  local -a images=() args=()
  while (($# > 0)) && [[ $1 != -- ]]; do
    images+=("$1")
    shift
  done
  if (($# < 2)); then
    echo "usage: uml_run [IMG...] -- SCRIPT [KEY=value...]" >&2
    exit 2
  fi
  shift
  local script kernel base problem i img word
  script=$(readlink -f -- "$1") || script=$1
  shift
  kernel=$(_uml_kernel)
  base=$(_uml_tmpbase)
  if [[ ! -f $script ]]; then
    echo "uml_run: payload $script not found" >&2
    exit 2
  fi
  problem=$(_uml_dir_problem "$(dirname -- "$script")")
  if [[ -n $problem && $problem != *"not a writable"* ]]; then
    echo "uml_run: payload: $problem" >&2
    exit 2
  fi
  if ((${#images[@]} > 8)); then
    echo "uml_run: at most 8 images (ubd0..ubd7)" >&2
    exit 2
  fi
  for i in "${!images[@]}"; do
    img=$(readlink -f -- "${images[i]}") || img=${images[i]}
    if [[ ! -f $img ]]; then
      echo "uml_run: image ${images[i]} not found" >&2
      exit 2
    fi
    if [[ $img == *[[:space:],]* ]]; then
      echo "uml_run: image path $img contains whitespace or a comma" >&2
      exit 2
    fi
    args+=("ubd$i=$img")
  done
  for word in "$@"; do
    if [[ ! $word =~ ^[A-Za-z_][A-Za-z0-9_]*=[^[:space:],]*$ ]]; then
      echo "uml_run: '$word' is not KEY=value (no whitespace or commas in the value)" >&2
      exit 2
    fi
  done

  local scratch result console pid="" urc status
  scratch=$(mktemp -d "$base/uml.XXXXXX") || exit 125
  # Ends exactly the timeout(1) we started (it forwards the signal to linux.uml's process
  # group), then removes the scratch directory.
  _uml_run_cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      local n
      for ((n = 0; n < 50; n++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    fi
    rm -rf -- "$scratch"
  }
  trap _uml_run_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  mkdir "$scratch/home" "$scratch/tmp"
  result=${UML_OUTDIR:-$scratch/result}
  mkdir -p -- "$result" || exit 125
  result=$(readlink -f -- "$result")
  problem=$(_uml_dir_problem "$result")
  if [[ -n $problem ]]; then
    echo "uml_run: result directory: $problem" >&2
    exit 2
  fi
  rm -f -- "$result/.uml_status" "$result/.uml_status.tmp" "$result/.uml_output"
  # A private, executable copy: the source tree may lack the x bit or be mounted noexec.
  cp -- "$_uml_lib_dir/uml_init.sh" "$scratch/init" && chmod 755 "$scratch/init" || exit 125
  console=$scratch/console.log

  args+=("mem=${UML_MEM:-128M}" root=/dev/root rootfstype=hostfs rootflags=/ ro
    con0=fd:0,fd:1 con=null "init=$scratch/init"
    "UML_RESULT=$result" "UML_PAYLOAD=$script" "$@")
  # Background + wait, so that INT/TERM traps run at once instead of after the guest.
  HOME=$scratch/home TMPDIR=$scratch/tmp \
    timeout -k 10 "${UML_TIMEOUT:-120}" "$kernel" "${args[@]}" </dev/null >"$console" 2>&1 &
  pid=$!
  wait "$pid"
  urc=$?
  pid=""

  if [[ -n ${UML_CONSOLE_LOG-} ]]; then
    cp -- "$console" "$UML_CONSOLE_LOG"
  fi
  if [[ -f $result/.uml_output ]]; then
    cat -- "$result/.uml_output"
  fi
  status=""
  if [[ -f $result/.uml_status ]]; then
    status=$(<"$result/.uml_status")
  fi
  if [[ ! $status =~ ^[0-9]+$ ]]; then
    if [[ $urc == 124 ]]; then
      echo "uml_run: guest timed out after ${UML_TIMEOUT:-120} s; console tail:" >&2
    else
      echo "uml_run: guest never reported a status (linux.uml exit $urc); console tail:" >&2
    fi
    tail -n 25 -- "$console" >&2
    exit 125
  fi
  if [[ $urc != 0 ]]; then
    echo "uml_run: note: linux.uml exited with $urc after the payload finished" >&2
  fi
  exit "$status"
)

# The payload of uml_make_race_image (runs inside the guest).
_uml_race_payload() {
  cat <<'EOF'
#!/bin/sh
mnt=$UML_RESULT/mnt
mkdir -p "$mnt" || exit 1
mount -t btrfs /dev/ubda "$mnt" || exit 1
rc=0
"$RACE_TOOL" --size "$RACE_BYTES" "$mnt/csum_file" || rc=1
"$RACE_TOOL" --size "$RACE_BYTES" --nocow-first "$mnt/nocow_file" || rc=1
lsattr "$mnt/csum_file" "$mnt/nocow_file"
sync
umount "$mnt" || rc=1
rmdir "$mnt"
exit $rc
EOF
}

# uml_make_race_image IMG SIZE_MIB PROFILE
uml_make_race_image() (
  if (($# != 3)); then
    echo "usage: uml_make_race_image IMG SIZE_MIB PROFILE" >&2
    exit 2
  fi
  local img=$1 size_mib=$2 profile=$3 tool mib dir rc
  tool=${UML_DIO_RACE:-${VMCSUM_TOOLS:+$VMCSUM_TOOLS/dio_race}}
  mib=${UML_RACE_MIB:-8}
  if [[ -z $tool || ! -x $tool ]]; then
    echo "uml_make_race_image: dio_race not found (set VMCSUM_TOOLS or UML_DIO_RACE)" >&2
    exit 2
  fi
  tool=$(readlink -f -- "$tool")
  case $profile in
    single | dup) ;;
    *)
      echo "uml_make_race_image: PROFILE must be single or dup (one device), not '$profile'" >&2
      exit 2
      ;;
  esac
  if [[ ! $size_mib =~ ^[0-9]+$ || ! $mib =~ ^[0-9]+$ ]]; then
    echo "uml_make_race_image: SIZE_MIB and UML_RACE_MIB must be numbers" >&2
    exit 2
  fi
  if ! command -v mkfs.btrfs >/dev/null 2>&1; then
    echo "uml_make_race_image: mkfs.btrfs not found" >&2
    exit 2
  fi

  rm -f -- "$img" && truncate -s "${size_mib}M" -- "$img" || exit 1
  if ! mkfs.btrfs -q -f -d "$profile" -m "$profile" -- "$img" >/dev/null; then
    echo "uml_make_race_image: mkfs.btrfs -d $profile -m $profile $img failed" >&2
    exit 1
  fi

  dir=$(mktemp -d "$(_uml_tmpbase)/uml-race.XXXXXX") || exit 1
  trap 'rm -rf -- "$dir"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  _uml_race_payload >"$dir/race.sh"
  uml_run "$img" -- "$dir/race.sh" "RACE_TOOL=$tool" "RACE_BYTES=$((mib << 20))"
  rc=$?
  if ((rc != 0)); then
    echo "uml_make_race_image: guest payload failed (status $rc)" >&2
  fi
  exit "$rc"
)
