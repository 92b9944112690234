"""Language-model building and training shared by the pipelines.

`build_lm` makes the dense baseline or its DKP twin (same shapes), `train_lm`
trains either (the DKP one with sparsity annealing and co-matrix dropout over
all but the last epoch) and returns the finalized model with its perplexities.
This is the seed of ``python -m pipelines.train``: presets, resume and PTB
recipes are still to come (issue 5).
"""

from __future__ import annotations

import os
import time

import numpy as np

import dkp_keras as dkp
from pipelines import data
from tflite_ops import files

KINDS = ("dense", "dkp")


def build_lm(vocab_size, kind="dkp", units=128, embedding=64, compression=10.0, num_steps=20):
  """Embedding -> LSTM -> Dense, or Embedding -> DKPLSTM -> DopedDense (output at c/2)."""
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  if kind not in KINDS:
    raise ValueError(f"unknown model kind {kind!r}; choose one of {KINDS}")
  inputs = keras.Input((num_steps,), dtype="int32")
  x = keras.layers.Embedding(vocab_size, embedding)(inputs)
  if kind == "dense":
    x = keras.layers.LSTM(units, return_sequences=True)(x)
    outputs = keras.layers.Dense(vocab_size)(x)
  else:
    x = dkp.DKPLSTM(units, compression=compression, return_sequences=True)(x)
    # The output layer is smaller than the LSTM's matrices: compress it less.
    outputs = dkp.DopedDense(vocab_size, compression=max(1.0, compression / 2))(x)
  return keras.Model(inputs, outputs, name=f"{kind}_lm")


def perplexity(model, x, y, batch_size):
  """exp(mean cross-entropy per token) over every window (<eos> tokens included)."""
  return float(np.exp(model.evaluate(x, y, batch_size=batch_size, verbose=0)))


def train_lm(model, corpus, epochs=4, batch=32, steps=20, cmr=0.5, learning_rate=3e-3,
             verbose=2):
  """Trains ``model`` on ``corpus``; DKP models anneal S and use CMR. Returns a dict."""
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  if epochs < 2:
    raise ValueError(f"epochs must be >= 2 (annealing takes all but the last), got {epochs}")
  x, y = data.batchify_arrays(corpus.train, batch, steps)
  steps_per_epoch = len(x) // batch
  doped = bool(dkp.doped_matrix.find_doped_owners(model))
  callbacks = []
  if doped:
    model = dkp.prepare_for_annealing(model, begin_step=0,
                                      end_step=steps_per_epoch * (epochs - 1),
                                      frequency=max(1, steps_per_epoch // 10))
    callbacks = [dkp.SparsityAnnealing(), dkp.CoMatrixDropout(rate=cmr)]
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  model.compile(keras.optimizers.Adam(learning_rate, clipnorm=5.0), loss)
  start = time.perf_counter()
  model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=verbose,
            callbacks=callbacks)
  train_s = time.perf_counter() - start
  if doped:
    model = dkp.finalize(model)
  model.compile(loss=loss)
  results = {"model": model, "train_seconds": train_s}
  for split in ("valid", "test"):
    sx, sy = data.batchify_arrays(getattr(corpus, split), batch, steps)
    results[f"{split}_perplexity"] = perplexity(model, sx, sy, batch)
  return results


def save_atomically(model, path):
  """Saves ``model`` beside ``path`` and renames it: no half-written model."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with files.atomic_path(path) as tmp:
    model.save(tmp)
