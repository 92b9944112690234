"""Import TensorFlow without its start-up log on the terminal (all of it with ``verbose=True``).

TensorFlow 2.21 prints, at import, lines logged before absl's logging is
initialized ("WARNING: All log messages before absl::InitializeLog() ...",
the oneDNN note, "Could not find cuda drivers"), which no setting read at
import hides: ``TF_CPP_MIN_LOG_LEVEL`` applies only once TensorFlow has set up
its logging. The first device query then logs "failed call to cuInit" as an
error on a machine with CUDA libraries but no GPU. So `import_tensorflow`
points the process's stderr (file descriptor 2, where the C++ code writes) at
a temporary file while it imports TensorFlow and lists the devices, and
throws that text away; if the import fails, the text is written to stderr
before the error propagates. For the rest of the run it sets
``TF_CPP_MIN_LOG_LEVEL=2`` (C++ info and warnings off, errors still shown)
unless the environment already sets it. Python's own logging and warnings
are left alone.

A command line calls it once, after parsing its arguments (so ``--help``
stays quick) and before anything that imports TensorFlow:

>>> args = parser.parse_args()                                 # doctest: +SKIP
>>> tf = import_tensorflow(verbose=args.verbose)               # doctest: +SKIP

No TensorFlow import at import time (this module exists to control it).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

# What `import_tensorflow` sets for the rest of the run unless the environment says otherwise.
QUIET_LOG_LEVEL = "2"  # TensorFlow's C++ log: 0 all, 1 no info, 2 errors only, 3 none


@contextlib.contextmanager
def stderr_hidden():
  """Sends file descriptor 2 (C/C++ and Python stderr) to a temporary file for the block.

  Yields the file (binary); on an exception in the block its text is written
  to the real stderr first, so a failure keeps its explanation.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield capture
    except BaseException:
      sys.stderr.flush()
      os.dup2(saved, 2)
      capture.seek(0)
      os.write(2, capture.read())
      raise
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


def import_tensorflow(verbose=False, legacy_keras=True):
  """Imports TensorFlow (with the project's Keras 2) and returns the module.

  Args:
    verbose: show TensorFlow's start-up log and leave its log level as the
      environment sets it (what the command lines' ``--verbose`` passes).
    legacy_keras: set ``TF_USE_LEGACY_KERAS`` (``tf.keras`` is tf_keras) unless
      the environment sets it; False for a Keras 3 run (``pipelines.train --keras 3``).

  Returns:
    The ``tensorflow`` module, its devices listed (so the device query's log
    has been printed, or hidden, already).
  """
  if legacy_keras:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # as dkp_keras sets it
  if verbose:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.config.list_physical_devices()
    return tf
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LOG_LEVEL)
  with stderr_hidden():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.config.list_physical_devices()
  return tf
