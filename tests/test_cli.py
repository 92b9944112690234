"""Every product CLI: each flag has a help line, --help shows every default and answers without
TensorFlow, and TensorFlow's start-up log shows only with --verbose."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from pipelines import cli, compress, convert, quickstart, run, train
from tests.test_quiet_tensorflow import REPO, log_lines, run_python

PARSERS = {"train": train.build_parser, "convert": convert.build_parser,
           "compress": compress.build_parser, "run": run.build_parser,
           "quickstart": quickstart.build_parser}


# pylint: disable=protected-access
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_flag_has_help_and_every_default_is_shown(name):
  parser = PARSERS[name]()
  formatter = parser._get_formatter()
  for action in parser._actions:
    if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
      continue
    flag = (action.option_strings or [action.dest])[-1]
    assert action.help, f"{name}: {flag} has no help line"
    if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
      shown = formatter._expand_help(action)
      assert "default" in shown and str(action.default) in shown, \
          f"{name}: {flag}'s default {action.default!r} is not shown: {shown!r}"


HEAVY = ("tensorflow", "tf_keras", "tensorflow_model_optimization")
# Runs a CLI with --help, then with an unknown flag, in this process; prints the exit codes
# and the heavy packages loaded.
HELP_AND_USAGE_ERROR = """
import json, runpy, sys
codes = []
for argv in (["--help"], ["--no-such-flag"]):
  sys.argv = ["{module}", *argv]
  try:
    runpy.run_module("{module}", run_name="__main__")
  except SystemExit as exit:
    codes.append(exit.code)
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({heavy}))
print(json.dumps({{"codes": codes, "loaded": loaded}}))
"""


def _loads_tensorflow(module, tmp_path):
  run = run_python(f"import sys, {module}\n"
                   f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY})))",
                   tmp_path)
  assert run.returncode == 0, run.stderr
  return run.stdout.strip() != "[]"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_and_usage_errors_answer_without_tensorflow(name, tmp_path):
  module = f"pipelines.{name}"
  # train's --cmr-granularity / --cmr-decay choices are dkp_keras.cmr's: pure once that module
  # no longer imports TensorFlow (its pure part is moving out in parallel).
  if name == "train" and _loads_tensorflow("dkp_keras.cmr", tmp_path):
    pytest.skip("dkp_keras.cmr imports TensorFlow in this tree; train's parser needs its "
                "GRANULARITIES and DECAYS")
  run = run_python(HELP_AND_USAGE_ERROR.format(module=module, heavy=HEAVY), tmp_path)
  assert run.returncode == 0, run.stderr
  result = json.loads(run.stdout.splitlines()[-1])
  assert result["codes"] == [0, 2], run.stderr
  assert "usage: python -m " + module in run.stdout
  assert f"python -m {module}: error: " in run.stderr  # a missing argument or the unknown flag
  assert result["loaded"] == [], f"{module} --help loaded {result['loaded']}"


def test_tensorflow_start_up_log_only_with_verbose(tmp_path):
  """A real run (convert of a missing model: it imports TensorFlow, then fails)."""
  command = ("import sys\nfrom pipelines import convert\n"
             "sys.exit(convert.main(sys.argv[1:]))\n")
  args = ["missing.keras", "--out", "m.tflite", "--verify", "0"]

  def convert_missing_model(*extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # conftest's
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", command, *args, *extra], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=180, check=False)

  verbose = convert_missing_model("--verbose")
  assert verbose.returncode == 1 and "missing.keras" in verbose.stderr, verbose.stderr
  if not log_lines(verbose.stderr):
    pytest.skip("this TensorFlow prints nothing at start-up: nothing to hide")
  quiet = convert_missing_model()
  assert quiet.returncode == 1, quiet.stderr
  assert log_lines(quiet.stderr) == [], quiet.stderr
  for noise in ("cuInit", "absl::InitializeLog", "oneDNN", "cuda drivers"):
    assert noise not in quiet.stderr
  # What is left is the command's own error, as with --verbose.
  assert quiet.stderr.strip().splitlines() == [verbose.stderr.strip().splitlines()[-1]]
  assert quiet.stderr.startswith("error: ")
  if "cudart_stub" in verbose.stderr and "Could not find cuda drivers" in verbose.stderr:
    assert "failed call to cuInit" in verbose.stderr



def test_fail_prints_one_error_line_and_returns_the_exit_status(capsys):
  assert cli.fail(ValueError("missing.keras: no such file")) == 1
  assert cli.fail(OSError("disk full"), 2) == 2
  captured = capsys.readouterr()
  assert captured.out == ""
  assert captured.err == "error: missing.keras: no such file\nerror: disk full\n"
