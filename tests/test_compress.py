"""`pipelines.compress`: projection onto DKP, fine-tuning, the report, bad input."""

import json

import numpy as np
import pytest
import tf_keras as keras

import dkp_keras as dkp

from dkp_keras import kronecker
from pipelines import compress
from pipelines import post_training
from pipelines import presets
from pipelines import training

TINY = presets.Recipe("tiny", layers=1, units=16, embedding=8, num_steps=8, batch_size=8,
                      epochs=2, optimizer="adam", learning_rate=3e-3, corpus_tokens=6000)


@pytest.fixture(name="dense_path", scope="module")
def _dense_path(tmp_path_factory):
  presets.PRESETS["tiny"] = TINY
  out = tmp_path_factory.mktemp("dense") / "run"
  training.train_run(str(out), "tiny", method="dense", verbose=0)
  yield out / "model.keras"
  del presets.PRESETS["tiny"]


def test_top_blocks_keeps_the_largest_blocks():
  residual = np.zeros((8, 2))
  residual[0:4, 0] = 5.0  # block (0, 0): mean 5
  residual[4:8, 1] = [1, -1, 1, -1]  # block (1, 1): mean |.| 1
  residual[4, 0] = -3.0  # block (1, 0): mean 0.75
  kept = post_training.top_blocks(residual, keep_fraction=0.5, block_size=(4, 1))
  np.testing.assert_array_equal(kept[:, 0][:4], 5.0)
  np.testing.assert_array_equal(kept[4:, 1], [1, -1, 1, -1])
  assert kept[4, 0] == 0 and np.count_nonzero(kept) == 8


def test_projection_is_the_nearest_kronecker_plus_residual(dense_path):
  dense = dkp.load_model(str(dense_path))
  full = post_training.project_model(dense, compression=1.5, min_params=0)  # S keeps most of it
  cell, old = full.get_layer("lstm_0").cell, dense.get_layer("lstm_0").cell
  matrix = cell.doped_matrices["recurrent"]
  a, b = kronecker.nearest_kronecker(old.recurrent_kernel.numpy().T, matrix.structure.shape)
  np.testing.assert_allclose(np.kron(matrix.weights["kron_a"].numpy(),
                                     matrix.weights["kron_b"].numpy()), np.kron(a, b),
                             rtol=1e-4, atol=1e-6)
  kernel, recurrent, bias = cell.dense_kernels()
  error = np.linalg.norm(recurrent - old.recurrent_kernel.numpy())
  kp_only = np.linalg.norm(np.kron(a, b)[:recurrent.shape[1], :recurrent.shape[0]].T -
                           old.recurrent_kernel.numpy())
  assert error < 0.8 * kp_only  # S took the largest part of the residual
  np.testing.assert_array_equal(bias, old.bias.numpy())


def test_projection_takes_scaled_factor_gradients_when_asked(dense_path):
  dense = dkp.load_model(str(dense_path))
  for asked in (False, True):
    projected = post_training.project_model(dense, compression=2, min_params=0,
                                       precondition_factors=asked)
    assert projected.get_layer("lstm_0").cell.precondition_factors is asked


def test_compress_reports_before_after_and_saves(dense_path, tmp_path):
  out = tmp_path / "small.keras"
  presets.PRESETS["tiny"] = TINY
  report = post_training.compress(str(dense_path), str(out), compression=4, finetune_epochs=1,
                             preset="tiny", min_params=0, verbose=0)
  stages = report["perplexity"]
  assert set(stages) == {"dense", "projected", "finetuned"}
  assert all(v["test"] > 1 for v in stages.values())
  layers = {row["layer"]: row for row in report["layers"]}
  # Every LSTM and Dense layer, the output layer included, reaches the factor.
  assert layers["lstm_0"]["compression"] == pytest.approx(4, rel=0.1)
  output = keras.models.load_model(out).layers[-1]
  assert type(output).__name__ == "DopedDense"
  assert layers[output.name]["compression"] == pytest.approx(4, rel=0.1)
  assert all(row["meets_target"] for row in report["layers"])
  assert report["model_compression"] > 2 and report["model_byte_compression"] > 2
  assert json.loads((tmp_path / "small.json").read_text())["compression"] == 4
  assert keras.models.load_model(out).get_layer("lstm_0").cell.compression == 4
  with pytest.raises(ValueError, match="exists"):
    post_training.compress(str(dense_path), str(out), preset="tiny")


def test_layers_to_compress_default_by_size_or_by_name(dense_path):
  dense = dkp.load_model(str(dense_path))
  names = [layer.name for layer in dense.layers]
  assert any("embedding" in name for name in names), names
  output = dense.layers[-1]
  assert post_training.choose_layers(dense, min_params=0) == ["lstm_0", output.name]
  assert post_training.choose_layers(dense, min_params=output.count_params()) == [output.name]
  assert post_training.choose_layers(dense, ["lstm_0"]) == ["lstm_0"]
  with pytest.raises(ValueError, match="no layer 'nope'.*lstm_0"):
    post_training.choose_layers(dense, ["nope"])
  with pytest.raises(ValueError, match="is a Embedding"):
    post_training.choose_layers(dense, [next(n for n in names if "embedding" in n)])
  with pytest.raises(ValueError, match="--layers"):
    post_training.choose_layers(dense, min_params=10 ** 9)
  projected = post_training.project_model(dense, 2, layers=["lstm_0"])
  assert type(projected.layers[-1]).__name__ == "Dense"
  with pytest.raises(ValueError, match=f"layer '{output.name}'.*--layers"):
    post_training.project_model(dense, 10 ** 6, layers=[output.name])


def test_bad_inputs(dense_path, tmp_path, capsys):
  not_a_model = tmp_path / "notes.keras"
  not_a_model.write_text("hello")
  assert compress.main([str(not_a_model), "--out", str(tmp_path / "x.keras")]) == 2
  assert "not a readable Keras model" in capsys.readouterr().err
  assert not_a_model.read_text() == "hello"
  assert compress.main([str(tmp_path / "missing.keras"), "--out", str(tmp_path / "x.keras")]) == 2
  assert "no such file or directory" in capsys.readouterr().err
  # The model knows the embedded corpus' 256 words; this corpus has 4.
  ptb = tmp_path / "ptb"
  ptb.mkdir()
  for split in ("train", "valid", "test"):
    (ptb / f"ptb.{split}.txt").write_text("a b c\nb c a\n")
  assert compress.main([str(dense_path), "--out", str(tmp_path / "x.keras"),
                        "--data", str(ptb)]) == 2
  assert "vocabulary mismatch" in capsys.readouterr().err
  assert not (tmp_path / "x.keras").exists()


def test_outputs_are_checked_before_any_work(dense_path, tmp_path):
  # The report beside --out would replace a user's file of that name.
  (tmp_path / "mine.json").write_text("user data")
  with pytest.raises(ValueError, match="exists; pass --force"):
    post_training.compress(str(dense_path), str(tmp_path / "mine.keras"), preset="tiny")
  assert (tmp_path / "mine.json").read_text() == "user data"
  with pytest.raises(ValueError, match="never replaces an input"):
    post_training.compress(str(dense_path), str(dense_path), preset="tiny", force=True)
  with pytest.raises(ValueError, match="nodir"):
    post_training.compress(str(dense_path), str(tmp_path / "nodir" / "x.keras"), preset="tiny")
  assert not (tmp_path / "nodir").exists() and not (tmp_path / "mine.keras").exists()
