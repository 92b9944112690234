"""Timing .tflite models fairly: interleaved repetitions, medians, one process.

>>> medians = interleaved_medians({"dense": run_dense, "dkp": run_dkp})  # doctest: +SKIP
"""

from __future__ import annotations

import time

import numpy as np


def timing_interpreter(path, num_threads=1, xnnpack=True, seed=0):
  """A LiteRT ``Interpreter`` of the .tflite file at ``path``, allocated, its inputs set once.

  Float inputs get seeded standard-normal values, integer inputs (token ids) zeros.
  Not zeros everywhere: dynamic-int8 (hybrid) kernels skip an all-zero input vector,
  so zero inputs and states would time an int8 model's matmuls as free.

  Args:
    path: the .tflite file.
    num_threads: the interpreter's CPU threads.
    xnnpack: False runs the builtin kernels only (no default XNNPack delegate).
    seed: the seed of the float inputs' values.
  """
  # pylint: disable=import-outside-toplevel
  from ai_edge_litert.interpreter import Interpreter, OpResolverType
  options = {} if xnnpack else {
      "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
  interpreter = Interpreter(model_path=str(path), num_threads=num_threads, **options)
  interpreter.allocate_tensors()
  rng = np.random.default_rng(seed)
  for detail in interpreter.get_input_details():
    shape, dtype = detail["shape"], detail["dtype"]
    values = (rng.standard_normal(shape).astype(dtype) if np.issubdtype(dtype, np.floating)
              else np.zeros(shape, dtype))
    interpreter.set_tensor(detail["index"], values)
  return interpreter


def step_invoker(path, num_threads=1, xnnpack=True):
  """A zero-argument callable that runs one step of a step-mode .tflite model.

  Inputs are set once (`timing_interpreter`: token 0, random floats and states); each call is one
  ``invoke()``, which is what a streaming app pays per token.
  """
  return timing_interpreter(path, num_threads, xnnpack).invoke


def interleaved_medians(callables, repeats=7, number=50, warmup=10):
  """Median seconds per call of each callable, repetitions interleaved across them.

  Each repetition times ``number`` back-to-back calls of every callable in
  turn, so slow drifts of a noisy machine hit all of them alike.

  Returns:
    {name: {"median_s", "p10_s", "p90_s", "samples_s"}}.
  """
  if repeats < 1 or number < 1:
    raise ValueError(f"repeats and number must be >= 1, got {repeats}, {number}")
  for call in callables.values():
    for _ in range(warmup):
      call()
  samples = {name: [] for name in callables}
  for _ in range(repeats):
    for name, call in callables.items():
      start = time.perf_counter()
      for _ in range(number):
        call()
      samples[name].append((time.perf_counter() - start) / number)
  return {name: {"median_s": float(np.median(values)),
                 "p10_s": float(np.percentile(values, 10)),
                 "p90_s": float(np.percentile(values, 90)), "samples_s": values}
          for name, values in samples.items()}
