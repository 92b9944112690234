"""pipelines.convert on Keras 3 files: the same .tflite (ops, sparse S layouts) as for the
tf_keras model with the same weights, verified against the Keras 3 model itself (also on the
jax backend); unsupported layers refused."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tf_keras
from ai_edge_litert.interpreter import Interpreter

import dkp_keras as dkp
from dkp_keras import keras2_twin
from dkp_keras import keras3 as k3
from dkp_keras.verify import normwise_error
from pipelines import conversion
from pipelines import convert
from tflite_ops import describe
from helpers import run_step_file

VOCAB, STEPS, UNITS = 30, 6, 32
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lm(keras_module=keras, front=k3, batch=None):
  """A tiny DKP LM; ``keras_module=tf_keras, front=dkp`` builds its tf_keras twin."""
  tokens = keras_module.Input(batch_shape=(batch, STEPS), dtype="int32", name="tokens")
  x = keras_module.layers.Embedding(VOCAB, 16, name="embedding")(tokens)
  x = front.DKPLSTM(UNITS, compression=8, return_sequences=True, stateful=batch is not None,
                    name="lstm")(x)
  outputs = front.DopedDense(VOCAB, compression=6, name="logits")(x)
  return keras_module.Model(tokens, outputs, name="lm")


def annealed_keras3_lm(batch=None):
  """The Keras 3 LM trained a few steps with the Keras 3 annealing, S at its target, finalized."""
  model = lm(batch=batch)
  model.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x = np.random.default_rng(0).integers(0, VOCAB, size=(16, STEPS))
  model.fit(x, np.roll(x, -1, axis=1), batch_size=batch or 4, epochs=2, verbose=0,
            shuffle=False,
            callbacks=[k3.SparsityAnnealing(begin_step=0, end_step=6, frequency=2)])
  return k3.finalize(model)


@pytest.fixture(scope="module")
def keras3_file(tmp_path_factory):
  model = annealed_keras3_lm()
  path = tmp_path_factory.mktemp("keras3") / "lm.keras"
  model.save(path)
  return path, model


def tf_keras_twin_by_hand(model):
  """The tf_keras LM holding the Keras 3 model's weights, built without keras2_twin."""
  twin = lm(tf_keras, dkp)
  twin.set_weights([keras.ops.convert_to_numpy(w) for w in model.weights])
  return twin


def sparse_layouts(path):
  """Each sparse weight's shape, storage format and block layout, in file order."""
  return [(t.shape, t.dtype, t.sparsity.traversal_order, t.sparsity.block_map,
           t.sparsity.block_shape, t.sparsity.dim_formats, t.sparsity.num_blocks)
          for t in describe.inspect_model(path).sparse_tensors]


def tflite_outputs(path, x, mode):
  """The .tflite file's outputs for token ids ``x`` (one sequence, or step by step)."""
  if mode == "sequence":
    return Interpreter(model_path=str(path)).get_signature_runner()(inputs=x)["outputs"]
  return run_step_file(path, x, {"lstm_h": (1, UNITS), "lstm_c": (1, UNITS)})


@pytest.mark.parametrize("mode", ["sequence", "step"])
def test_cli_converts_a_keras3_file_as_its_tf_keras_twin(keras3_file, tmp_path, capsys, mode):
  path, model = keras3_file
  out, report = tmp_path / "k3.tflite", tmp_path / "k3.json"
  code = convert.main([str(path), "--out", str(out), "--mode", mode, "--seq-len", str(STEPS),
                       "--verify", "3", "--report", str(report)])
  captured = capsys.readouterr()
  assert code == 0, captured.err
  assert "against the Keras 3 model" in captured.out
  written = json.loads(report.read_text())
  assert written["verification"]["against"] == "keras3"
  assert written["verification"]["max_error"] <= written["verification"]["tolerance"]
  assert written["sparsity"]["block_kernels"] >= 1
  assert written["sparsity"]["all_block_aligned_stored_fast"]

  legacy_out = tmp_path / "k2.tflite"
  conversion.convert(tf_keras_twin_by_hand(model), legacy_out, mode=mode, seq_len=STEPS,
                     verify_samples=1)
  ours, theirs = describe.inspect_model(str(out)), describe.inspect_model(str(legacy_out))
  assert ours.op_counts == theirs.op_counts
  assert sparse_layouts(str(out)) and sparse_layouts(str(out)) == sparse_layouts(str(legacy_out))

  x = np.random.default_rng(5).integers(0, VOCAB, size=(1, STEPS)).astype(np.int32)
  expected = keras.ops.convert_to_numpy(model(x))
  assert normwise_error(tflite_outputs(out, x, mode), expected) < 1e-4


def test_verification_compares_with_the_keras3_model_not_only_its_twin(
    keras3_file, tmp_path, monkeypatch):
  path, _ = keras3_file
  faithful = keras2_twin.tf_keras_twin

  def unfaithful(model):  # a twin whose output bias drifted: its own .tflite would match it
    twin = faithful(model)
    bias = twin.get_layer("logits").bias
    bias.assign(bias.numpy() + 1.0)
    return twin

  monkeypatch.setattr(keras2_twin, "tf_keras_twin", unfaithful)
  out = tmp_path / "drifted.tflite"
  with pytest.raises(conversion.ConversionError, match="verification failed"):
    conversion.convert(path, out, seq_len=STEPS, verify_samples=2)
  assert not out.exists() and (tmp_path / "drifted.tflite.unverified").exists()


def test_a_stateful_keras3_model_converts_verified_at_any_batch(tmp_path):
  # Trained with a fixed batch of 4, converted for batch 1: verified against the stateless
  # Keras 3 model, each input from zero states.
  model = annealed_keras3_lm(batch=4)
  result = conversion.convert(model, tmp_path / "stateful.tflite", seq_len=STEPS,
                              verify_samples=2)
  verification = result.report["verification"]
  assert verification["against"] == "keras3" and verification["samples"] == 2
  assert verification["max_error"] <= verification["tolerance"]


def test_an_unsupported_keras3_layer_is_refused_by_the_cli(tmp_path, capsys):
  inputs = keras.Input((STEPS, 4))
  x = keras.layers.GRU(8, return_sequences=True, name="gru")(inputs)
  keras.Model(inputs, k3.DopedDense(8, compression=1.5)(x)).save(tmp_path / "gru.keras")
  out = tmp_path / "gru.tflite"
  assert convert.main([str(tmp_path / "gru.keras"), "--out", str(out)]) == 1
  err = capsys.readouterr().err
  assert "layer 'gru' (GRU) is not supported for Keras 3 conversion" in err
  assert not out.exists()


def test_the_cli_verifies_against_keras3_on_the_jax_backend(keras3_file, tmp_path):
  # The file was trained on tensorflow; a jax user's process loads and verifies it with jax.
  if importlib.util.find_spec("jax") is None:
    pytest.skip("jax is not installed: `pip install -e .[test]` installs it")
  path, _ = keras3_file
  out = tmp_path / "jax.tflite"
  script = ("import sys, keras\nfrom pipelines import convert\ncode = convert.main(sys.argv[1:])\n"
            "print('backend', keras.backend.backend())\nsys.exit(code)\n")
  environment = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  environment.update(KERAS_BACKEND="jax", PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
                     JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
  result = subprocess.run([sys.executable, "-c", script, str(path), "--out", str(out),
                           "--mode", "step", "--verify", "2"], env=environment, cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "against the Keras 3 model" in result.stdout and "backend jax" in result.stdout
  assert out.exists()
