"""Quick start: train a small DKP LSTM language model on the embedded corpus.

``python -m pipelines.quickstart [--epochs 4] [--compression 10] [--out model.keras]``

Builds Embedding -> DKPLSTM -> DopedDense, anneals the doping matrices to the
sparsity the compression factor needs (with co-matrix dropout), finalizes the
model, prints its compression report and its validation perplexity next to the
unigram baseline and the corpus' best achievable perplexity, and optionally
saves it. Runs in about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import dkp_keras as dkp
from pipelines import data


def build_model(vocab_size, units=128, embedding=64, compression=10.0, num_steps=20):
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  inputs = keras.Input((num_steps,), dtype="int32")
  x = keras.layers.Embedding(vocab_size, embedding)(inputs)
  x = dkp.DKPLSTM(units, compression=compression, return_sequences=True)(x)
  outputs = dkp.DopedDense(vocab_size, compression=compression / 2)(x)
  return keras.Model(inputs, outputs, name="dkp_lm")


def perplexity(model, x, y, batch_size):
  return float(np.exp(model.evaluate(x, y, batch_size=batch_size, verbose=0)))


def save_atomically(model, path):
  """Saves to a temporary file beside ``path`` and renames it: no half-written model."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".keras", dir=directory)
  os.close(fd)
  try:
    model.save(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def run(epochs=4, compression=10.0, tokens=120_000, batch=32, steps=20, cmr=0.5, out=None,
        verbose=2):
  """Trains, anneals and finalizes the model; returns perplexities, report and model."""
  if epochs < 2:
    raise ValueError(f"epochs must be >= 2 (annealing takes all but the last), got {epochs}")
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(0)
  corpus = data.generate_corpus(num_tokens=tokens, seed=0)
  x, y = data.batchify_arrays(corpus.train, batch, steps)
  vx, vy = data.batchify_arrays(corpus.valid, batch, steps)
  steps_per_epoch = len(x) // batch

  model = build_model(corpus.vocab_size, compression=compression, num_steps=steps)
  model = dkp.prepare_for_annealing(model, begin_step=0, end_step=steps_per_epoch * (epochs - 1),
                                    frequency=max(1, steps_per_epoch // 10))
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  model.compile(keras.optimizers.Adam(3e-3, clipnorm=5.0), loss)
  start = time.perf_counter()
  model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=verbose,
            callbacks=[dkp.SparsityAnnealing(), dkp.CoMatrixDropout(rate=cmr)])
  train_s = time.perf_counter() - start
  model = dkp.finalize(model)
  model.compile(loss=loss)
  if out:
    save_atomically(model, out)
  return {"model": model, "report": dkp.compression_report(model),
          "perplexity": perplexity(model, vx, vy, batch),
          "unigram_perplexity": data.unigram_perplexity(corpus.train, corpus.valid,
                                                        corpus.vocab_size),
          "optimal_perplexity": corpus.optimal_perplexity, "train_seconds": train_s}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--compression", type=float, default=10.0)
  parser.add_argument("--tokens", type=int, default=120_000)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--cmr", type=float, default=0.5, help="initial co-matrix dropout rate")
  parser.add_argument("--out", help="save the finalized model here (.keras)")
  args = parser.parse_args(argv)
  try:
    result = run(args.epochs, args.compression, args.tokens, args.batch, args.steps, args.cmr,
                 args.out)
  except ValueError as error:
    parser.error(str(error))
  print("\nCompression report")
  print(result["report"].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
  print(f"\nvalidation perplexity {result['perplexity']:.2f}   unigram baseline "
        f"{result['unigram_perplexity']:.2f}   best achievable "
        f"{result['optimal_perplexity']:.2f}   (trained in {result['train_seconds']:.0f} s)")
  if args.out:
    print(f"saved {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
