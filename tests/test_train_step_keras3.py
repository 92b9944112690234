"""`benchmarks.train_step_keras3`: every entry timed in one interleaved run, Keras 3 in worker
processes, ratios against the tf_keras dense LSTM; the results page's section."""

import importlib.util
import json

import pytest

from benchmarks import results_page
from benchmarks import train_step_keras3


def test_quick_run_times_tf_keras_and_keras3_workers(tmp_path):
  out = tmp_path / "train_step_keras3.json"
  # A backend that is not installed is recorded as such, not timed.
  missing = "torch" if importlib.util.find_spec("torch") is None else None
  backends = "tensorflow" + ("," + missing if missing else "")
  data = train_step_keras3.main(["--quick", "--backends", backends, "--out", str(out)])
  written = json.loads(out.read_text())
  assert written["entries"].keys() == data["entries"].keys() == {
      "tf_keras:dense", "tf_keras:dkp", "tensorflow:dense", "tensorflow:dkp"}
  entries = written["entries"]
  assert entries["tf_keras:dense"]["ratio_to_dense"] == 1.0
  for name, entry in entries.items():
    assert len(entry["samples_s"]) == train_step_keras3.QUICK["repeats"], name
    assert entry["median_s"] > 0 and entry["ratio_to_dense"] > 0, name
  # The Keras 3 entries ran on Keras 3 in their own process, and are the same models.
  assert entries["tensorflow:dkp"]["front"] == "keras3"
  assert entries["tensorflow:dkp"]["backend"] == "tensorflow"
  assert entries["tensorflow:dkp"]["trainable_params"] == (
      entries["tf_keras:dkp"]["trainable_params"])
  assert entries["tensorflow:dense"]["trainable_params"] == (
      entries["tf_keras:dense"]["trainable_params"])
  assert written["fastest_keras3_dkp"] == "tensorflow:dkp"
  assert written["meets_goal"] == (entries["tensorflow:dkp"]["ratio_to_dense"] <= 1.5)
  if missing:
    assert written["missing_backends"] == {missing: "not installed"}
  page = "\n".join(results_page.render_train_step_keras3(str(out)))
  assert "Fastest Keras 3 DKP: `tensorflow:dkp`" in page and "| tf_keras:dense |" in page


def test_unknown_backends_are_refused(capsys):
  with pytest.raises(SystemExit):
    train_step_keras3.parse_args(["--backends", "tensorflow,mxnet"])
  assert "unknown backends ['mxnet']" in capsys.readouterr().err
