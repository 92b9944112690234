"""Atomic output: the destination is replaced whole or not at all, with normal permissions."""

import os
import stat

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
