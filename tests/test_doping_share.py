"""benchmarks.studies.doping_share on tiny trained runs: S removed and restored, bad input named."""

import json
import os

import numpy as np
import pytest

from benchmarks.studies import doping_share
import dkp_keras as dkp
from dkp_keras import traversal
from pipelines import presets
from pipelines import training

TINY = presets.Recipe("tiny", layers=1, units=16, embedding=8, num_steps=8, batch_size=8,
                      epochs=1, optimizer="adam", learning_rate=3e-3, corpus_tokens=4000)


@pytest.fixture(name="runs", scope="module")
def _runs(tmp_path_factory):
  runs = tmp_path_factory.mktemp("runs")
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(presets.PRESETS, "tiny", TINY)
    for method in ("dense", "dkp"):
      training.train_run(str(runs / f"{method}-run"), "tiny", None, method,
                      1.0 if method == "dense" else 4.0, verbose=0)
  return runs


def _dopings(model):
  return [doping for owner in traversal.find_doped_owners(model)
          for doping in owner.get_prunable_weights()]


def test_main_measures_only_doped_runs(runs, tmp_path):
  out = tmp_path / "share.json"
  assert doping_share.main(["--runs", str(runs), "--out", str(out)]) == 0
  written = json.loads(out.read_text())
  assert not os.path.isabs(written["runs"]) and written["data"] == "embedded"
  [row] = written["results"]
  assert row["run"] == "dkp-run" and row["method"] == "dkp"
  metrics = json.loads((runs / "dkp-run" / "metrics.json").read_text())
  assert row["valid_ppl"] == pytest.approx(metrics["valid_perplexity"], rel=1e-5)
  assert row["valid_ppl_without_doping"] != pytest.approx(row["valid_ppl"], rel=1e-4)
  assert {m["matrix"] for m in row["matrices"]} == {"input", "recurrent"}
  for matrix in row["matrices"]:
    assert matrix["structure_norm"] > 0 and matrix["doping_norm"] > 0
    assert 0 < matrix["doping_density"] < 1  # annealed to its target


def test_without_doping_restores_s_and_matches_when_s_is_zero(runs):
  corpus = training.load_corpus(None, TINY)
  model = dkp.load_model(str(runs / "dkp-run" / "model.keras"))
  before = [v.numpy() for v in _dopings(model)]
  doping_share.perplexity_without_doping(model, corpus.valid, 8, 8)
  for variable, values in zip(_dopings(model), before):
    np.testing.assert_array_equal(variable.numpy(), values)
  for variable in _dopings(model):
    variable.assign(np.zeros(variable.shape, np.float32))
  with_zero_s = training.evaluate_perplexity(model, corpus.valid, 8, 8)
  assert doping_share.perplexity_without_doping(model, corpus.valid, 8, 8) == pytest.approx(
      with_zero_s, rel=1e-6)


def test_bad_input_is_named(runs, tmp_path, capsys):
  out = str(tmp_path / "share.json")
  assert doping_share.main(["--runs", str(tmp_path / "nowhere"), "--out", out]) == 2
  assert "no such runs directory" in capsys.readouterr().err
  assert doping_share.main(["--runs", str(runs), "--models", "dense-run", "--out", out]) == 2
  assert "not doped" in capsys.readouterr().err
  assert doping_share.main(["--runs", str(runs), "--models", "missing", "--out", out]) == 2
  assert "no finished model" in capsys.readouterr().err
  dense = dkp.load_model(str(runs / "dense-run" / "model.keras"))
  with pytest.raises(ValueError, match="no doped layer"):
    doping_share.perplexity_without_doping(dense, np.arange(100) % 10, 8, 8)
