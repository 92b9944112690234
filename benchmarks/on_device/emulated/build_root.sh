#!/usr/bin/env bash
# Builds (once) a Debian 12 arm64 root with python3, a venv, numpy and ai-edge-litert, run
# through qemu-user's binfmt handler: an emulated Raspberry Pi OS 64-bit for rpi.sh.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$SCRIPT_DIR/../common.sh"
# shellcheck source-path=SCRIPTDIR source=root.sh
source "$SCRIPT_DIR/root.sh"

usage() {
  cat <<USAGE
Usage: build_root.sh [ROOT]        (as root; several minutes the first time, then instant)

Builds a Debian 12 (bookworm) arm64 root in ROOT (default $DKP_ARM64_ROOT_DEFAULT,
or \$DKP_ARM64_ROOT) with python3 and a venv at $DKP_ARM64_VENV holding numpy and
ai-edge-litert (the aarch64 wheels from the package index pip is configured for), and
enables qemu-aarch64 in binfmt_misc so that \`chroot ROOT\` runs arm64 binaries.
Run it again at any time: a finished root is only checked (and binfmt re-enabled, which
a reboot undoes); a killed build is removed and redone.

Environment:
  DKP_ARM64_ROOT     default ROOT
  DKP_ARM64_MIRROR   Debian mirror (default http://deb.debian.org/debian)
  DKP_ARM64_LITERT   pip requirement for LiteRT (default: the host's ai-edge-litert version,
                     so that x86 and arm64 run the same runtime)

Needs: apt-get update && apt-get install qemu-user-static binfmt-support debootstrap
USAGE
}

die() { echo "build_root.sh: error: $*" >&2; exit 2; }

ROOT=""
parse_one_positional ROOT "$@"
ROOT="$(realpath -m "${ROOT:-$DKP_ARM64_ROOT_DEFAULT}")"
MIRROR="${DKP_ARM64_MIRROR:-http://deb.debian.org/debian}"

# --- refusals, before any work ------------------------------------------------
case "$ROOT/" in
  "$REPO_DIR"/*) die "ROOT '$ROOT' is inside the repository; give a path outside it (default $DKP_ARM64_ROOT_DEFAULT)" ;;
esac
[[ "$ROOT" != / ]] || die "ROOT must not be /"
[[ "$(id -u)" -eq 0 ]] || die "must run as root (debootstrap, chroot, mount and binfmt_misc need it): sudo bash $0 ${ROOT}"
missing=()
for tool in debootstrap update-binfmts chroot mountpoint; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[[ -e /usr/share/binfmts/qemu-aarch64 ]] || missing+=("qemu-user-static's qemu-aarch64 binfmt entry")
[[ ${#missing[@]} -eq 0 ]] || die "missing: ${missing[*]}; install them with:
  apt-get update && apt-get install -y qemu-user-static binfmt-support debootstrap"

BUILD="$ROOT.partial"
BUILDING_MARK=.dkp-arm64-root-building
if [[ -e "$ROOT" && ! -e "$ROOT/$DKP_ARM64_READY" ]]; then
  if [[ -d "$ROOT" && -z "$(ls -A "$ROOT")" ]]; then
    rmdir "$ROOT"
  else
    die "ROOT '$ROOT' exists and is not a root this script finished; move it away or pick another ROOT"
  fi
fi
if [[ -e "$BUILD" && ! -e "$BUILD/$BUILDING_MARK" ]]; then
  die "'$BUILD' exists and is not a build of this script; move it away or pick another ROOT"
fi

trap release_root EXIT
enable_binfmt

in_root() {  # runs a command inside root $1 with a clean environment
  local root="$1"; shift
  local -a vars
  mapfile -t vars < <(root_env)
  env -i "${vars[@]}" chroot "$root" "$@"
}

check_root() {  # imports the runtime inside root $1; prints what it found
  in_root "$1" "$DKP_ARM64_VENV/bin/python" -c '
import platform, numpy, importlib.metadata as m
from ai_edge_litert.interpreter import Interpreter
print(platform.machine(), "python", platform.python_version(), "numpy", numpy.__version__,
      "ai-edge-litert", m.version("ai-edge-litert"))'
}

if [[ -e "$ROOT/$DKP_ARM64_READY" ]]; then
  mount_root "$ROOT"
  echo "root ready: $ROOT ($(check_root "$ROOT"))"
  exit 0
fi

# --- a killed build's leftovers go first ----------------------------------------
if [[ -e "$BUILD" ]]; then
  echo "removing the unfinished build $BUILD"
  unmount_all_under "$BUILD"
  rm -rf --one-file-system "$BUILD"
fi
mkdir -p "$BUILD"
touch "$BUILD/$BUILDING_MARK"

echo "debootstrap bookworm arm64 into $BUILD (from $MIRROR; several minutes)"
debootstrap --arch=arm64 --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$BUILD" "$MIRROR" \
  > "$BUILD.debootstrap.log" 2>&1 || die "debootstrap failed; see $BUILD.debootstrap.log"
rm -f "$BUILD.debootstrap.log"

# pip inside the root must reach the same index as the host's: copy the host's pip
# configuration files and the files they name (certificate, constraints) to the same paths.
HOST_PIP=(python3 -m pip)
copied=()
while read -r path; do
  [[ -f "$path" ]] || continue
  mkdir -p "$BUILD$(dirname "$path")"
  cp -L "$path" "$BUILD$path"
  copied+=("$path")
done < <({ "${HOST_PIP[@]}" config list -v 2>/dev/null |
             sed -n "s/.*will try loading '\(.*\)'.*/\1/p"
           "${HOST_PIP[@]}" config list 2>/dev/null | sed -n "s/^[^=]*='\(\/[^' ]*\)'$/\1/p"
           for name in PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE; do echo "${!name:-}"; done
         } | sort -u)
echo "copied into the root: ${copied[*]:-nothing (no pip configuration on the host)}"

LITERT="${DKP_ARM64_LITERT:-}"
if [[ -z "$LITERT" ]]; then
  host_version="$(python3 -c 'import importlib.metadata as m; print(m.version("ai-edge-litert"))' \
                  2>/dev/null || true)"
  LITERT="ai-edge-litert${host_version:+==$host_version}"
fi
mount_root "$BUILD"
in_root "$BUILD" /usr/bin/python3 -m venv "$DKP_ARM64_VENV"
echo "pip install numpy $LITERT (in the root, emulated)"
# (the host's local find-links and file:// indexes do not exist in the root: drop pip's
# warning for each of them)
in_root "$BUILD" "$DKP_ARM64_VENV/bin/python" -m pip install --quiet numpy "$LITERT" 2>&1 |
  sed "/^WARNING: Location '.*' is ignored/d" || die "pip install failed inside the root"
found="$(check_root "$BUILD")" || die "the runtime does not import inside the root"
release_root

echo "$found" > "$BUILD/$DKP_ARM64_READY"
rm -f "$BUILD/$BUILDING_MARK"
mv -T "$BUILD" "$ROOT"
echo "root ready: $ROOT ($found)"
