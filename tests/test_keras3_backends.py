"""The Keras 3 layers train under the tensorflow, jax and torch backends (subprocesses with
KERAS_BACKEND): a tiny LM's loss falls below the unigram baseline with annealing and CMR, S ends
at its target, the `.keras` file round-trips exactly, and on jax / torch dkp_keras imports no
TensorFlow on the way."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN = r"""
import json, math, os, sys, tempfile
import keras
import numpy as np
from dkp_keras import keras3 as dkp

# Not keras.utils.set_random_seed: it imports TensorFlow to seed it.
VOCAB, STEPS = 16, 6
rng = np.random.default_rng(0)
# Each next token is the current one + 1: learnable, while the unigram distribution is
# uniform (baseline loss log VOCAB).
x = rng.integers(0, VOCAB, size=(256, STEPS))
y = (x + 1) % VOCAB
baseline = float(-np.sum(np.bincount(y.ravel(), minlength=VOCAB) / y.size
                         * np.log(np.bincount(y.ravel(), minlength=VOCAB) / y.size)))
tokens = keras.Input((STEPS,), dtype="int32")
h = keras.layers.Embedding(VOCAB, 16)(tokens)
h = dkp.DKPLSTM(32, compression=2, return_sequences=True, recurrent_dropout=0.1)(h)
h = dkp.DopedDense(32, compression=2, activation="tanh")(h)
logits = dkp.DopedDense(VOCAB, compression=2, structure="lowrank")(h)
model = keras.Model(tokens, logits)
model.compile(keras.optimizers.Adam(2e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit(x, y, batch_size=32, epochs=6, verbose=0,
                    callbacks=[dkp.SparsityAnnealing(begin_step=0, end_step=32, frequency=8),
                               dkp.CoMatrixDropout(0.5)])
model = dkp.finalize(model, on_missed_target="raise")
loss = float(model.evaluate(x, y, verbose=0))
report = dkp.compression_report(model)
# Keras' own saving imports TensorFlow when it is installed: look before saving.
tensorflow_imported = "tensorflow" in sys.modules
path = os.path.join(tempfile.mkdtemp(), "lm.keras")
model.save(path)
loaded = keras.models.load_model(path)
same = all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
           for a, b in zip(model.weights, loaded.weights))
same = same and np.array_equal(model.predict(x[:8], verbose=0), loaded.predict(x[:8], verbose=0))
print(json.dumps({"backend": keras.backend.backend(), "baseline": baseline, "loss": loss,
                  "first_loss": history.history["loss"][0],
                  "meets_target": bool(report["meets_target"].all()), "round_trip": bool(same),
                  "tensorflow": tensorflow_imported}))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_tiny_lm_trains_anneals_and_saves_on_backend(backend):
  # tensorflow: a Keras 3 user's process, TF_USE_LEGACY_KERAS unset (pytest's is legacy).
  if importlib.util.find_spec(backend) is None:
    pytest.skip(f"{backend} is not installed: `pip install -e .[test]` installs it")
  environment = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  environment.update(KERAS_BACKEND=backend, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
                     JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
  result = subprocess.run([sys.executable, "-c", TRAIN], env=environment, capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  outcome = json.loads(result.stdout.strip().splitlines()[-1])
  assert outcome["backend"] == backend
  assert outcome["loss"] < 0.5 * outcome["baseline"], outcome
  assert outcome["meets_target"] and outcome["round_trip"], outcome
  if backend != "tensorflow":
    assert not outcome["tensorflow"], f"building and training on {backend} imported TensorFlow"
