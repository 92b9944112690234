"""What the product's command lines share around their work, importable without TensorFlow.

Each command (`train`, `convert`, `compress`, `run`, `quickstart`) builds its
parser with `add_verbose_flag` last, calls `parse_then_import_tensorflow`, and
only then imports the module doing the work (which imports TensorFlow), so
``--help`` and usage errors answer without loading it. An expected failure
becomes one line on stderr and an exit status (`fail`).
"""

from __future__ import annotations

import sys

from tflite_ops import quiet_tensorflow


def add_verbose_flag(parser):
  """Adds ``--verbose``, which shows TensorFlow's start-up log (`quiet_tensorflow`).

  Args:
    parser: the command's ``argparse.ArgumentParser``.
  """
  parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log")


def parse_then_import_tensorflow(parser, argv=None):
  """Parses the command line, then imports TensorFlow (quietly unless ``--verbose``).

  In this order so that ``--help`` and usage errors exit before TensorFlow
  loads; the caller imports the modules that need TensorFlow after this returns.

  Args:
    parser: the command's parser, with `add_verbose_flag`'s flag.
    argv: the arguments (None: ``sys.argv[1:]``).

  Returns:
    The parsed arguments.
  """
  args = parser.parse_args(argv)
  quiet_tensorflow.import_tensorflow(verbose=args.verbose)
  return args


def fail(error, status=1):
  """Prints ``error: <error>`` to stderr and returns ``status``, the command's exit status.

  Args:
    error: the exception (or message) that stopped the command.
    status: the exit status to return.
  """
  print(f"error: {error}", file=sys.stderr)
  return status
