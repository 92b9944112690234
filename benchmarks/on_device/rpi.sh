#!/usr/bin/env bash
# Times every *.tflite of MODEL_DIR on a Raspberry Pi (run it ON the board) with LiteRT,
# or on this host in an emulated arm64 root (--target emulated-a72 etc.; see emulated/).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"

usage() {
  cat <<'USAGE'
Usage: rpi.sh MODEL_DIR [options]        (run on the board itself)
       rpi.sh MODEL_DIR --target emulated-a72 [options]   (as root on a host with the
                                        arm64 root of emulated/build_root.sh)

Times each model x threads x XNNPack setting with
`python3 -m ai_edge_litert.tools.benchmark_litert_model` when it is installed
(XNNPack on only: that tool cannot turn XNNPack off, and it rounds to 10 µs),
else with time_tflite.py (LiteRT Interpreter, float inputs random, 10 warm-up runs,
median / p10 / p90 in µs); collects the JSON outputs into a CSV.

Options:
  --threads LIST    thread counts, comma-separated (default 1,2)
  --xnnpack LIST    on,off / on / off (default on,off)
  --runs N          timed runs per setting (default 300)
  --out FILE        CSV to write (default results.csv)
  --raw-dir DIR     where raw JSON goes (default: OUT without .csv + _raw)
  --timer python|auto|litert
                    python (default): time_tflite.py for every setting (µs resolution, medians);
                    auto: the LiteRT tool where it applies (XNNPack on), else time_tflite.py
  --taskset CPUS    prefix each run with `taskset -c CPUS` (e.g. 3)
  --device NAME     device column (default: the CPU model)
  --target NAME     board (default): run here, on the board;
                    emulated-a72 / emulated-a76 / emulated-max: run in the arm64 root under
                    qemu-user pinned to a Cortex-A72 (Pi 4), Cortex-A76 (Pi 5) or qemu's
                    "max" CPU (every feature qemu has: no real chip); same script, same
                    raw files, same parser. Emulated times say nothing about a board's speed.
  --root ROOT       the arm64 root for emulated targets (default: \$DKP_ARM64_ROOT or
                    ~/.cache/dkp-keras/arm64-root)
  --dry-run         print the commands, run nothing
  -h, --help        this text

Pin and fix the clock for steadier numbers:
  echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor
  taskset -c 3 ...  (or --taskset 3; core 3 has the least OS/IRQ load)
and cool the board (heatsink/fan); check `vcgencmd get_throttled` = 0x0.
USAGE
}

die() { echo "rpi.sh: error: $*" >&2; exit 2; }

MODEL_DIR=""
THREADS="1,2"
XNNPACK="on,off"
RUNS=300
OUT="results.csv"
RAW_DIR=""
TIMER="python"  # one method, µs resolution: the LiteRT tool rounds to 10 µs and cannot turn XNNPack off
TASKSET=""
DEVICE=""
DRY_RUN=0
PYTHON="${PYTHON:-python3}"
TARGET="board"
EMULATED_ROOT=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --timer) TIMER="${2:?--timer needs a value}"; shift 2 ;;
    --taskset) TASKSET="${2:?--taskset needs a value}"; shift 2 ;;
    --target) TARGET="${2:?--target needs a value}"; shift 2 ;;
    --root) EMULATED_ROOT="${2:?--root needs a value}"; shift 2 ;;
    *) parse_common_option "$@"; shift "$SHIFT_BY" ;;
  esac
done

check_common_args
case "$TIMER" in auto|litert|python) ;; *) die "--timer must be auto, litert or python" ;; esac
[[ -z "$TASKSET" || "$TASKSET" =~ ^[0-9,-]+$ ]] || die "--taskset takes a CPU list like 3 or 2-3"

find_models
[[ "$TARGET" != board || -z "$EMULATED_ROOT" ]] || die "--root applies to emulated targets only (add --target emulated-a72)"

# The transport: on a board every command runs here as it is; on an emulated target it runs
# inside the arm64 root (GUEST prefix, guest python) on copies staged under the root's /tmp
# (STAGE, as the guest sees it), whose raw outputs are copied back to RAW_DIR afterwards.
GUEST=()
GUEST_PYTHON="$PYTHON"
STAGE=""
if [[ "$TARGET" != board ]]; then
  # shellcheck source-path=SCRIPTDIR source=emulated/root.sh
  source "$SCRIPT_DIR/emulated/root.sh"
  QEMU_CPU_MODEL="$(emulated_cpu "$TARGET")" ||
    die "--target must be board, emulated-a72, emulated-a76 or emulated-max; got '$TARGET'"
  EMULATED_ROOT="$(realpath -m "${EMULATED_ROOT:-$DKP_ARM64_ROOT_DEFAULT}")"
  # qemu-user reads QEMU_CPU from the environment: it pins the CPU binfmt's qemu emulates.
  GUEST=(env -i "${DKP_ARM64_GUEST_ENV[@]}"
         "QEMU_CPU=$QEMU_CPU_MODEL" "$(command -v chroot || echo /usr/sbin/chroot)" "$EMULATED_ROOT")
  GUEST_PYTHON="$DKP_ARM64_VENV/bin/python"
fi

# --- environment -------------------------------------------------------------
if [[ "$TARGET" == board ]]; then
  CPU_MODEL="$(grep -m1 -E '^(model name|Model|Hardware)[[:space:]]*:' /proc/cpuinfo 2>/dev/null \
    | cut -d: -f2- | sed 's/^ *//' || true)"
  MACHINE="$(uname -m)"
else
  # /proc/cpuinfo in the root is the host's: name the emulated core instead.
  CPU_MODEL="emulated $QEMU_CPU_MODEL (qemu-user, $EMULATED_ROOT)"
  MACHINE=aarch64
fi
echo "cpu: ${CPU_MODEL:-unknown} ($MACHINE)"
if [[ "$TARGET" == board ]]; then
  echo "advice: pin with --taskset 3 (taskset -c 3), set the performance governor:"
  echo "  echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"
  [[ -n "$DEVICE" ]] || DEVICE="${CPU_MODEL:-rpi} $MACHINE"
else
  echo "note: emulated; outputs are the aarch64 runtime's, times are qemu's, not a board's"
  warn_old_sme "$QEMU_CPU_MODEL" "$(qemu_version)"
  [[ -n "$DEVICE" ]] || DEVICE="emulated $QEMU_CPU_MODEL aarch64"
fi

cleanup_emulated() {
  release_root
  [[ -z "$STAGE" ]] || rm -rf --one-file-system "${EMULATED_ROOT:?}$STAGE"
}

HAVE_TOOL=0
if [[ "$DRY_RUN" -eq 0 ]]; then
  if [[ "$TARGET" != board ]]; then
    [[ "$(id -u)" -eq 0 ]] || die "emulated targets need root (chroot and mount): sudo bash $0 ..."
    [[ -e "$EMULATED_ROOT/$DKP_ARM64_READY" ]] ||
      die "no finished arm64 root at '$EMULATED_ROOT'; build it: sudo bash $SCRIPT_DIR/emulated/build_root.sh $EMULATED_ROOT"
    binfmt_ready || enable_binfmt
    trap cleanup_emulated EXIT
    mount_root "$EMULATED_ROOT" "$QEMU_CPU_MODEL"
    rm -rf --one-file-system "$EMULATED_ROOT"/tmp/dkp-rpi.*  # a killed run's (we hold the lock)
    STAGE="$(mktemp -d "$EMULATED_ROOT/tmp/dkp-rpi.XXXXXX")"
    STAGE="${STAGE#"$EMULATED_ROOT"}"
    mkdir -p "$EMULATED_ROOT$STAGE/models" "$EMULATED_ROOT$STAGE/raw"
    cp "$SCRIPT_DIR/time_tflite.py" "$EMULATED_ROOT$STAGE/"
    cp "${MODELS[@]}" "$EMULATED_ROOT$STAGE/models/"
  else
    command -v "$PYTHON" >/dev/null 2>&1 || die "python3 not found; install it (sudo apt install python3 python3-pip)"
  fi
  if ! "${GUEST[@]}" "$GUEST_PYTHON" -c "import ai_edge_litert.interpreter" >/dev/null 2>&1; then
    die "ai-edge-litert is not installed; run: python3 -m pip install ai-edge-litert"
  fi
  if "${GUEST[@]}" "$GUEST_PYTHON" -c "import ai_edge_litert.tools.benchmark_litert_model" >/dev/null 2>&1; then
    HAVE_TOOL=1
  fi
  mkdir -p "$RAW_DIR"
else
  echo "dry run: nothing is executed"
  [[ "$TARGET" == board ]] || STAGE=/tmp/dkp-rpi.DRYRUN
  [[ "$TIMER" == python ]] || HAVE_TOOL=1  # show the commands auto would use
fi
[[ "$TIMER" != litert || "$HAVE_TOOL" -eq 1 ]] || die "--timer litert: ai_edge_litert.tools.benchmark_litert_model not available"

PIN=()
[[ -z "$TASKSET" ]] || PIN=(taskset -c "$TASKSET")

# The paths the commands see: the board's own, or the copies staged in the root.
if [[ -z "$STAGE" ]]; then
  TIMER_SCRIPT="$SCRIPT_DIR/time_tflite.py" MODEL_AT="$MODEL_DIR" JSON_AT="$RAW_DIR"
else
  TIMER_SCRIPT="$STAGE/time_tflite.py" MODEL_AT="$STAGE/models" JSON_AT="$STAGE/raw"
fi

for model in "${MODELS[@]}"; do
  stem="$(basename "$model" .tflite)"
  model="$MODEL_AT/$stem.tflite"
  for threads in "${THREAD_LIST[@]}"; do
    for xnn in "${XNN_LIST[@]}"; do
      json="$JSON_AT/${stem}__t${threads}__xnn${xnn}.json"
      if [[ "$TIMER" != python && "$HAVE_TOOL" -eq 1 && "$xnn" == on ]]; then
        cmd=("$GUEST_PYTHON" -m ai_edge_litert.tools.benchmark_litert_model --model "$model"
             --num_threads "$threads" --num_runs "$RUNS" --warmup_runs 10 --result_json "$json")
      else
        cmd=("$GUEST_PYTHON" "$TIMER_SCRIPT" --model "$model" --num_threads "$threads"
             --xnnpack "$xnn" --num_runs "$RUNS" --warmup_runs 10 --result_json "$json")
      fi
      run "${PIN[@]}" "${GUEST[@]}" "${cmd[@]}" ||
        echo "warning: $stem threads=$threads xnnpack=$xnn failed" >&2
    done
  done
done

if [[ -n "$STAGE" ]]; then  # bring the raw outputs home
  shopt -s nullglob
  RAW_FILES=("$EMULATED_ROOT$STAGE"/raw/*.json)
  shopt -u nullglob
  [[ "$DRY_RUN" -eq 0 ]] || RAW_FILES=("$EMULATED_ROOT$STAGE/raw/*.json")
  [[ ${#RAW_FILES[@]} -eq 0 ]] || run cp "${RAW_FILES[@]}" "$RAW_DIR/"
fi

run "$PYTHON" "$SCRIPT_DIR/parse_results.py" --model-dir "$MODEL_DIR" --raw-dir "$RAW_DIR" \
  --out "$OUT" --device "$DEVICE"
