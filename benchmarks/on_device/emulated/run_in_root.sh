#!/usr/bin/env bash
# Runs one command inside the arm64 root under a pinned emulated CPU (as root), with /proc,
# /sys and an arm64 /proc/cpuinfo mounted for its duration, and optionally a host directory.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=root.sh
source "$SCRIPT_DIR/root.sh"

SHARE_AT=/mnt/dkp-share

usage() {
  cat <<USAGE
Usage: run_in_root.sh [--root ROOT] [--cpu CPU] [--share DIR] [--qemu FILE] [--dry-run] -- COMMAND [ARGS...]

Runs COMMAND (a path inside the root, e.g. $DKP_ARM64_VENV/bin/python) in the arm64 root
of build_root.sh with QEMU_CPU=CPU: cortex-a72 (Raspberry Pi 4, the default), cortex-a76
(Raspberry Pi 5) or max (every feature qemu has: no real chip), optionally followed by qemu
CPU properties, e.g. max,sme=off or max,sve-default-vector-length=16.
  --root ROOT   the root (default $DKP_ARM64_ROOT_DEFAULT)
  --share DIR   bind-mount the host directory DIR at $SHARE_AT inside the root
  --qemu FILE   run COMMAND with this static qemu-aarch64 (e.g. a newer one extracted from a
                later Debian's qemu-user package) instead of binfmt's; programs COMMAND
                starts still run under binfmt's
  --dry-run     print the command, run nothing
USAGE
}

die() { echo "run_in_root.sh: error: $*" >&2; exit 2; }

ROOT="" CPU=cortex-a72 SHARE="" QEMU="" DRY_RUN=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --root) ROOT="${2:?--root needs a value}"; shift 2 ;;
    --cpu) CPU="${2:?--cpu needs a value}"; shift 2 ;;
    --share) SHARE="${2:?--share needs a value}"; shift 2 ;;
    --qemu) QEMU="${2:?--qemu needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; break ;;
    *) usage >&2; die "unknown option: $1 (put the command after --)" ;;
  esac
done
[[ $# -gt 0 ]] || { usage >&2; die "no COMMAND given (after --)"; }
emulated_midr "${CPU%%,*}" >/dev/null ||
  die "--cpu must be cortex-a72, cortex-a76 or max (then ,property=value...); got '$CPU'"
[[ "$CPU" =~ ^[a-z0-9-]+(,[a-z0-9-]+=[a-z0-9-]+)*$ ]] ||
  die "--cpu takes MODEL[,property=value...], e.g. max,sme=off; got '$CPU'"
[[ -z "$SHARE" || -d "$SHARE" ]] || die "--share '$SHARE' is not a directory"
[[ -z "$QEMU" || -x "$QEMU" ]] || die "--qemu '$QEMU' is not an executable file"
ROOT="$(realpath -m "${ROOT:-$DKP_ARM64_ROOT_DEFAULT}")"

# qemu-user reads QEMU_CPU from the environment, binfmt's and a --qemu one alike.
QEMU_IN_ROOT=()
[[ -z "$QEMU" ]] || QEMU_IN_ROOT=(/tmp/dkp-qemu-aarch64)
GUEST=(env -i "${DKP_ARM64_GUEST_ENV[@]}" "QEMU_CPU=$CPU"
       "$(command -v chroot || echo /usr/sbin/chroot)" "$ROOT" "${QEMU_IN_ROOT[@]}" "$@")
if [[ "$DRY_RUN" -eq 1 ]]; then
  printf '+'; printf ' %q' "${GUEST[@]}"; printf '\n'
  exit 0
fi
[[ "$(id -u)" -eq 0 ]] || die "must run as root (chroot and mount): sudo bash $0 ..."
[[ -e "$ROOT/$DKP_ARM64_READY" ]] ||
  die "no finished arm64 root at '$ROOT'; build it: sudo bash $SCRIPT_DIR/build_root.sh $ROOT"
binfmt_ready || enable_binfmt
if [[ -n "$QEMU" ]]; then
  cp "$QEMU" "$ROOT/tmp/dkp-qemu-aarch64.tmp" && mv "$ROOT/tmp/dkp-qemu-aarch64.tmp" "$ROOT/tmp/dkp-qemu-aarch64"
fi
warn_old_sme "$CPU" "$(qemu_version "${QEMU:-}")"
trap release_root EXIT
mount_root "$ROOT" "$CPU"
if [[ -n "$SHARE" ]]; then
  mkdir -p "$ROOT$SHARE_AT"
  mount --bind "$SHARE" "$ROOT$SHARE_AT" || die "cannot mount $SHARE on $ROOT$SHARE_AT"
  ROOT_MOUNTED+=("$ROOT$SHARE_AT")
fi
"${GUEST[@]}"
