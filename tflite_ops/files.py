"""Atomic file output: a reader never sees half a file, a failure never clobbers one.

Everything the project writes (models, .tflite files, reports, plots, JSON)
goes to a temporary file beside its destination and is renamed into place.
No TensorFlow import here: the .tflite inspector uses it too.

>>> write_json_atomic("report.json", {"ok": True})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile


def temp_beside(path):
  """An empty temporary file in ``path``'s directory, with the same extension."""
  directory = os.path.dirname(os.path.abspath(path))
  name, extension = os.path.splitext(os.path.basename(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=extension)
  os.close(fd)
  return tmp


def publish(tmp, path):
  """Moves a finished temporary file to ``path``, with a plain open()'s permissions."""
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates files 0600
  os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path to write; on success it replaces ``path``, else it is removed."""
  tmp = temp_beside(path)
  try:
    yield tmp
    publish(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_atomic(path, data):
  """Writes bytes or text to ``path`` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "wb" if isinstance(data, bytes) else "w", encoding=None if isinstance(
        data, bytes) else "utf-8") as handle:
      handle.write(data)
      handle.flush()
      os.fsync(handle.fileno())


def write_json_atomic(path, payload):
  """Writes ``payload`` as indented JSON to ``path`` atomically."""
  write_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")
