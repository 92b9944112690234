#!/usr/bin/env bash
# Times every *.tflite of MODEL_DIR on a Raspberry Pi (run it ON the board) with LiteRT.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"

usage() {
  cat <<'USAGE'
Usage: rpi.sh MODEL_DIR [options]        (run on the board itself)

Times each model x threads x XNNPack setting with
`python3 -m ai_edge_litert.tools.benchmark_litert_model` when it is installed
(XNNPack on only: that tool cannot turn XNNPack off, and it rounds to 10 µs),
else with time_tflite.py (LiteRT Interpreter, zero inputs, 10 warm-up runs,
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

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --threads) THREADS="${2:?--threads needs a value}"; shift 2 ;;
    --xnnpack) XNNPACK="${2:?--xnnpack needs a value}"; shift 2 ;;
    --runs) RUNS="${2:?--runs needs a value}"; shift 2 ;;
    --out) OUT="${2:?--out needs a value}"; shift 2 ;;
    --raw-dir) RAW_DIR="${2:?--raw-dir needs a value}"; shift 2 ;;
    --timer) TIMER="${2:?--timer needs a value}"; shift 2 ;;
    --taskset) TASKSET="${2:?--taskset needs a value}"; shift 2 ;;
    --device) DEVICE="${2:?--device needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *)
      [[ -z "$MODEL_DIR" ]] || die "one MODEL_DIR only (got '$MODEL_DIR' and '$1')"
      MODEL_DIR="$1"; shift ;;
  esac
done

check_common_args
case "$TIMER" in auto|litert|python) ;; *) die "--timer must be auto, litert or python" ;; esac
[[ -z "$TASKSET" || "$TASKSET" =~ ^[0-9,-]+$ ]] || die "--taskset takes a CPU list like 3 or 2-3"

shopt -s nullglob
MODELS=("$MODEL_DIR"/*.tflite)
shopt -u nullglob
[[ ${#MODELS[@]} -gt 0 ]] || die "no *.tflite files in '$MODEL_DIR'"
[[ -n "$RAW_DIR" ]] || RAW_DIR="${OUT%.csv}_raw"

# --- environment -------------------------------------------------------------
CPU_MODEL="$(grep -m1 -E '^(model name|Model|Hardware)[[:space:]]*:' /proc/cpuinfo 2>/dev/null \
  | cut -d: -f2- | sed 's/^ *//' || true)"
echo "cpu: ${CPU_MODEL:-unknown} ($(uname -m))"
echo "advice: pin with --taskset 3 (taskset -c 3), set the performance governor:"
echo "  echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"
[[ -n "$DEVICE" ]] || DEVICE="${CPU_MODEL:-rpi} $(uname -m)"

HAVE_TOOL=0
if [[ "$DRY_RUN" -eq 0 ]]; then
  command -v "$PYTHON" >/dev/null 2>&1 || die "python3 not found; install it (sudo apt install python3 python3-pip)"
  if ! "$PYTHON" -c "import ai_edge_litert.interpreter" >/dev/null 2>&1; then
    die "ai-edge-litert is not installed; run: python3 -m pip install ai-edge-litert"
  fi
  if "$PYTHON" -c "import ai_edge_litert.tools.benchmark_litert_model" >/dev/null 2>&1; then
    HAVE_TOOL=1
  fi
  mkdir -p "$RAW_DIR"
else
  echo "dry run: nothing is executed"
  [[ "$TIMER" == python ]] || HAVE_TOOL=1  # show the commands auto would use
fi
[[ "$TIMER" != litert || "$HAVE_TOOL" -eq 1 ]] || die "--timer litert: ai_edge_litert.tools.benchmark_litert_model not available"

PIN=()
[[ -z "$TASKSET" ]] || PIN=(taskset -c "$TASKSET")

# Prints a command (shell-quoted); runs it unless --dry-run.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [[ "$DRY_RUN" -eq 0 ]]; then
    "$@"
  fi
}

for model in "${MODELS[@]}"; do
  stem="$(basename "$model" .tflite)"
  for threads in "${THREAD_LIST[@]}"; do
    for xnn in "${XNN_LIST[@]}"; do
      json="$RAW_DIR/${stem}__t${threads}__xnn${xnn}.json"
      if [[ "$TIMER" != python && "$HAVE_TOOL" -eq 1 && "$xnn" == on ]]; then
        cmd=("$PYTHON" -m ai_edge_litert.tools.benchmark_litert_model --model "$model"
             --num_threads "$threads" --num_runs "$RUNS" --warmup_runs 10 --result_json "$json")
      else
        cmd=("$PYTHON" "$SCRIPT_DIR/time_tflite.py" --model "$model" --num_threads "$threads"
             --xnnpack "$xnn" --num_runs "$RUNS" --warmup_runs 10 --result_json "$json")
      fi
      run "${PIN[@]}" "${cmd[@]}" || echo "warning: $stem threads=$threads xnnpack=$xnn failed" >&2
    done
  done
done

run "$PYTHON" "$SCRIPT_DIR/parse_results.py" --model-dir "$MODEL_DIR" --raw-dir "$RAW_DIR" \
  --out "$OUT" --device "$DEVICE"
