"""What the benchmarks share: host description, configuration, atomic JSON output."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import dkp_keras as dkp  # sets TF_USE_LEGACY_KERAS before TensorFlow is imported
import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-order
import tf_keras as keras  # noqa: E402  pylint: disable=wrong-import-order

from tflite_ops import files  # noqa: E402


def announce_host(**extra):
  """`host_info` (with ``extra`` entries) after printing it in one line, as benchmarks start."""
  host = {**host_info(), **extra}
  more = "".join(f", {name} {value}" for name, value in extra.items())
  print(f"  host: {host['device']}, {host['usable_cpus']} CPUs, TF {host['tensorflow']}{more}")
  return host


def host_info():
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    names = []
    for gpu in gpus:
      try:
        names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
      except (ValueError, RuntimeError):
        names.append(gpu.name)
    device = "GPU: " + ", ".join(names)
  else:
    device = "CPU: " + _cpu_name()
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  return {
      "device": device,
      "cpu_count": os.cpu_count(),
      "usable_cpus": usable,
      "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
      "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
      "tensorflow": tf.__version__,
      "tf_keras": keras.__version__,
      "dkp_keras": dkp.__version__,
      "python": platform.python_version(),
      "platform": platform.platform()
  }


def _cpu_name():
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project_path(path):
  """``path`` as results record it: relative to the project root, so no machine's layout
  ends up in committed files; None (the embedded corpus) reads ``"embedded"``."""
  if path is None:
    return "embedded"
  return os.path.relpath(os.path.abspath(path), PROJECT_ROOT)


def git_commit():
  """HEAD's hash, ``-dirty`` when tracked files other than results differ from it."""
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    # The results the benchmarks write are tracked too; they do not make the code dirty.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)benchmarks/results"], cwd=PROJECT_ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"
  return commit + ("-dirty" if dirty else "")


def result_record(benchmark, config, host, start, **sections):
  """A benchmark's JSON record: what ran where, its own sections, its wall time and date.

  Args:
    benchmark: the benchmark's name.
    config: its resolved configuration.
    host: `announce_host`'s description of the machine.
    start: the ``time.perf_counter()`` reading when the run started.
    **sections: the benchmark's own entries, in order (timing method, results, ...).

  Returns:
    {"benchmark", "config", "host", *sections, "wall_s", "created"}.
  """
  return {"benchmark": benchmark, "config": config, "host": host, **sections,
          "wall_s": time.perf_counter() - start,
          "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json_atomic(path, data):
  """Writes ``data`` as JSON to ``path`` via a temp file in the same directory."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  files.write_json_atomic(path, data)


def add_quick_flag(parser, quick):
  parser.add_argument("--quick", action="store_true",
                      help="tiny configuration for smoke tests: " +
                      ", ".join(f"{k} {v}" for k, v in quick.items()))


def comma_list(kind=str, choices=None, what=""):
  """An argparse ``type``: a comma-separated list of ``kind`` values, each among ``choices``.

  >>> comma_list(float)("10, 25,50")
  (10.0, 25.0, 50.0)
  >>> comma_list(str, ("jax", "torch"), "backends")("jax,mxnet")
  Traceback (most recent call last):
  ...
  argparse.ArgumentTypeError: unknown backends ['mxnet']; choose from jax, torch
  """
  def parse(text):
    items = tuple(kind(item.strip()) for item in text.split(",") if item.strip())
    if not items:
      raise argparse.ArgumentTypeError("expected a comma-separated list")
    bad = [item for item in items if choices is not None and item not in choices]
    if bad:
      raise argparse.ArgumentTypeError(
          f"unknown {what + ' ' if what else ''}{bad}; choose from {', '.join(choices)}")
    return items
  return parse


def resolve_config(parser, args, defaults, quick, positive=()):
  """Defaults, then the --quick overrides, then explicit options; checks positive ones."""
  config = dict(defaults)
  if args.quick:
    config.update(quick)
  for key in defaults:
    value = getattr(args, key, None)
    if value is not None:
      config[key] = value
  for key in positive:
    if config[key] < 1:
      parser.error(f"--{key.replace('_', '-')} must be >= 1, got {config[key]}")
  return config


def page_parser(module, description, relative_path):
  """The command line of a page generator: ``python -m <module> [--check]``.

  Args:
    module: the generator's dotted module name (``benchmarks.results_page``).
    description: the first line of its docstring.
    relative_path: the page it writes, relative to the project root.
  """
  parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
  parser.add_argument("--check", action="store_true",
                      help=f"only check that {relative_path} is up to date (exit 1 if stale)")
  return parser


def publish_page(relative_path, page, check, command):
  """Writes a generated page (atomically), or with ``check`` only says whether it is stale.

  Args:
    relative_path: the page, relative to the project root (``docs/results.md``).
    page: the page's text as generated now.
    check: compare instead of writing.
    command: the command that regenerates the page, named in the stale message.

  Returns:
    The exit status: 1 for a stale page under ``check``, else 0.
  """
  path = os.path.join(PROJECT_ROOT, relative_path)
  if check:
    with open(path, encoding="utf-8") as f:
      stale = f.read() != page
    if stale:
      print(f"{relative_path} is stale: run {command}", file=sys.stderr)
    return 1 if stale else 0
  files.write_atomic(path, page)
  print(f"wrote {relative_path} ({len(page.splitlines())} lines)")
  return 0

