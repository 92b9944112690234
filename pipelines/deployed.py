"""Perplexity of the file that ships: a language model as a step-mode ``.tflite``.

The model is converted with `pipelines.conversion` (step mode: one token per
invoke, the LSTM states explicit inputs and outputs) and run through LiteRT
over a whole split, the states carried from step to step. The stream is cut
exactly as `pipelines.training.evaluate_perplexity` cuts it (``batch_size`` rows,
windows of ``num_steps`` tokens, the tail dropped), so the float32 file and
Keras score the same tokens from the same states and their perplexities are
directly comparable.

>>> deployed_perplexities(model, corpus.test, batch_size=20, num_steps=35)  # doctest: +SKIP
{'float32': {'perplexity': ..., 'bytes': ...}, 'dynamic-int8': {...}}
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from pipelines import choices
from pipelines import conversion
from pipelines import data

_QUANTIZE = {"float32": "none", "dynamic-int8": "dynamic-int8", "float16": "float16"}


def _log_softmax_at(logits, targets):
  """log p(target) per row of ``logits`` [rows, vocab], in float64."""
  logits = logits.astype(np.float64)
  top = logits.max(axis=1, keepdims=True)
  log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
  return logits[np.arange(len(targets)), targets] - log_norm


def tflite_perplexity(path, ids, batch_size, num_steps):
  """Per-word perplexity of ``ids`` under the step-mode ``.tflite`` at ``path``.

  Args:
    path: a file written by ``pipelines.convert --mode step --batch batch_size``.
    ids: the token ids of the split, one stream.
    batch_size: rows the stream is cut into (the file's batch size).
    num_steps: window length; it only decides which tail is dropped, as in Keras.

  Returns:
    exp(mean negative log-likelihood) over every scored token.
  """
  x, y = data.batchify_arrays(np.asarray(ids), batch_size, num_steps)
  interpreter, _ = conversion.open_interpreter(path)
  runner = interpreter.get_signature_runner()
  inputs = runner.get_input_details()
  if "inputs" not in inputs or inputs["inputs"]["shape"][:2].tolist() != [batch_size, 1]:
    raise ValueError(f"{path} is not a step-mode file with batch {batch_size} (convert it "
                     f"with --mode step --batch {batch_size})")
  states = {name: np.zeros(detail["shape"], detail["dtype"])
            for name, detail in inputs.items() if name != "inputs"}
  token_dtype = inputs["inputs"]["dtype"]
  total, count = 0.0, 0
  for start in range(0, len(x), batch_size):
    window_x, window_y = x[start:start + batch_size], y[start:start + batch_size]
    for t in range(num_steps):
      result = runner(inputs=window_x[:, t:t + 1].astype(token_dtype), **states)
      logits = result["outputs"].reshape(batch_size, -1)
      total -= float(_log_softmax_at(logits, window_y[:, t]).sum())
      count += batch_size
      states = {name: result[name] for name in states}
  return float(np.exp(total / count))


def deployed_perplexities(model, ids, batch_size, num_steps, exports=choices.DEPLOYED_EXPORTS):
  """Converts ``model`` to each export and measures its perplexity on ``ids``.

  The files go to a temporary directory and are removed afterwards.

  Returns:
    ``{export: {"perplexity": float, "bytes": file size}}`` for ``exports``
    among ``"float32"``, ``"dynamic-int8"`` and ``"float16"``.
  """
  unknown = [e for e in exports if e not in _QUANTIZE]
  if unknown:
    raise ValueError(f"unknown exports {unknown}; choose from {sorted(_QUANTIZE)}")
  results = {}
  with tempfile.TemporaryDirectory(prefix="dkp-deployed-") as workdir:
    for export in exports:
      path = os.path.join(workdir, f"{export}.tflite")
      # A quantized file is checked by the perplexity measured here, not by the
      # float tolerance on random inputs (which int8 weights may exceed on random tokens).
      conversion.convert(model, path, mode="step", batch_size=batch_size,
                      quantize=_QUANTIZE[export], verify_samples=2 if export == "float32" else 0)
      results[export] = {"perplexity": tflite_perplexity(path, ids, batch_size, num_steps),
                         "bytes": os.path.getsize(path)}
  return results
