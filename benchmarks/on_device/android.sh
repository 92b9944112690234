#!/usr/bin/env bash
# Times every *.tflite of MODEL_DIR on an Android device with TFLite's benchmark_model.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"
REMOTE_DIR="/data/local/tmp/dkp"

usage() {
  cat <<'USAGE'
Usage: android.sh MODEL_DIR [options]

Pushes every *.tflite in MODEL_DIR and TFLite's benchmark_model binary to
/data/local/tmp/dkp with adb, runs each model x threads x XNNPack setting,
saves each raw output and parses them into a CSV (parse_results.py).

Options:
  --threads LIST          thread counts, comma-separated (default 1,2)
  --xnnpack LIST          on,off / on / off (default on,off)
  --cores big|little|all  pin with taskset (default all: no pinning)
  --mask HEX              taskset mask overriding --cores (e.g. f0)
  --runs N                timed runs per setting (default 100; warm-up 10)
  --out FILE              CSV to write (default results.csv)
  --raw-dir DIR           where raw outputs go (default: OUT without .csv + _raw)
  --benchmark-model PATH  benchmark_model binary for the device's ABI
                          (default: $TFLITE_BENCHMARK_MODEL)
  --device NAME           device column (default: adb's ro.product.model)
  --serial SERIAL         adb -s SERIAL (several devices attached)
  --dry-run               print the commands, run nothing (needs neither adb nor the binary)
  -h, --help              this text

Core masks are DEVICE-SPECIFIC: big = f0 (CPUs 4-7), little = 0f (CPUs 0-3)
hold on many 4+4 big.LITTLE phones, not on all (1+3+4, 2+6, ...). Check
/sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq and pass --mask.

Get benchmark_model (android_arm64 nightly) from
https://www.tensorflow.org/lite/performance/measurement
USAGE
}

die() { echo "android.sh: error: $*" >&2; exit 2; }

MODEL_DIR=""
THREADS="1,2"
XNNPACK="on,off"
CORES="all"
MASK=""
RUNS=100
OUT="results.csv"
RAW_DIR=""
BENCHMARK_MODEL="${TFLITE_BENCHMARK_MODEL:-}"
DEVICE=""
SERIAL=""
DRY_RUN=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --cores) CORES="${2:?--cores needs a value}"; shift 2 ;;
    --mask) MASK="${2:?--mask needs a value}"; shift 2 ;;
    --benchmark-model) BENCHMARK_MODEL="${2:?--benchmark-model needs a value}"; shift 2 ;;
    --serial) SERIAL="${2:?--serial needs a value}"; shift 2 ;;
    *) parse_common_option "$@"; shift "$SHIFT_BY" ;;
  esac
done

check_common_args
if [[ -z "$MASK" ]]; then
  case "$CORES" in
    big) MASK="f0" ;;
    little) MASK="0f" ;;
    all) MASK="" ;;
    *) die "--cores must be big, little or all; got '$CORES'" ;;
  esac
fi
[[ -z "$MASK" || "$MASK" =~ ^(0x)?[0-9a-fA-F]+$ ]] || die "--mask must be hex, got '$MASK'"

find_models

ADB=(adb)
[[ -z "$SERIAL" ]] || ADB=(adb -s "$SERIAL")

if [[ "$DRY_RUN" -eq 0 ]]; then
  command -v adb >/dev/null 2>&1 || die "adb not found on PATH (Android platform-tools)"
  [[ -n "$BENCHMARK_MODEL" ]] || die "no benchmark_model binary: pass --benchmark-model PATH or set TFLITE_BENCHMARK_MODEL"
  [[ -f "$BENCHMARK_MODEL" ]] || die "benchmark_model binary '$BENCHMARK_MODEL' not found"
  command -v python3 >/dev/null 2>&1 || die "python3 not found (needed to parse the results)"
fi
[[ -n "$BENCHMARK_MODEL" ]] || BENCHMARK_MODEL="benchmark_model"

if [[ "$DRY_RUN" -eq 0 ]]; then
  mkdir -p "$RAW_DIR"
  if [[ -z "$DEVICE" ]]; then
    DEVICE="$("${ADB[@]}" shell getprop ro.product.model | tr -d '\r')"
  fi
  echo "device: $DEVICE ($("${ADB[@]}" shell getprop ro.product.cpu.abi | tr -d '\r'))"
else
  echo "dry run: nothing is executed"
fi

run "${ADB[@]}" shell mkdir -p "$REMOTE_DIR"
run "${ADB[@]}" push "$BENCHMARK_MODEL" "$REMOTE_DIR/benchmark_model"
run "${ADB[@]}" shell chmod 755 "$REMOTE_DIR/benchmark_model"
for model in "${MODELS[@]}"; do
  run "${ADB[@]}" push "$model" "$REMOTE_DIR/$(basename "$model")"
done

PREFIX=""
[[ -z "$MASK" ]] || PREFIX="taskset ${MASK#0x} "
for model in "${MODELS[@]}"; do
  name="$(basename "$model")"
  stem="${name%.tflite}"
  for threads in "${THREAD_LIST[@]}"; do
    for xnn in "${XNN_LIST[@]}"; do
      flag=false
      [[ "$xnn" == on ]] && flag=true
      raw="$RAW_DIR/${stem}__t${threads}__xnn${xnn}.txt"
      remote="${PREFIX}$REMOTE_DIR/benchmark_model --graph=$REMOTE_DIR/$name"
      remote+=" --num_threads=$threads --use_xnnpack=$flag --num_runs=$RUNS --warmup_runs=10"
      echo "+ ${ADB[*]} shell '$remote' > $raw"
      if [[ "$DRY_RUN" -eq 0 ]]; then
        "${ADB[@]}" shell "$remote" > "$raw" 2>&1 || {
          echo "warning: $name threads=$threads xnnpack=$xnn failed; see $raw" >&2; }
      fi
    done
  done
done

parse=(python3 "$SCRIPT_DIR/parse_results.py" --model-dir "$MODEL_DIR" --raw-dir "$RAW_DIR"
       --out "$OUT" --device "${DEVICE:-android}")
run "${parse[@]}"
