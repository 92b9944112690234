"""`pipelines.train --keras 3`: the same language model built and trained with the Keras 3 layers
(one training loop, `pipelines.frontends` the seam), converted and verified; `pipelines.compress`
and `dkp.load_model` on Keras 3 files; the refusals."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import dkp_keras as dkp
from dkp_keras import keras3 as k3
from dkp_keras import loading
from pipelines import compress
from pipelines import conversion
from pipelines import data
from pipelines import frontends
from pipelines import models
from pipelines import presets
from pipelines import train
from pipelines import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = presets.Recipe("tiny", layers=1, units=16, embedding=8, num_steps=8, batch_size=8,
                      epochs=3, optimizer="adam", learning_rate=3e-3, dropout=0.2,
                      corpus_tokens=6000, anneal_updates=4)
KERAS3_METHODS = ["dense", "small-dense", "kp", "lmf", "hmd", "doped-lmf", "doped-hmd", "dkp"]


@pytest.fixture(name="tiny")
def _tiny(monkeypatch):
  monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
  return TINY


def keras3_environment(backend):
  """A Keras 3 user's environment: TF_USE_LEGACY_KERAS unset (pytest's process sets it)."""
  environment = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  environment.update(KERAS_BACKEND=backend, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
                     JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
  return environment


# The CLI in a Keras 3 user's process, then a kill after the first epoch and --resume.
CLI = r"""
import json, os, sys
import keras
from pipelines import presets, train
presets.PRESETS["tiny"] = presets.Recipe(**json.loads(sys.argv[1]))
out = sys.argv[2]
code = train.main(["--keras", "3", "--preset", "tiny", "--method", "dkp", "--compression", "4",
                   "--out", out, "--quiet"])

class Kill(keras.callbacks.Callback):
  def on_epoch_end(self, epoch, logs=None):
    if epoch == 0:
      raise KeyboardInterrupt

from pipelines import training
try:
  training.train_run(out + "-killed", "tiny", method="dkp", compression=4.0, verbose=0,
                     keras="3", callbacks=[Kill()])
except KeyboardInterrupt:
  pass
resumed = training.train_run(out + "-killed", "tiny", method="dkp", compression=4.0, verbose=0,
                             keras="3", resume=True)
print(json.dumps({"code": code, "backend": keras.backend.backend(),
                  "tf_keras": "tf_keras" in sys.modules,
                  "tfmot": "tensorflow_model_optimization" in sys.modules,
                  "legacy": os.environ.get("TF_USE_LEGACY_KERAS"),
                  "resumed_epochs": len(resumed["history"]["loss"]),
                  "resumed_meets_target": resumed["meets_target"],
                  "resumed_sparsity": resumed["history"]["sparsity/lstm_0"],
                  "resumed_loss": resumed["history"]["loss"]}))
"""


def run_cli(backend, out):
  recipe = TINY.to_dict()
  result = subprocess.run([sys.executable, "-c", CLI, json.dumps(recipe), str(out)],
                          env=keras3_environment(backend), cwd=ROOT, capture_output=True,
                          text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_train_keras3_trains_reports_and_converts(backend, tmp_path, tiny):
  if importlib.util.find_spec(backend) is None:
    pytest.skip(f"{backend} is not installed: `pip install -e .[test]` installs it")
  out = tmp_path / "run"
  result, outcome = run_cli(backend, out)
  assert outcome["code"] == 0 and outcome["backend"] == backend
  # The Keras 3 path imports neither tf_keras nor tfmot and leaves Keras 3 the process' Keras.
  assert not outcome["tf_keras"] and not outcome["tfmot"] and outcome["legacy"] is None
  assert f"Keras 3 on {backend}" in result.stdout and "run directory" in result.stdout
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["keras"] == {"version": "3", "backend": backend}
  assert metrics["meets_target"] and metrics["target_warning"] is None
  assert metrics["lstm_compression"] >= 4.0 * 0.99
  corpus = training.load_corpus(None, TINY)
  # Learned something: better than a uniform guess over the vocabulary.
  assert metrics["test_perplexity"] < 0.5 * corpus.vocab_size
  history = metrics["history"]
  assert {"loss", "perplexity", "val_perplexity", "sparsity/lstm_0", "cmr_rate"} <= set(history)
  assert history["sparsity/lstm_0"][-1] > 0.5 and history["cmr_rate"][0] > 0
  assert json.loads((out / "run.json").read_text())["settings"]["keras"] == "3"
  assert (out / "logs").is_dir() and not (out / "backup").exists()
  # A killed run resumes to the end (the masks rebuilt from S's magnitudes).
  assert outcome["resumed_epochs"] == TINY.epochs and outcome["resumed_meets_target"]
  # ... where it was: the optimizer's step count came back, so annealing did not start over.
  assert outcome["resumed_sparsity"] == sorted(outcome["resumed_sparsity"])
  # ... drawing the dropout and CMR masks the uninterrupted run drew (`Reseed`) and masking S
  # from its first batch on as that run did: the same losses.
  np.testing.assert_allclose(outcome["resumed_loss"], history["loss"], rtol=1e-4)

  # On jax stateful RNNs keep no state between batches: every window starts from zeros.
  assert metrics["carry_state"] == (backend != "jax")
  # The saved file is a Keras 3 file: its perplexity as in metrics (from zero states in every
  # window where the run carried none), and it converts verified.
  model = keras.saving.load_model(out / "model.keras", compile=False)
  assert isinstance(model, keras.Model)
  if metrics["carry_state"]:
    perplexity = training.evaluate_perplexity(model, corpus.test, TINY.batch_size,
                                              TINY.num_steps)
  else:
    x, y = data.batchify_arrays(corpus.test, TINY.batch_size, TINY.num_steps)
    twin = models.stateless_twin(model)
    twin.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    perplexity = float(np.exp(twin.evaluate(x, y, batch_size=TINY.batch_size, verbose=0)))
  assert perplexity == pytest.approx(metrics["test_perplexity"], rel=1e-4)
  report = k3.compression_report(model)
  assert bool(report["meets_target"].all())
  converted = conversion.convert(out / "model.keras", tmp_path / "lm.tflite", mode="step",
                                 verify_samples=2)
  verification = converted.report["verification"]
  assert verification["against"] == "keras3"
  assert verification["max_error"] <= verification["tolerance"]


@pytest.mark.parametrize("method", KERAS3_METHODS)
def test_the_keras3_lm_has_the_tf_keras_lms_layers_and_weights(method):
  # One model builder: the same layers, names and weight shapes on both Kerases, so weights move
  # across as a list.
  recipe = TINY.replace(compress_output=True)
  compression = 1.0 if method == "dense" else 4.0
  legacy = models.build_lm(30, recipe, method, compression, stateful=False)
  ours = models.build_lm(30, recipe, method, compression, stateful=False,
                         front=frontends.get_frontend("3"))
  assert isinstance(ours, keras.Model) and frontends.of_model(ours).version == "3"
  assert frontends.of_model(legacy).version == "2"
  assert [layer.name for layer in ours.layers] == [layer.name for layer in legacy.layers]
  assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in legacy.weights]
  ours.set_weights(legacy.get_weights())
  x = np.random.default_rng(0).integers(0, 30, size=(2, recipe.num_steps))
  np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x)), legacy(x).numpy(),
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["prune", "int8", "int4"])
def test_methods_keras3_cannot_train_are_refused_before_any_work(method, tmp_path, tiny):
  out = tmp_path / "run"
  with pytest.raises(ValueError, match=rf"method {method} is not available with --keras 3: .*"
                                       r"choose one of \['dense', 'small-dense', 'kp', 'lmf', "
                                       r"'hmd', 'doped-lmf', 'doped-hmd', 'dkp'\]"):
    training.train_run(str(out), "tiny", method=method, keras="3", verbose=0)
  assert not out.exists()


def test_the_cli_refuses_keras3_with_a_strategy_and_an_unknown_keras(tmp_path, tiny, capsys):
  out = tmp_path / "run"
  assert train.main(["--keras", "3", "--preset", "tiny", "--strategy", "mirrored",
                     "--out", str(out)]) == 2
  assert "--keras 3 trains on one device" in capsys.readouterr().err
  assert not out.exists()
  with pytest.raises(SystemExit):
    train.parse_args(["--keras", "4"])
  assert "invalid choice: '4'" in capsys.readouterr().err


@pytest.fixture(name="keras3_dense", scope="module")
def _keras3_dense(tmp_path_factory):
  presets.PRESETS["tiny"] = TINY
  out = tmp_path_factory.mktemp("k3dense") / "run"
  metrics = training.train_run(str(out), "tiny", method="dense", compression=1.0, verbose=0,
                               keras="3")
  yield out / "model.keras", metrics
  del presets.PRESETS["tiny"]


def test_compress_takes_a_keras3_file_as_its_tf_keras_twin(keras3_dense, tmp_path, capsys):
  path, metrics = keras3_dense
  out = tmp_path / "compressed.keras"
  code = compress.main([str(path), "--compression", "4", "--out", str(out), "--preset", "tiny",
                        "--finetune-epochs", "1", "--min-params", "0", "--quiet"])
  captured = capsys.readouterr()
  assert code == 0, captured.err
  assert "read as its tf_keras twin" in captured.out
  report = json.loads((tmp_path / "compressed.json").read_text())
  assert report["input_keras"] == "3"
  # The twin computes what the Keras 3 model computed: the same dense perplexity.
  assert report["perplexity"]["dense"]["test"] == pytest.approx(metrics["test_perplexity"],
                                                                rel=1e-4)
  compressed = dkp.load_model(out)
  assert any(isinstance(layer, dkp.DKPLSTM) for layer in compressed.layers)
  assert all(row["meets_target"] for row in report["layers"])


def test_load_model_says_how_to_load_a_keras3_dkp_file(keras3_dense):
  path, _ = keras3_dense
  with pytest.raises(loading.ModelFileError, match=r"saved by Keras 3.*Load it with Keras 3 "
                                                       r"\(import dkp_keras.keras3, which "
                                                       r"registers"):
    dkp.load_model(path)


def test_deployed_perplexity_of_a_keras3_run_is_its_keras_perplexity(tmp_path, tiny):
  # --deployed-perplexity converts the Keras 3 model (as its tf_keras twin) after training.
  metrics = training.train_run(str(tmp_path / "run"), "tiny", method="dkp", compression=4.0,
                               epochs=1, verbose=0, keras="3", deployed_exports=("float32",))
  assert metrics["carry_state"]  # tensorflow backend: the step-mode file carries states too
  assert metrics["deployed_test_perplexity"]["float32"] == pytest.approx(
      metrics["test_perplexity"], rel=1e-4)
