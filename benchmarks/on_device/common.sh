# shellcheck shell=bash
# Shared by android.sh and rpi.sh (sourced; needs their `die` and `usage`).

# Checks MODEL_DIR, RUNS, THREADS and XNNPACK; sets THREAD_LIST and XNN_LIST.
# shellcheck disable=SC2034  # THREAD_LIST and XNN_LIST are read by the caller
check_common_args() {
  [[ -n "$MODEL_DIR" ]] || { usage >&2; die "MODEL_DIR is required"; }
  [[ -d "$MODEL_DIR" ]] || die "MODEL_DIR '$MODEL_DIR' is not a directory"
  [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, got '$RUNS'"
  [[ "$THREADS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--threads must be like 1,2, got '$THREADS'"
  IFS=',' read -r -a THREAD_LIST <<< "$THREADS"
  IFS=',' read -r -a XNN_LIST <<< "$XNNPACK"
  local x
  for x in "${XNN_LIST[@]}"; do
    [[ "$x" == on || "$x" == off ]] || die "--xnnpack takes on,off; got '$x'"
  done
}
