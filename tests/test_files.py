"""Atomic output: the destination is replaced whole or not at all, with normal permissions."""

import ast
import os
import pathlib
import signal
import stat
import subprocess
import sys

import pytest

from tflite_ops import files


def test_write_atomic_text_bytes_and_json(tmp_path):
  files.write_atomic(tmp_path / "a.txt", "hello")
  files.write_atomic(tmp_path / "b.bin", b"\x00\x01")
  files.write_json_atomic(tmp_path / "c.json", {"x": 1})
  assert (tmp_path / "a.txt").read_text() == "hello"
  assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
  assert '"x": 1' in (tmp_path / "c.json").read_text()
  umask = os.umask(0)
  os.umask(umask)
  assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o666 & ~umask
  assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin", "c.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
  target = tmp_path / "model.keras"
  target.write_text("old")
  with pytest.raises(RuntimeError):
    with files.atomic_path(target) as tmp:
      assert tmp.endswith(".keras") and os.path.dirname(tmp) == str(tmp_path)
      with open(tmp, "w") as handle:
        handle.write("half")
      raise RuntimeError("crash mid-write")
  assert target.read_text() == "old"
  assert os.listdir(tmp_path) == ["model.keras"]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dead_pid():
  """The id of a process that has finished (and been reaped)."""
  child = subprocess.Popen([sys.executable, "-c", "pass"])
  child.wait()
  return child.pid


def test_temp_names_are_hidden_and_say_whose_they_are(tmp_path):
  tmp = files.temp_beside(tmp_path / "model.tflite")
  name = os.path.basename(tmp)
  assert name.startswith(".model.") and name.endswith(".tflite")
  assert files.stale_temp_pid(name) == os.getpid()
  assert files.stale_temp_pid(".model.abcd1234.tflite") is None   # not marked: not ours


def test_a_killed_writers_temp_is_removed_by_the_next_write(tmp_path):
  """kill -9 mid-write leaves a temp; the next write into that directory removes it."""
  writer = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\nfrom tflite_ops import files\n"
       "with files.atomic_path(sys.argv[1]) as tmp:\n"
       "  open(tmp, 'wb').write(b'x' * 1000)\n  print(tmp, flush=True)\n  time.sleep(60)\n",
       str(tmp_path / "model.tflite")], cwd=REPO, stdout=subprocess.PIPE, text=True)
  leftover = writer.stdout.readline().strip()
  writer.send_signal(signal.SIGKILL)
  writer.wait()
  writer.stdout.close()
  assert os.path.exists(leftover)
  files.write_json_atomic(tmp_path / "report.json", {})
  assert sorted(os.listdir(tmp_path)) == ["report.json"]


def test_only_our_temps_of_dead_processes_are_removed(tmp_path):
  live = os.path.basename(files.temp_beside(tmp_path / "m.tflite"))   # this process's
  pid = dead_pid()
  dead = live.replace(f".{os.getpid()}.", f".{pid}.")
  host = live.split(f".{files.TEMP_MARKER}.")[1].split(".")[0]
  directory = dead[:-len(".tflite")]
  assert files.stale_temp_pid(dead) == files.stale_temp_pid(directory) == pid
  kept = [live,
          dead.replace(f".{host}.", ".other-host."),   # another machine's (shared disk)
          ".m.abcd1234.tflite",   # unmarked: not ours
          dead[1:]]               # not hidden: a user's file
  for name in [dead] + kept:
    (tmp_path / name).write_bytes(b"x")
  os.mkdir(tmp_path / directory)   # a directory is never removed
  files.write_atomic(tmp_path / "new.txt", "new")
  assert not (tmp_path / dead).exists()
  assert sorted(os.listdir(tmp_path)) == sorted(kept + ["new.txt", directory])


# ---------------------------------------------------------------- output locations


def test_an_output_is_never_an_input_even_with_force(tmp_path):
  model = tmp_path / "m.keras"
  model.write_bytes(b"model")
  (tmp_path / "link.tflite").symlink_to(model)
  os.link(model, tmp_path / "hard.tflite")
  for out in (model, tmp_path / "link.tflite", tmp_path / "hard.tflite",
              tmp_path / "sub" / ".." / "m.keras"):
    with pytest.raises(files.OutputPathError, match="is the input model.*even with --force"):
      files.check_outputs({"--out": out}, {"model": model}, force=True)
  saved_model = tmp_path / "sm"
  saved_model.mkdir()
  with pytest.raises(files.OutputPathError, match="inside it"):
    files.check_outputs({"--out": saved_model / "saved_model.pb"}, {"model": saved_model},
                        force=True)
  assert model.read_bytes() == b"model"


def test_two_outputs_are_never_one_path(tmp_path):
  (tmp_path / "alias.json").symlink_to(tmp_path / "x.tflite")   # dangling: x is not written yet
  for report in (tmp_path / "x.tflite", tmp_path / "alias.json"):
    with pytest.raises(files.OutputPathError, match="--out and --report are both"):
      files.check_outputs({"--out": tmp_path / "x.tflite", "--report": report}, force=True)


@pytest.mark.parametrize("make, force, message", [
    (lambda d: _touch(d / "r.json"), False, "--report .*r.json exists; pass --force"),
    (lambda d: d / "nodir" / "r.json", True, "directory .*nodir does not exist"),
    (lambda d: _touch(d / "file") / "r.json", True, "directory .*file is not a directory"),
    (lambda d: d, True, "is a directory; give a file name"),
])
def test_bad_output_locations_are_refused(make, force, message, tmp_path):
  with pytest.raises(files.OutputPathError, match=message):
    files.check_outputs({"--out": tmp_path / "ok.tflite", "--report": make(tmp_path)},
                        force=force)


def test_good_outputs_pass_and_force_allows_replacing(tmp_path):
  _touch(tmp_path / "r.json")
  checked = files.check_outputs({"--out": tmp_path / "m.tflite", "--report": tmp_path / "r.json",
                                 "--plot": None}, {"model": tmp_path / "m.keras"}, force=True)
  assert checked == {"--out": str(tmp_path / "m.tflite"), "--report": str(tmp_path / "r.json")}


def _touch(path):
  path.write_bytes(b"")
  return path


# Calls that write a file in place (not through files.atomic_path and its kin).
_DIRECT_WRITES = {"write_text", "write_bytes", "save", "savefig", "dump", "tofile"}
# Calls that move or copy onto a path, by module (str.replace and dict.copy are fine).
_MODULE_WRITES = {"os": {"replace", "rename"}, "shutil": {"copy", "copyfile", "copy2", "move"}}


def _direct_writes(source):
  """(line, call) of each call in ``source`` that writes a file without the atomic helpers."""
  found = []
  for node in ast.walk(ast.parse(source)):
    if not isinstance(node, ast.Call):
      continue
    name = getattr(node.func, "attr", getattr(node.func, "id", ""))
    if name == "open":
      mode = node.args[1] if len(node.args) > 1 else next(
          (k.value for k in node.keywords if k.arg == "mode"), None)
      if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+"):
        found.append((node.lineno, ast.unparse(node)))
    elif name in _DIRECT_WRITES or name in _MODULE_WRITES.get(
        getattr(getattr(node.func, "value", None), "id", None), ()):
      found.append((node.lineno, ast.unparse(node)))
  return sorted(found)


def test_the_scan_finds_a_direct_write():
  assert [line for line, _ in _direct_writes(
      "open(p, 'wb').write(b)\npath.write_text('x')\nopen(p)\nfiles.write_atomic(p, b)\n"
      "os.replace(a, b)\nname.replace('a', 'b')\n")] == [1, 2, 5]


def test_every_writer_in_tflite_ops_is_atomic():
  """What files.py promises: tflite_ops writes files only through its atomic helpers."""
  package = pathlib.Path(REPO) / "tflite_ops"
  for module in sorted(package.glob("*.py")):
    if module.name != "files.py":
      assert _direct_writes(module.read_text()) == [], module.name
