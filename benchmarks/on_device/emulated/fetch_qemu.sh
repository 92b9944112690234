#!/usr/bin/env bash
# Downloads a newer static qemu-aarch64 (Debian 13 "trixie"'s qemu-user package) into a cache
# directory, with apt's own client but a private package list: nothing is installed and the
# host's apt configuration is untouched. Debian 12's qemu 7.2 miscomputes SME (issue 22).
set -euo pipefail

# By bash alone (no dirname): the check for missing tools must be reached without coreutils.
SCRIPT_DIR="$(cd "${BASH_SOURCE[0]%/*}" 2>/dev/null && pwd || pwd)"
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$SCRIPT_DIR/../common.sh"

DEFAULT_DEST="${XDG_CACHE_HOME:-$HOME/.cache}/dkp-keras/qemu-trixie"
DEST="${1:-$DEFAULT_DEST}"
SUITE="${DKP_QEMU_SUITE:-trixie}"
MIRROR="${DKP_ARM64_MIRROR:-http://deb.debian.org/debian}"

die() { echo "fetch_qemu.sh: error: $*" >&2; exit 2; }
[[ "${1:-}" != -h && "${1:-}" != --help ]] || {
  echo "Usage: fetch_qemu.sh [DEST]   (default $DEFAULT_DEST; prints the qemu-aarch64 path)"; exit 0; }
command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "needs apt-get and dpkg (Debian)"

BINARY="$DEST/usr/bin/qemu-aarch64"
if [[ -x "$BINARY" ]]; then
  echo "$BINARY"
  exit 0
fi
refuse_foreign_dest "$DEST" "qemu-aarch64 of this script"
mkdir -p "$(dirname "$DEST")"
STATE="$(mktemp -d "$DEST.apt.XXXXXX")"
trap 'rm -rf "$STATE"' EXIT
echo "deb $MIRROR $SUITE main" > "$STATE/sources.list"
private_apt_state "$STATE"
apt-get "${APT[@]}" update -qq >&2 || die "apt-get update of $SUITE failed"
(cd "$STATE" && apt-get "${APT[@]}" download qemu-user >&2) || die "could not download qemu-user"
# dpkg -x into a temporary directory, then move: a killed run leaves no half-extracted tree
dpkg -x "$STATE"/qemu-user_*.deb "$STATE/x"
file_type="$("$STATE/x/usr/bin/qemu-aarch64" --version 2>/dev/null | head -n 1)" ||
  die "the downloaded qemu-aarch64 does not run here"
rmdir "$DEST" 2>/dev/null || true  # empty, checked above
mv -T "$STATE/x" "$DEST"
echo "$file_type" >&2
echo "$BINARY"
