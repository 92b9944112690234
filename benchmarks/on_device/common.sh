# shellcheck shell=bash
# Shared by the on-device scripts (sourced; needs the caller's `die` and `usage`): android.sh
# and rpi.sh (their common options, checks and commands), emulated/build_root.sh and
# emulated/build_plugins.sh (their one-argument command lines), emulated/build_plugins.sh and
# emulated/fetch_qemu.sh (their cache directories and private apt state).

# Stores VALUE in the variable NAME, which must still be empty: one NAME per command line.
set_positional() {  # NAME VALUE
  [[ -z "${!1}" ]] || die "one $1 only (got '${!1}' and '$2')"
  printf -v "$1" '%s' "$2"
}

# Parses a command line of -h/--help and at most one argument, stored in the variable NAME.
parse_one_positional() {  # NAME ARGS...
  local name="$1"
  shift
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      -*) usage >&2; die "unknown option: $1" ;;
      *) set_positional "$name" "$1"; shift ;;
    esac
  done
}

# Parses the option at the head of ARGS if it is one android.sh and rpi.sh share (or MODEL_DIR)
# into its variable, and sets SHIFT_BY to the number of arguments it took.
# shellcheck disable=SC2034  # the variables are read by the caller
parse_common_option() {  # ARGS...
  SHIFT_BY=2
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --threads) THREADS="${2:?--threads needs a value}" ;;
    --xnnpack) XNNPACK="${2:?--xnnpack needs a value}" ;;
    --runs) RUNS="${2:?--runs needs a value}" ;;
    --out) OUT="${2:?--out needs a value}" ;;
    --raw-dir) RAW_DIR="${2:?--raw-dir needs a value}" ;;
    --device) DEVICE="${2:?--device needs a value}" ;;
    --dry-run) DRY_RUN=1; SHIFT_BY=1 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) set_positional MODEL_DIR "$1"; SHIFT_BY=1 ;;
  esac
}

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

# Sets MODELS to the *.tflite files of MODEL_DIR (dies when there is none) and RAW_DIR, unless
# given, to OUT without .csv plus _raw.
# shellcheck disable=SC2034  # MODELS is read by the caller
find_models() {
  shopt -s nullglob
  MODELS=("$MODEL_DIR"/*.tflite)
  shopt -u nullglob
  [[ ${#MODELS[@]} -gt 0 ]] || die "no *.tflite files in '$MODEL_DIR'"
  [[ -n "$RAW_DIR" ]] || RAW_DIR="${OUT%.csv}_raw"
}

# Prints a command (shell-quoted); runs it unless --dry-run (DRY_RUN=1).
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [[ "$DRY_RUN" -eq 0 ]]; then
    "$@"
  fi
}

# Dies unless DEST is absent or an empty directory: a cache directory holding anything else is
# never written into. WHAT says what this script would have left there.
refuse_foreign_dest() {  # DEST WHAT
  if [[ -e "$1" && -n "$(ls -A "$1" 2>/dev/null)" ]]; then
    die "'$1' exists and holds no $2; move it away or give another DEST"
  fi
}

# Makes DIR a private apt state whose only source list is DIR/sources.list (the caller writes
# it) and sets APT to the apt-get options that use it: apt's own client downloads, and the
# host's apt configuration is neither read nor changed.
private_apt_state() {  # DIR
  mkdir -p "$1/lists/partial" "$1/cache/archives/partial"
  APT=(-o "Dir::Etc::SourceList=$1/sources.list" -o Dir::Etc::SourceParts=/dev/null
       -o "Dir::State::Lists=$1/lists" -o "Dir::Cache=$1/cache" -o Debug::NoLocking=1
       -o APT::Sandbox::User=root)
}
