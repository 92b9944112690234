# shellcheck shell=bash
# Shared by build_root.sh and rpi.sh's emulated target (sourced; needs the caller's `die`).
# An emulated board is a Debian 12 arm64 root run through qemu-user's binfmt handler.

EMULATED_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Where build_root.sh puts the root unless told otherwise (outside the repository).
DKP_ARM64_ROOT_DEFAULT="${DKP_ARM64_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/dkp-keras/arm64-root}"
# The venv inside the root (a path as the guest sees it) and the marker of a finished build.
DKP_ARM64_VENV=/opt/dkp-venv
DKP_ARM64_READY=.dkp-arm64-root-ready
BINFMT_DIR=/proc/sys/fs/binfmt_misc
# The environment of a benchmark command inside the root (HOME is the guest's root home).
DKP_ARM64_GUEST_ENV=(HOME=/root "PATH=$DKP_ARM64_VENV/bin:/usr/bin:/bin" LANG=C.UTF-8)

# Prints the qemu -cpu model of an emulated target name (emulated-a72, emulated-a76,
# emulated-max); fails on any other name.
emulated_cpu() {
  case "$1" in
    emulated-a72) echo cortex-a72 ;;  # Raspberry Pi 4
    emulated-a76) echo cortex-a76 ;;  # Raspberry Pi 5, many phones' big cores
    emulated-max) echo max ;;         # every feature qemu has: no real chip
    *) return 1 ;;
  esac
}

# Prints the MIDR_EL1 qemu gives a -cpu model (qemu's target/arm/cpu64.c): Cortex-A72 r0p3
# (as in a Pi 4's BCM2711), Cortex-A76 r4p1 (a Pi 5's BCM2712), and max's "software" id.
emulated_midr() {
  case "$1" in
    cortex-a72) echo 0x410fd083 ;;
    cortex-a76) echo 0x414fd0b1 ;;
    max) echo 0x000f0510 ;;
    *) return 1 ;;
  esac
}

# Fails unless qemu-aarch64 is registered with binfmt_misc and enabled (so chroot runs arm64).
binfmt_ready() {
  [[ -r "$BINFMT_DIR/qemu-aarch64" ]] && grep -qx enabled "$BINFMT_DIR/qemu-aarch64"
}

# Mounts binfmt_misc when needed and enables qemu-aarch64 (root only).
enable_binfmt() {
  if [[ ! -e "$BINFMT_DIR/status" ]]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" || die "cannot mount binfmt_misc on $BINFMT_DIR"
  fi
  binfmt_ready || update-binfmts --enable qemu-aarch64 >/dev/null ||
    die "update-binfmts --enable qemu-aarch64 failed"
  binfmt_ready || die "qemu-aarch64 is not enabled in $BINFMT_DIR after update-binfmts"
  # F (fix binary): the kernel opens qemu at registration, so a chroot needs no copy of it.
  grep -q '^flags:.*F' "$BINFMT_DIR/qemu-aarch64" ||
    die "qemu-aarch64 is registered without the F flag; reinstall qemu-user-static"
}

# Takes ROOT's lock (one emulated run at a time: they share the root's mounts), then
# unmounts what a killed run left mounted there, and mounts /proc and /sys in ROOT; records
# what it mounted in ROOT_MOUNTED for release_root. The lock goes with the process.
# With a qemu CPU (a model, then maybe ,property=value...), also mounts over ROOT/proc/cpuinfo an arm64 one for that core:
# qemu-user shows the guest the host's x86 /proc/cpuinfo, on which LiteRT's CPU
# detection (cpuinfo) crashes, and the MIDR there decides XNNPack's per-core kernels.
ROOT_MOUNTED=()
mount_root() {
  local root="$1" cpu="${2:-}" dir type
  exec 9>"$root/.dkp-arm64-lock"
  if ! flock -n 9; then
    echo "waiting for another emulated run in $root" >&2
    flock 9
  fi
  unmount_all_under "$root"
  for dir in proc:proc sys:sysfs; do
    type="${dir#*:}" dir="${dir%:*}"
    mkdir -p "$root/$dir"
    mount -t "$type" "$type" "$root/$dir" || die "cannot mount $type on $root/$dir"
    ROOT_MOUNTED+=("$root/$dir")
  done
  [[ -n "$cpu" ]] || return 0
  local file="/tmp/dkp-cpuinfo-${cpu//[,=]/_}" midr
  midr="$(emulated_midr "${cpu%%,*}")" || die "no MIDR known for qemu CPU '$cpu'"
  cp "$EMULATED_DIR/guest_cpuinfo.py" "$root/tmp/dkp-guest-cpuinfo.py"
  env -i "QEMU_CPU=$cpu" "$(command -v chroot || echo /usr/sbin/chroot)" "$root" \
    /usr/bin/python3 /tmp/dkp-guest-cpuinfo.py --midr "$midr" --cpus "$(nproc --all)" \
    > "$root$file.tmp" || die "could not read the emulated $cpu's features inside $root"
  mv "$root$file.tmp" "$root$file"
  mount --bind "$root$file" "$root/proc/cpuinfo" || die "cannot mount $file on $root/proc/cpuinfo"
  ROOT_MOUNTED+=("$root/proc/cpuinfo")
}

release_root() {
  local i path
  for ((i = ${#ROOT_MOUNTED[@]} - 1; i >= 0; i--)); do  # the last mounted first
    path="${ROOT_MOUNTED[i]}"
    umount "$path" 2>/dev/null || umount -l "$path" 2>/dev/null || true
  done
  ROOT_MOUNTED=()
}

# Unmounts anything still mounted under ROOT (a killed run's leftovers) before removing it.
unmount_all_under() {
  local root path
  root="$(realpath -m "$1")"
  while read -r path; do
    umount "$path" 2>/dev/null || umount -l "$path" 2>/dev/null || true
  done < <(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r)
}

# The environment a command inside the root starts with: the host's PATH and Python settings
# mean nothing there, but pip's certificate and index settings do (build_root.sh copies the
# files they name into the root). Prints NAME=VALUE lines for `env -i`.
root_env() {
  local name
  echo "HOME=/root"
  echo "PATH=$DKP_ARM64_VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  echo "LANG=C.UTF-8"
  for name in $(compgen -e); do
    case "$name" in
      PIP_*|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|http_proxy|https_proxy|\
      HTTP_PROXY|HTTPS_PROXY|no_proxy|NO_PROXY) echo "$name=${!name}" ;;
    esac
  done
}

# Prints the version (e.g. 7.2.22) of a qemu-aarch64 binary; by default binfmt's.
qemu_version() {
  local binary="${1:-$(readlink -f /usr/libexec/qemu-binfmt/aarch64-binfmt-P)}"
  "$binary" --version 2>/dev/null | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p' | head -n 1
}

# Warns when qemu's max CPU runs with SME under a qemu older than 10: qemu 7.2 (Debian 12)
# computes XNNPack's SME int8 kernels (SMOPA) wrongly, qemu 10.0 right (issue 22).
warn_old_sme() {
  local cpu="$1" version="$2"
  [[ "${cpu%%,*}" == max && "$cpu" != *sme=off* && "$cpu" != *sve=off* ]] || return 0
  [[ -n "$version" && "${version%%.*}" -lt 10 ]] || return 0
  echo "warning: qemu $version emulates SME wrongly for XNNPack's int8 kernels (dynamic-int8 models with XNNPack give wrong outputs under max; qemu 10 does not): add ,sme=off or use a qemu >= 10 (run_in_root.sh --qemu)" >&2
}
