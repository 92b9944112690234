"""The accuracy runner's bookkeeping on a tiny corpus (no accuracy thresholds)."""

import json
import shutil

import pandas as pd
import pytest

from benchmarks import accuracy
from pipelines import presets
from pipelines import training

TINY = presets.Recipe("tiny", layers=1, units=16, embedding=8, num_steps=8, batch_size=8,
                      epochs=1, optimizer="adam", learning_rate=3e-3, corpus_tokens=4000)


@pytest.fixture(name="tiny")
def _tiny(monkeypatch):
  monkeypatch.setitem(presets.PRESETS, "tiny", TINY)


def test_plan_rows():
  rows = accuracy.plan_rows(["dense", "int8", "dkp"], [10, 25], [0, 1])
  assert rows == [("dense", 1.0, 0), ("dense", 1.0, 1), ("int8", 4.0, 0), ("int8", 4.0, 1),
                  ("dkp", 10.0, 0), ("dkp", 10.0, 1), ("dkp", 25.0, 0), ("dkp", 25.0, 1)]
  with pytest.raises(ValueError, match="unknown method"):
    accuracy.plan_rows(["dkp", "magic"], [10], [0])


def test_runner_csv_resume_and_render(tiny, tmp_path, monkeypatch):
  out = str(tmp_path / "results.csv")
  options = dict(preset="tiny", runs_dir=str(tmp_path / "runs"), verbose=0)
  frame = accuracy.run(out, ["dense", "lmf", "prune", "dkp"], [4], **options)
  assert list(pd.read_csv(out).columns) == accuracy.COLUMNS
  assert frame["method"].tolist() == ["dense", "lmf", "prune", "dkp"]
  assert (frame["epochs"] == 1).all() and (frame["preset"] == "tiny").all()
  assert frame["commit"].str.len().min() >= 7
  # Equal compression: every compressed method is counted against the same dense stack.
  measured = frame.set_index("method")["lstm_compression"]
  assert measured["dense"] == 1.0
  for method in ("prune", "dkp"):
    assert measured[method] == pytest.approx(4.0, rel=0.15), method
  assert 4.0 <= measured["lmf"] < 6.0  # whole ranks: at 16 units a rank is 1/6 of the budget
  text = (tmp_path / "results.md").read_text()
  # The papers' PTB perplexities are shown beside PTB rows only.
  assert "| dkp | 4x |" in text and "paper" not in text
  assert (tmp_path / "results.png").stat().st_size > 0

  with pytest.raises(ValueError, match="--resume"):
    accuracy.run(out, ["dense"], [4], **options)
  calls = []
  real = training.train_run
  monkeypatch.setattr(training, "train_run", lambda *a, **k: calls.append(a) or real(*a, **k))
  frame = accuracy.run(out, ["dense", "dkp", "kp"], [4], resume=True, **options)
  assert [c[3].name for c in calls] == ["kp"]  # finished rows skipped
  assert len(frame) == 5 and len(pd.read_csv(out)) == 5


def test_a_named_recipe_trains_its_base_method_with_its_options(tiny, tmp_path, monkeypatch):
  calls = []

  def stop(*args, **kwargs):
    calls.append((args, kwargs))
    raise OSError("stop here")

  monkeypatch.setattr(training, "train_run", stop)
  with pytest.raises(OSError, match="stop here"):
    accuracy.run(str(tmp_path / "r.csv"), ["dkp-1x1"], [4], preset="tiny",
                 runs_dir=str(tmp_path / "runs"), verbose=0)
  (args, _), = calls
  method = args[3]
  assert method.name == "dkp-1x1" and method.structure == "kronecker" and method.doped
  assert dict(method.layer_options) == {"block_size": (1, 1), "cmr_granularity": "matrix"}
  assert dict(method.recipe_options) == {"cmr": 0.5}
  assert args[0].endswith("dkp-1x1-4x-seed0-1ep")  # its rows' run directory, as before


def test_wall_time_counts_killed_legs_and_finished_runs(tiny, tmp_path, monkeypatch):
  options = dict(preset="tiny", runs_dir=str(tmp_path / "runs"), verbose=0)
  real = training.train_run

  def resumed_after_a_kill(*args, **kwargs):
    return {**real(*args, **kwargs), "earlier_train_seconds": 1000.0}

  monkeypatch.setattr(training, "train_run", resumed_after_a_kill)
  first = accuracy.run(str(tmp_path / "a.csv"), ["dense"], [4], **options)
  assert 1000.0 < first["wall_s"][0] < 1000.0 + 600
  # A run that finished before its row was written reports its training time.
  monkeypatch.setattr(training, "train_run", real)
  again = accuracy.run(str(tmp_path / "b.csv"), ["dense"], [4], **options)
  trained = json.loads((tmp_path / "runs" / "dense-1x-seed0-1ep" / "metrics.json").read_text())
  assert again["wall_s"][0] == pytest.approx(trained["train_seconds"], abs=0.1)


def test_rows_record_the_recipe_and_a_changed_preset_is_refused(tiny, tmp_path, monkeypatch):
  out = tmp_path / "r.csv"
  options = dict(preset="tiny", runs_dir=str(tmp_path / "runs"), verbose=0)
  frame = accuracy.run(str(out), ["dense"], [4], **options)
  assert frame["recipe"].tolist() == [accuracy.recipe_id(TINY)]
  assert accuracy.recipe_id(TINY.replace(epochs=2)) != accuracy.recipe_id(TINY)
  # The preset changed since: resuming would mix two experiments in one table.
  monkeypatch.setitem(presets.PRESETS, "tiny", TINY.replace(dropout=0.3))
  before = out.read_bytes()
  with pytest.raises(ValueError, match="another recipe .* write to a new --out"):
    accuracy.run(str(out), ["dense", "dkp"], [4], resume=True, **options)
  assert out.read_bytes() == before


def test_results_without_a_recipe_column_still_resume(tiny, tmp_path, monkeypatch):
  out = tmp_path / "old.csv"
  options = dict(preset="tiny", runs_dir=str(tmp_path / "runs"), verbose=0)
  accuracy.run(str(out), ["dense"], [4], **options)
  pd.read_csv(out).drop(columns=["recipe"]).to_csv(out, index=False)  # as written before
  assert accuracy.read_results(str(out))["recipe"].tolist() == [accuracy.UNRECORDED]
  calls = []
  monkeypatch.setattr(training, "train_run", lambda *a, **k: calls.append(a))
  frame = accuracy.run(str(out), ["dense"], [4], resume=True, **options)
  assert not calls and len(frame) == 1


def test_check_recipe_compares_rows_of_the_same_preset_and_budget():
  frame = pd.DataFrame({"preset": ["p", "p", "p", "q"], "epochs": [1, 2, 1, 1],
                        "recipe": ["a", "b", accuracy.UNRECORDED, "c"]})
  accuracy.check_recipe(frame, "x.csv", "p", 1, "a")  # unrecorded rows are not evidence
  accuracy.check_recipe(frame, "x.csv", "p", 3, "z")  # a new budget
  accuracy.check_recipe(frame, "x.csv", "r", 1, "z")  # a new preset
  with pytest.raises(ValueError, match="x.csv holds p rows at 2 epochs .*another recipe \\(b;"):
    accuracy.check_recipe(frame, "x.csv", "p", 2, "a")


def test_bad_results_file(tmp_path, capsys):
  bad = tmp_path / "notes.csv"
  bad.write_text("a,b\n1,2\n")
  assert accuracy.main(["--out", str(bad), "--resume", "--methods", "dense"]) == 2
  assert "lacks the columns" in capsys.readouterr().err
  assert bad.read_text() == "a,b\n1,2\n"


def test_quantized_rows_quantize_the_dense_rows_model(tiny, tmp_path, monkeypatch):
  out = str(tmp_path / "q.csv")
  fits = []
  real = training.fit_lm
  monkeypatch.setattr(training, "fit_lm", lambda *a, **k: fits.append(a[2]) or real(*a, **k))
  frame = accuracy.run(out, ["dense", "int8", "int4"], [4], preset="tiny",
                       runs_dir=str(tmp_path / "runs"), verbose=0)
  assert [getattr(m, "name", m) for m in fits] == ["dense"]  # no second dense training
  rows = frame.set_index("method")
  assert rows.loc["int8", "compression"] == 4.0 and rows.loc["int4", "compression"] == 8.0
  # Per-channel scales and biases stay float32: on 16 units they weigh a lot.
  assert 1.0 < rows.loc["int8", "lstm_compression"] < rows.loc["int4", "lstm_compression"] < 8.0
  # The quantized models are the dense one rounded: close to it, not identical.
  dense = rows.loc["dense", "valid_ppl"]
  assert rows.loc["int8", "valid_ppl"] != dense
  assert abs(rows.loc["int8", "valid_ppl"] / dense - 1) < 0.02
  # Run directories are scratch: without the dense model it is trained again, once.
  shutil.rmtree(tmp_path / "runs" / "dense-1x-seed0-1ep")
  fits.clear()
  accuracy.run(str(tmp_path / "q2.csv"), ["int8", "int4"], [4], preset="tiny",
               runs_dir=str(tmp_path / "runs"), verbose=0)
  assert [getattr(m, "name", m) for m in fits] == ["dense"]


def test_render_shows_the_mean_and_range_over_seeds_and_pairs_quantized_rows(tmp_path):
  rows = [{"method": m, "compression": c, "seed": seed, "valid_ppl": ppl + 5, "test_ppl": ppl,
           "params": 1000, "model_bytes": 1, "lstm_compression": c, "epochs": 6, "preset": "p",
           "recipe": "r", "commit": "abc", "wall_s": 60.0}
          for m, c, seed, ppl in (("dense", 1.0, 0, 100.0), ("dkp", 25.0, 0, 104.0),
                                  ("dkp", 25.0, 1, 106.0), ("dense", 1.0, 1, 108.0),
                                  ("int8", 4.0, 0, 101.0))]
  path = tmp_path / "t.csv"
  # Rows from before the deployed and corpus columns: the CSV lacks them and still renders.
  pd.DataFrame(rows).to_csv(path, index=False)
  accuracy.render(str(path))
  assert ("| dkp | 25x | 25.0x | 1.0k | 0,1 | 110.00 | 105.00 (104.00–106.00) | +1.0% | "
          "83.24 (+1.5%) |  |  | 1.0 |") in (tmp_path / "t.md").read_text()
  rows[1].update(tflite_ppl=104.01, tflite_int8_ppl=104.5)  # dkp seed 0 measured its files
  frame = pd.DataFrame(rows).assign(corpus="ptb")
  frame.reindex(columns=accuracy.COLUMNS).to_csv(path, index=False)
  accuracy.render(str(path))
  text = (tmp_path / "t.md").read_text()
  assert ("| dkp | 25x | 25.0x | 1.0k | 0,1 | 110.00 | 105.00 (104.00–106.00) | +1.0% | "
          "83.24 (+1.5%) | 104.01 (1 of 2 seeds) | 104.50 (1 of 2 seeds) | 1.0 |") in text
  assert "| dense | 1x | 1.0x | 1.0k | 0,1 | 109.00 | 104.00 (100.00–108.00) |  |" in text
  # int8 quantized dense seed 0's model: compared with that model, not the mean of all seeds.
  assert "| int8 | 4x | 4.0x (bytes) | 1.0k | 0 | 106.00 | 101.00 | +1.0% |" in text
  assert text.startswith("# Accuracy at equal compression: p on ptb")
  assert "Source: `t.csv`" in text and "Commits: abc." in text
  # Another corpus: the papers' PTB numbers are not shown beside it.
  frame.assign(corpus="python-docs").reindex(columns=accuracy.COLUMNS).to_csv(path, index=False)
  accuracy.render(str(path))
  text = (tmp_path / "t.md").read_text()
  assert text.startswith("# Accuracy at equal compression: p on python-docs")
  assert ("| dkp | 25x | 25.0x | 1.0k | 0,1 | 110.00 | 105.00 (104.00–106.00) | +1.0% | "
          "104.01 (1 of 2 seeds) |") in text
  assert "paper" not in text


def test_target_lines():
  budget = pd.DataFrame({
      "method": ["dense", "dkp-cmr-matrix-0.5", "prune", "lmf", "dkp", "dkp", "kp"],
      "compression": [1.0, 25.0, 25.0, 25.0, 50.0, 25.0, 25.0],
      "test_ppl": [100.0, 96.0, 110.0, 105.0, 104.0, 100.5, 99.0]})
  lines = accuracy.target_lines(budget)
  assert lines[3] == ("| DKP method | 25x vs dense (≤ +1.0%) | 25x vs prune 25x (≤ -8.0%) | "
                      "25x vs lmf 25x (≤ -8.0%) | 50x vs dense (≤ +3.0%) |")
  # The library's default first; only doped-Kronecker methods.
  assert lines[5:] == [
      "| dkp | +0.5% met | -8.6% met | -4.3% **missed** | +4.0% **missed** |",
      "| dkp-cmr-matrix-0.5 | -4.0% met | -12.7% met | -8.6% met |  |"]
  # No target whose two rows are both there: no table.
  assert accuracy.target_lines(budget[budget["method"] != "dense"].iloc[:1]) == []


def _fake_metrics(test_ppl):
  return {"valid_perplexity": test_ppl, "test_perplexity": test_ppl, "lstm_params": 396,
          "model_bytes": 1000, "lstm_compression": 4.0, "train_seconds": 1.0}


def test_keras3_rows_sit_beside_the_tf_keras_rows(tiny, tmp_path, monkeypatch):
  monkeypatch.setenv("KERAS_BACKEND", "jax")
  calls = []

  def fake_train_run(out, *args, **kwargs):
    calls.append((out, kwargs["keras"]))
    return _fake_metrics({"2": 50.0, "3": 49.0}[kwargs["keras"]] + kwargs["seed"])

  monkeypatch.setattr(training, "train_run", fake_train_run)
  out = str(tmp_path / "r.csv")
  options = dict(preset="tiny", runs_dir=str(tmp_path / "runs"), verbose=0, seeds=(0, 1))
  accuracy.run(out, ["dkp"], [4], **options)
  frame = accuracy.run(out, ["dkp"], [4], resume=True, keras="3", **options)
  # The same method, factor and seed is another row on Keras 3, in its own run directory.
  assert frame["frontend"].tolist() == ["tf_keras"] * 2 + ["keras3-jax"] * 2
  assert [call[1] for call in calls] == ["2", "2", "3", "3"]
  assert calls[2][0].endswith("dkp-4x-seed0-1ep-keras3-jax")
  text = (tmp_path / "r.md").read_text()
  assert "| dkp [keras3-jax] | 4x |" in text
  # Mean 49.5 against tf_keras' 50.0 (50.0-51.0): within the spread.
  assert "dkp 4x on keras3-jax (2 seeds) vs tf_keras (2 seeds, 1 epochs): test perplexity " \
         "49.50 vs 50.50 (50.00–51.00), -2.0%; within or below the tf_keras seeds' spread: met" \
         in text
  calls.clear()
  accuracy.run(out, ["dkp"], [4], resume=True, keras="3", **options)
  assert not calls  # both Keras 3 rows are done


def test_keras3_refuses_a_method_it_cannot_train_before_any_training(tiny, tmp_path,
                                                                     monkeypatch):
  calls = []
  monkeypatch.setattr(training, "train_run", lambda *a, **k: calls.append(a))
  with pytest.raises(ValueError, match="method prune is not available with --keras 3"):
    accuracy.run(str(tmp_path / "r.csv"), ["dkp", "prune"], [4], preset="tiny",
                 runs_dir=str(tmp_path / "runs"), verbose=0, keras="3")
  assert not calls and not (tmp_path / "r.csv").exists()


def test_rows_from_before_the_frontend_column_are_tf_keras(tmp_path):
  out = tmp_path / "old.csv"
  columns = [c for c in accuracy.COLUMNS if c != "frontend"]
  pd.DataFrame([{c: 1 for c in columns}]).to_csv(out, index=False)
  assert accuracy.read_results(str(out))["frontend"].tolist() == ["tf_keras"]
