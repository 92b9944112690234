"""tflite_ops.quiet_tensorflow: the start-up log hidden, shown with verbose, kept on failure.

Each case runs in a fresh process: the log is printed once per process, at import.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# A line of TensorFlow's C++ log ("I0000 00:00:... port.cc:153] ...") or absl's pre-init banner.
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")


def run_python(code, tmp_path, pythonpath=(), **env_changes):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # conftest sets it
  env.update(env_changes)
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), *map(str, pythonpath)])
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        cwd=tmp_path, env=env, timeout=180, check=False)


def start_tensorflow(verbose):
  """Imports TensorFlow through the helper, then runs an op and reports the log level."""
  return ("import os\n"
          "from tflite_ops.quiet_tensorflow import import_tensorflow\n"
          f"tf = import_tensorflow(verbose={verbose})\n"
          "print(float(tf.constant(1.0) + 1), os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\n")


def log_lines(stderr):
  return [line for line in stderr.splitlines() if TF_LOG_LINE.match(line)]


def test_start_up_log_is_hidden_unless_verbose(tmp_path):
  verbose = run_python(start_tensorflow(True), tmp_path)
  assert verbose.returncode == 0, verbose.stderr
  assert verbose.stdout.split()[0] == "2.0"
  shown = log_lines(verbose.stderr)
  if not shown:
    pytest.skip("this TensorFlow prints nothing at start-up: nothing to hide")
  quiet = run_python(start_tensorflow(False), tmp_path)
  assert quiet.returncode == 0, quiet.stderr
  assert quiet.stdout.split() == ["2.0", "2"]
  assert log_lines(quiet.stderr) == [], quiet.stderr
  for noise in ("cuInit", "absl::InitializeLog", "oneDNN", "cuda drivers"):
    assert noise not in quiet.stderr
  # On a machine with CUDA libraries and no GPU (as here), verbose shows the cuInit error.
  if "cudart_stub" in verbose.stderr and "Could not find cuda drivers" in verbose.stderr:
    assert "failed call to cuInit" in verbose.stderr


def test_the_users_log_level_is_kept(tmp_path):
  run = run_python(start_tensorflow(False), tmp_path, TF_CPP_MIN_LOG_LEVEL="0")
  assert run.returncode == 0, run.stderr
  assert run.stdout.split() == ["2.0", "0"]


def test_a_failed_import_shows_what_tensorflow_printed(tmp_path):
  """The hidden text is written out when the import fails: the error keeps its explanation."""
  fake = tmp_path / "fake" / "tensorflow"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text(
      "import os\nos.write(2, b'E0000 libtensorflow.so: cannot open shared object file\\n')\n"
      "raise ImportError('fake TensorFlow that cannot load')\n")
  run = run_python("from tflite_ops.quiet_tensorflow import import_tensorflow\n"
                   "import_tensorflow()\n", tmp_path, pythonpath=[tmp_path / "fake"])
  assert run.returncode == 1
  assert "cannot open shared object file" in run.stderr
  assert "ImportError: fake TensorFlow that cannot load" in run.stderr


def test_hidden_stderr_is_restored_after_the_block(tmp_path):
  run = run_python("import os, sys\n"
                   "from tflite_ops.quiet_tensorflow import stderr_hidden\n"
                   "with stderr_hidden():\n"
                   "  os.write(2, b'hidden by fd\\n'); print('hidden by print', file=sys.stderr)\n"
                   "print('shown after', file=sys.stderr)\n", tmp_path)
  assert run.returncode == 0, run.stderr
  assert run.stderr == "shown after\n"
