"""One language model's training steps, timed on request: the worker of `train_step_keras3`.

`build` makes the PTB-medium-shaped LM (Embedding -> LSTM layers -> Dense,
batch 20 x 35 steps, SGD with clipnorm) with the product's own builder,
`pipelines.models.build_lm`, for either Keras (a `pipelines.frontends.Frontend`),
so the tf_keras and Keras 3 models timed are the same model. Run as

    KERAS_BACKEND=jax python -m benchmarks.keras3_step_worker METHOD CONFIG_JSON

it builds the model on Keras 3 with that backend, runs one untimed step
(tracing), prints ``READY {json}`` and then answers each line ``N`` on stdin with
``SECONDS s``: the wall time of ``N`` consecutive `train_on_batch` steps. An
empty line or the end of stdin ends it. Imports no Keras at module level: the
worker's process holds Keras 3 only (no tf_keras, no TF_USE_LEGACY_KERAS).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from pipelines import frontends
from pipelines import models
from pipelines import presets

READY, SECONDS = "READY", "SECONDS"


def recipe(config):
  """The recipe of ``config``'s model: no dropout, Keras' initializers, stateless."""
  return presets.Recipe("train-step", layers=config["layers"], units=config["units"],
                        embedding=config["units"], num_steps=config["steps"],
                        batch_size=config["batch"], optimizer="sgd", learning_rate=config["lr"],
                        clip_norm=config["clipnorm"], init_scale=None, carry_state=False)


def build(front, method, config):
  """``method``'s LM (`pipelines.models.METHODS`: dense, dkp, ...) on ``front``, compiled."""
  compression = 1.0 if method == "dense" else config["compression"]
  front.keras.utils.set_random_seed(config["seed"])
  model = models.build_lm(config["vocab"], recipe(config), method, compression, stateful=False,
                          front=front)
  model.compile(optimizer=front.keras.optimizers.SGD(learning_rate=config["lr"],
                                                     clipnorm=config["clipnorm"]),
                loss=front.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def batch(config):
  """One fixed (batch, steps) batch of random token ids and targets."""
  rng = np.random.default_rng(config["seed"])
  shape = (config["batch"], config["steps"])
  return (rng.integers(0, config["vocab"], shape, dtype=np.int32),
          rng.integers(0, config["vocab"], shape, dtype=np.int32))


def time_block(model, x, y, steps):
  """Seconds for ``steps`` consecutive `train_on_batch` calls (each synchronous)."""
  start = time.perf_counter()
  for _ in range(steps):
    model.train_on_batch(x, y)
  return time.perf_counter() - start


def trainable_params(model):
  return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def serve(method, config, stdin=sys.stdin, stdout=sys.stdout):
  """The worker's loop: build and trace, say READY, then time blocks until told to stop."""
  front = frontends.get_frontend("3")
  model = build(front, method, config)
  x, y = batch(config)
  model.train_on_batch(x, y)  # traces the train function
  info = {"backend": front.keras.backend.backend(), "keras": front.keras.__version__,
          "trainable_params": trainable_params(model),
          "jit_compile": getattr(model, "jit_compile", None)}
  print(f"{READY} {json.dumps(info)}", file=stdout, flush=True)
  for line in stdin:
    if not line.strip():
      break
    print(f"{SECONDS} {time_block(model, x, y, int(line))!r}", file=stdout, flush=True)


def build_parser():
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.keras3_step_worker",
      description="A Keras 3 LM timed on request (the worker of benchmarks.train_step_keras3): "
                  "prints READY, then answers each stdin line N with SECONDS for N steps.")
  parser.add_argument("method", help="the LM's method: dense, dkp, ... (pipelines.models)")
  parser.add_argument("config", type=json.loads,
                      help="benchmarks.train_step_keras3's config as JSON (units, layers, vocab, "
                           "batch, steps, compression, lr, clipnorm, seed)")
  return parser


if __name__ == "__main__":
  arguments = build_parser().parse_args()
  serve(arguments.method, arguments.config)
