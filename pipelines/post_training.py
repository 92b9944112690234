"""Post-training compression of a trained dense model (`compress`).

The work behind ``python -m pipelines.compress`` (its flags are `compress`'s
arguments). Every LSTM and Dense layer with at least ``min_params`` weights
(or the layers named by ``layers``) becomes its DKP twin, initialized from the
trained weights: the nearest Kronecker product of each matrix (Van
Loan–Pitsianis; truncated SVD for ``lowrank``) plus S = the largest residual
blocks, as many as the factor allows. The model is then fine-tuned for
``finetune_epochs`` epochs with S's mask held at its target and co-matrix
dropout, and the perplexity is reported before (dense), right after the
projection, and after fine-tuning (``<out>.json`` beside the model).

A Keras 3 model file is read as its tf_keras twin (`dkp_keras.keras2_twin`:
the same layers, names and weights), so the compressed model is a tf_keras
file either way.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

import dkp_keras as dkp
from dkp_keras import annealing
from dkp_keras import blocks
from dkp_keras import keras2_twin
from dkp_keras import kronecker
from dkp_keras import traversal
from dkp_keras.compression import missed_target_warning
from pipelines import choices
from pipelines import models
from pipelines import presets
from pipelines import training
from tflite_ops import files


def top_blocks(residual, keep_fraction, block_size):
  """``residual`` (Keras [in, out]) with only its largest-mean-|value| blocks kept."""
  total = math.prod(blocks.grid_shape(residual.shape, block_size))
  return blocks.keep_top_blocks(residual, int(round(keep_fraction * total)), block_size)


def project_matrix(matrix, kernel, keep_fraction):
  """Sets a `DopedMatrix` to the nearest structure of ``kernel`` ([in, out]) + top residual."""
  w = np.asarray(kernel, dtype=np.float64).T
  structure = matrix.structure
  if structure.name == "kronecker":
    a, b = kronecker.nearest_kronecker(w, structure.shape)
    values = {"kron_a": a, "kron_b": b}
  elif structure.name == "lowrank":
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    rank = structure.weight_shapes["lowrank_u"][1]
    values = {"lowrank_u": u[:, :rank] * s[:rank], "lowrank_v": vt[:rank]}
  else:
    raise ValueError(f"compress projects onto {choices.STRUCTURES}, not {structure.name!r}")
  for name, value in values.items():
    matrix.weights[name].assign(value.astype(np.float32))
  if matrix.doping is not None:
    residual = w - structure.dense_matrix(values)
    matrix.doping.assign(top_blocks(residual.T, keep_fraction, matrix.plan.block_size)
                         .astype(np.float32))


def choose_layers(model, layers=None, min_params=choices.DEFAULT_MIN_PARAMS):
  """The names of the layers of chain ``model`` to compress.

  Args:
    model: the trained dense chain model.
    layers: names to compress (each an LSTM or Dense layer of the model), or
      None for every LSTM and Dense layer with at least ``min_params`` weights.
    min_params: the size threshold of the default choice.

  Raises:
    ValueError: naming an unknown layer or one of another type, or when
      nothing is left to compress.
  """
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  kinds = (keras.layers.LSTM, keras.layers.Dense)
  candidates = {layer.name: layer for layer in traversal.chain_layers(model, "compressed")}
  eligible = [name for name, layer in candidates.items() if isinstance(layer, kinds)]
  if layers is None:
    chosen = [name for name in eligible if candidates[name].count_params() >= min_params]
    if not chosen:
      raise ValueError(f"{model.name} has no LSTM or Dense layer with at least {min_params} "
                       f"weights; name the layers to compress with --layers ({eligible})")
    return chosen
  for name in layers:
    if name not in candidates:
      raise ValueError(f"{model.name} has no layer {name!r}; its LSTM and Dense layers are "
                       f"{eligible}")
    if name not in eligible:
      raise ValueError(f"layer {name!r} is a {type(candidates[name]).__name__}: compress "
                       f"handles LSTM and Dense layers ({eligible})")
  if not layers:
    raise ValueError("--layers names no layer")
  return [name for name in eligible if name in layers]


def project_model(model, compression, structure="kronecker", layers=None,
                  min_params=choices.DEFAULT_MIN_PARAMS, precondition_factors=False):
  """A stateless DKP twin of chain ``model``, initialized by projection (no training).

  ``layers`` / ``min_params`` choose the layers that become DKP layers (see
  `choose_layers`); the rest keep their weights. ``precondition_factors``
  gives the DKP layers scaled factor gradients, for SGD fine-tuning.
  """
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  if structure not in choices.STRUCTURES:
    raise ValueError(f"unknown structure {structure!r}; choose one of {choices.STRUCTURES}")
  targets = set(choose_layers(model, layers, min_params))
  layers = traversal.chain_layers(model, "compressed")
  inputs = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype)
  x, sources = inputs, {}
  for layer in layers:
    if layer.name in targets and isinstance(layer, keras.layers.LSTM):
      new = dkp.DKPLSTM(layer.units, compression=compression, structure=structure,
                        return_sequences=layer.return_sequences, activation=layer.activation,
                        recurrent_activation=layer.recurrent_activation,
                        use_bias=layer.use_bias, dropout=layer.dropout,
                        recurrent_dropout=layer.recurrent_dropout, name=layer.name,
                        precondition_factors=precondition_factors)
    elif layer.name in targets:
      new = dkp.DopedDense(layer.units, compression=compression, structure=structure,
                           activation=layer.activation, use_bias=layer.use_bias,
                           name=layer.name, precondition_factors=precondition_factors)
    else:
      config = layer.get_config()
      config.pop("stateful", None)
      new = type(layer).from_config(config)
    try:
      x = new(x)
    except ValueError as error:
      raise ValueError(f"layer {layer.name!r}: {error}; or leave it out (--layers)") from error
    sources[layer.name] = (layer, new)
  projected = keras.Model(inputs, x, name=f"{model.name}_dkp")
  for name, (old, new) in sources.items():
    if name not in targets:
      new.set_weights(old.get_weights())
      continue
    owner = getattr(new, "cell", new)
    keep = 1.0 - annealing.target_sparsity(owner)
    cell = getattr(old, "cell", old)
    kernels = {"kernel": cell.kernel, "input": cell.kernel}
    if hasattr(cell, "recurrent_kernel"):
      kernels["recurrent"] = cell.recurrent_kernel
    for key, matrix in owner.doped_matrices.items():
      project_matrix(matrix, kernels[key].numpy(), keep)
    if owner.bias is not None:
      owner.bias.assign(cell.bias.numpy())
  return projected


def load_trained_model(path):
  """The trained model at ``path`` as a tf_keras model, and whether the file is Keras 3's.

  A tf_keras file loads with `dkp_keras.load_model`; a Keras 3 file loads with
  Keras 3 and becomes its tf_keras twin (a chain of the layers
  `keras2_twin.SUPPORTED_LAYERS` names; anything else is refused naming the
  layer).
  """
  if keras2_twin.saved_by_keras3(path):
    return keras2_twin.tf_keras_twin(keras2_twin.load_keras3_model(path)), True
  return dkp.load_model(path), False


def compress(model_path, out, compression=25.0, finetune_epochs=1, data_dir=None,
             preset="demo", structure="kronecker", layers=None,
             min_params=choices.DEFAULT_MIN_PARAMS, force=False, verbose=2):
  """Projects, fine-tunes and saves; returns the report dict (also in ``<out>.json``).

  Both outputs are checked before any work: neither may be the input model or
  the other, and existing files are replaced only with ``force``.
  """
  report_path = os.path.splitext(out)[0] + ".json"
  files.check_outputs({"--out": out, "its report": report_path}, {"model": model_path}, force)
  if finetune_epochs < 0:
    raise ValueError(f"--finetune-epochs must be >= 0, got {finetune_epochs}")
  recipe = presets.get_preset(preset)
  dense, from_keras3 = load_trained_model(model_path)
  corpus = training.load_corpus(data_dir, recipe)
  vocab_size = training.vocab_size_of(dense)
  if vocab_size is not None and vocab_size != corpus.vocab_size:
    raise ValueError(f"vocabulary mismatch: {model_path} has {vocab_size} words, the data "
                     f"{corpus.vocab_size}; give the --data / --preset it was trained on")
  recipe = recipe.replace(num_steps=dense.input_shape[1] or recipe.num_steps)

  def perplexity(model, split):
    return training.evaluate_perplexity(model, getattr(corpus, split), recipe.batch_size,
                                        recipe.num_steps)

  projected = project_model(dense, compression, structure, layers, min_params,
                            recipe.precondition_factors)
  report = {"model": os.path.abspath(model_path), "compression": compression,
            "structure": structure, "finetune_epochs": finetune_epochs, "preset": preset,
            "perplexity": {}}
  if from_keras3:  # absent for tf_keras inputs: earlier reports keep their keys
    report["input_keras"] = "3"
  for stage, model in (("dense", dense), ("projected", projected)):
    report["perplexity"][stage] = {s: perplexity(model, s) for s in ("valid", "test")}
  final = projected
  if finetune_epochs:
    # The default DKP training (its CMR) on the chosen structure.
    method = dataclasses.replace(models.get_method("dkp"), structure=structure)
    # Fine-tuning starts from the projection just evaluated (default strategy: no
    # scope to rebuild it under).
    result = training.fit_lm(corpus, method.adapt(recipe.replace(epochs=finetune_epochs)),
                             method, compression, verbose=verbose,
                             initial_model=lambda: projected)
    final = result["model"]
    report["perplexity"]["finetuned"] = {"valid": result["valid_perplexity"],
                                         "test": result["test_perplexity"]}
    report["finetune_seconds"] = result["train_seconds"]
  table = dkp.compression_report(final)
  report["model_compression"] = float(table["compression"].iloc[-1])
  report["model_byte_compression"] = float(table["byte_compression"].iloc[-1])
  rows = table[table["layer"] != "total"]
  report["layers"] = rows[["layer", "type", "compression", "byte_compression",
                           "target_compression", "meets_target"]].to_dict("records")
  report["target_warning"] = missed_target_warning(table)
  training.save_atomically(final, out)
  files.write_json_atomic(report_path, report)
  return report
