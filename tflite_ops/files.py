"""Atomic file output: a reader never sees half a file, a failure never clobbers one.

A file written through these helpers (`atomic_path`, `write_atomic`,
`write_json_atomic`, or `temp_beside` + `publish`) goes to a temporary file
beside its destination and is renamed into place. The writers of
`tflite_ops` all use them (a test checks that none writes a file directly);
elsewhere in the project, a writer is atomic only where it calls them.
Temporary names say whose they are (``.<name>.dkp-tmp.<host>.<pid>.<random><ext>``):
the leftovers of a killed process are removed by the next write into their
directory. `check_outputs` checks a command's output locations before it does
any work. No TensorFlow import here: the .tflite inspector uses it too.

>>> write_json_atomic("report.json", {"ok": True})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile

TEMP_MARKER = "dkp-tmp"
# The host is part of the name so that a temp written by another machine on a
# shared file system is never judged by this machine's process table.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_TEMP_NAME = re.compile(rf"\..*\.{TEMP_MARKER}\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\."
                        r"[A-Za-z0-9_]+(\.[^.]*)?")


class OutputPathError(ValueError):
  """An output location that cannot or may not be written; the message says why and what to do."""


def temp_beside(path):
  """An empty temporary file in ``path``'s directory, with the same extension.

  Its name is hidden and marked as ours, with this process's id; our leftovers
  in that directory from processes that no longer run are removed first.
  """
  directory = os.path.dirname(os.path.abspath(path))
  remove_stale_temps(directory)
  name, extension = os.path.splitext(os.path.basename(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.{TEMP_MARKER}.{_HOST}.{os.getpid()}.",
                             suffix=extension)
  os.close(fd)
  return tmp


def stale_temp_pid(name):
  """The pid in ``name`` if it is a temp of ours written on this host, else None."""
  match = _TEMP_NAME.fullmatch(name)
  if match is None or match["host"] != _HOST:
    return None
  return int(match["pid"])


def _process_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  except (OverflowError, ValueError):  # no process can have that id
    return False
  return True


def remove_stale_temps(directory):
  """Removes temps of ours in ``directory`` whose writing process is gone; returns their paths.

  Only regular files named by `temp_beside` on this host and owned by this
  user are candidates; a temp whose process still runs is kept.
  """
  try:
    names = os.listdir(directory)
  except OSError:
    return []
  removed = []
  for name in names:
    pid = stale_temp_pid(name)
    if pid is None or _process_alive(pid):
      continue
    path = os.path.join(directory, name)
    try:
      info = os.lstat(path)
      if not os.path.isfile(path) or os.path.islink(path) or info.st_uid != os.getuid():
        continue
      os.remove(path)
      removed.append(path)
    except FileNotFoundError:  # another process cleaned it first
      continue
  return removed


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


def _same_place(a, b):
  """Whether paths ``a`` and ``b`` name one file (symlinks and hard links included)."""
  if os.path.realpath(a) == os.path.realpath(b):
    return True
  try:
    return os.path.samefile(a, b)
  except OSError:  # one does not exist yet
    return False


def _inside(path, directory):
  return os.path.realpath(path).startswith(os.path.join(os.path.realpath(directory), ""))


def check_outputs(outputs, inputs=None, force=False):
  """Checks, before any work, that every output can be written and loses no file.

  An output may not be an input (or lie inside an input directory) nor another
  output, even with ``force``; it may not be a directory; its directory must
  exist and be writable; an existing file is replaced only with ``force``.

  Args:
    outputs: {label: path} of what a command will write, labels as the user
      gave them (e.g. ``{"--out": "m.tflite", "--report": "r.json"}``); None
      paths are skipped.
    inputs: {label: path} of what it reads; None paths are skipped.
    force: whether existing output files may be replaced.

  Returns:
    {label: absolute path} of the outputs checked.

  Raises:
    OutputPathError: naming the output, the problem and the fix.
  """
  outputs = {label: os.path.abspath(os.fspath(p)) for label, p in outputs.items() if p is not None}
  inputs = {label: os.fspath(p) for label, p in (inputs or {}).items() if p is not None}
  seen = {}
  for label, path in outputs.items():
    for source_label, source in inputs.items():
      if _same_place(path, source) or (os.path.isdir(source) and _inside(path, source)):
        raise OutputPathError(f"{label} {path} is the input {source_label} {source}"
                              f"{'' if _same_place(path, source) else ' (inside it)'}: an output "
                              f"never replaces an input, even with --force; write it elsewhere")
    for other_label, other in seen.items():
      if _same_place(path, other):
        raise OutputPathError(f"{other_label} and {label} are both {path}; give each output its "
                              "own path")
    seen[label] = path
    directory = os.path.dirname(path)
    if os.path.isdir(path):
      raise OutputPathError(f"{label} {path} is a directory; give a file name")
    if os.path.lexists(path) and not force:
      raise OutputPathError(f"{label} {path} exists; pass --force to overwrite it")
    if not os.path.isdir(directory):
      what = "is not a directory" if os.path.exists(directory) else "does not exist"
      raise OutputPathError(f"cannot write {label} {path}: directory {directory} {what}")
    if not os.access(directory, os.W_OK | os.X_OK):
      raise OutputPathError(f"cannot write {label} {path}: directory {directory} is not writable")
  return outputs
