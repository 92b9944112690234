#!/usr/bin/env bash
# Builds qemu's instruction-counting TCG plugins (insn, hotblocks, cache) for the installed
# Debian qemu-user, from the plugin API header and example sources of Debian's own qemu source
# package of the same version (downloaded with apt into a private state; nothing is vendored).
set -euo pipefail

# By bash alone (no dirname): the check for missing tools must be reached without coreutils.
SCRIPT_DIR="$(cd "${BASH_SOURCE[0]%/*}" 2>/dev/null && pwd || pwd)"
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$SCRIPT_DIR/../common.sh"

usage() {
  cat <<USAGE
Usage: build_plugins.sh [DEST]     (default: ~/.cache/dkp-keras/qemu-plugins-<qemu version>)

Builds DEST/libinsn.so (tests/plugin/insn.c: guest instructions executed), libhotblocks.so and
libcache.so (contrib/plugins) against qemu-plugin.h of Debian's qemu source package whose
version is the installed qemu-user's; prints DEST. Run them with the dynamic qemu-aarch64
(qemu-user; the static one has no -plugin):
  qemu-aarch64 -L ROOT -plugin DEST/libinsn.so -d plugin ROOT/usr/bin/python3.11 script.py
Needs: apt-get install qemu-user gcc pkg-config libglib2.0-dev
Environment: DKP_QEMU_SRC_MIRROR (default http://deb.debian.org/debian; a snapshot.debian.org
URL serves superseded versions).
USAGE
}

die() { echo "build_plugins.sh: error: $*" >&2; exit 2; }

DEST=""
parse_one_positional DEST "$@"

missing=()
for tool in apt-get dpkg-query gcc pkg-config tar qemu-aarch64; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if command -v pkg-config >/dev/null 2>&1 && ! pkg-config --exists glib-2.0; then
  missing+=("glib-2.0 (libglib2.0-dev)")
fi
[[ ${#missing[@]} -eq 0 ]] || die "missing: ${missing[*]}; install them with:
  apt-get update && apt-get install -y qemu-user gcc pkg-config libglib2.0-dev"
qemu-aarch64 --help 2>/dev/null | grep -q -- '-plugin' ||
  die "$(command -v qemu-aarch64) takes no -plugin (the static build); install qemu-user"

SOURCE_VERSION="$(dpkg-query -W -f '${source:Version}' qemu-user 2>/dev/null)" ||
  die "qemu-user is not installed as a Debian package; install it: apt-get install qemu-user"
UPSTREAM="${SOURCE_VERSION#*:}"
UPSTREAM="${UPSTREAM%%-*}"   # 1:7.2+dfsg-7+deb12u18 -> 7.2+dfsg
DEST="$(realpath -m "${DEST:-${XDG_CACHE_HOME:-$HOME/.cache}/dkp-keras/qemu-plugins-${SOURCE_VERSION//:/_}}")"
PLUGINS=(insn hotblocks cache)

if [[ -f "$DEST/.built-from" ]] && [[ "$(cat "$DEST/.built-from")" == "qemu $SOURCE_VERSION" ]]; then
  echo "$DEST"
  exit 0
fi
refuse_foreign_dest "$DEST" "plugins of this script for qemu $SOURCE_VERSION"

mkdir -p "$(dirname "$DEST")"
WORK="$(mktemp -d "$DEST.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
. /etc/os-release
MIRROR="${DKP_QEMU_SRC_MIRROR:-http://deb.debian.org/debian}"
{
  echo "deb-src $MIRROR $VERSION_CODENAME main"
  echo "deb-src $MIRROR $VERSION_CODENAME-updates main"
  echo "deb-src http://deb.debian.org/debian-security $VERSION_CODENAME-security main"
} > "$WORK/sources.list"
private_apt_state "$WORK"
echo "downloading Debian's qemu $SOURCE_VERSION source (private apt state)" >&2
apt-get "${APT[@]}" update -qq >&2 || die "apt-get update of the deb-src lists failed"
(cd "$WORK" && apt-get "${APT[@]}" source --download-only "qemu=$SOURCE_VERSION" >&2) ||
  die "qemu $SOURCE_VERSION source not found at $MIRROR; set DKP_QEMU_SRC_MIRROR to a snapshot.debian.org URL"
ORIG="$(ls "$WORK"/qemu_"$UPSTREAM".orig.tar.* 2>/dev/null | head -n 1)"
[[ -n "$ORIG" ]] || die "no qemu_$UPSTREAM.orig.tar.* among the downloaded files"

# Only the plugin API header and the three example plugins are extracted.
tar -xf "$ORIG" -C "$WORK" --wildcards --no-anchored --strip-components=1 \
  'include/qemu/qemu-plugin.h' 'tests/plugin/insn.c' 'contrib/plugins/hotblocks.c' \
  'contrib/plugins/cache.c' 2>/dev/null || true
[[ -f "$WORK/include/qemu/qemu-plugin.h" && -f "$WORK/tests/plugin/insn.c" ]] ||
  die "qemu-plugin.h or tests/plugin/insn.c missing from $(basename "$ORIG")"

mkdir -p "$WORK/out"
for name in "${PLUGINS[@]}"; do
  src="$WORK/tests/plugin/$name.c"
  [[ -f "$src" ]] || src="$WORK/contrib/plugins/$name.c"
  [[ -f "$src" ]] || { echo "note: $name.c not in this qemu version; skipped" >&2; continue; }
  # shellcheck disable=SC2046  # pkg-config prints several flags
  gcc -shared -fPIC -O2 -I "$WORK/include/qemu" $(pkg-config --cflags glib-2.0) \
    -o "$WORK/out/lib$name.so" "$src" $(pkg-config --libs glib-2.0) ||
    die "building lib$name.so failed"
done
echo "qemu $SOURCE_VERSION" > "$WORK/out/.built-from"
rmdir "$DEST" 2>/dev/null || true
mv -T "$WORK/out" "$DEST"
echo "$DEST"
