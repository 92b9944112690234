"""The language model and the compression methods it can be built with.

``build_lm(vocab_size, recipe, method, compression)`` makes Embedding ->
``recipe.layers`` LSTM-like layers -> Dense softmax, the LSTM layers built by
``method``:

* ``dense``: Keras `LSTM` (the baseline); ``small-dense``: a narrower `LSTM`
  with the compressed parameter count; ``prune``: `LSTM` magnitude-pruned by
  tfmot (1x1) to the factor; ``int8`` / ``int4``: the trained dense model with
  its LSTM kernels rounded to 8 / 4 bits per output channel (post-training,
  4x / 8x by bytes);
* ``kp``, ``lmf``, ``hmd``: `DKPLSTM` with that structure and no S;
  ``doped-lmf``, ``doped-hmd``, ``dkp-nocmr``, ``dkp``: with S annealed
  (``dkp`` alone uses co-matrix dropout: rows of S, from 0.8, the library's
  defaults); ``dkp-cmr-matrix-0.5`` is the earlier default (all of S dropped,
  from the preset's 0.5), ``dkp-cmr-row``, ``dkp-cmr-block`` and
  ``dkp-1x1`` are its ablations (CMR per output row or per block of S; S in 1x1
  instead of 1x4 blocks), and so
  are the schedule variants ``dkp-anneal-30`` / ``-90`` (annealing window),
  ``dkp-cmr-cosine`` (CMR decay), ``dkp-cmr-0.8`` (CMR rate) and ``dkp-cmr-row-0.8``
  / ``dkp-cmr-row-0.9`` (row CMR from 0.8 / 0.9), ``dkp-1x1-cmr-row-0.8`` (that
  with S in 1x1 blocks), ``dkp-cmr-row-0.8-early-1x1`` (S annealed in 1x1
  blocks, then 1x4) and ``dkp-cmr-row-0.8-max`` (1x4 blocks scored by their
  largest entry).

The compression factor applies to the LSTM layers (weights and biases) and is
counted by `dkp_keras.compression_report` for every method.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

import dkp_keras as dkp


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  structure: str | None = None  # DKPLSTM structure; None = Keras LSTM
  doped: bool = False
  cmr: bool = False
  description: str = ""
  layer_options: tuple = ()  # (name, value) pairs for DKPLSTM: the ablations' variants
  bits: int | None = None  # post-training quantization of the dense model's LSTM kernels
  recipe_options: tuple = ()  # (field, value) pairs replacing the recipe's: schedule ablations

  def adapt(self, recipe):
    """``recipe`` with this method's schedule changes (the same recipe for most methods)."""
    return recipe.replace(**dict(self.recipe_options)) if self.recipe_options else recipe

  @property
  def quantized(self):
    return self.bits is not None

  @property
  def fixed_compression(self):
    """The only factor this method reaches (bytes for quantization), or None if any."""
    if self.name == "dense":
      return 1.0
    return 32.0 / self.bits if self.quantized else None


METHODS = {m.name: m for m in (
    Method("dense", description="uncompressed LSTM"),
    Method("small-dense", description="narrower LSTM with the compressed parameter count"),
    Method("prune", description="tfmot magnitude pruning (1x1), same annealing schedule"),
    Method("int8", description="post-training 8-bit weights per output channel", bits=8),
    Method("int4", description="post-training 4-bit weights per output channel", bits=4),
    Method("kp", "kronecker", description="Kronecker product, no S"),
    Method("lmf", "lowrank", description="low-rank factorization, no S"),
    Method("hmd", "hmd", description="hybrid matrix decomposition, no S"),
    Method("doped-lmf", "lowrank", doped=True, description="low-rank + annealed S, no CMR"),
    Method("doped-hmd", "hmd", doped=True, description="HMD + annealed S, no CMR"),
    Method("dkp-nocmr", "kronecker", doped=True, description="DKP without co-matrix dropout"),
    # The library's defaults: co-matrix row dropout (rows of S), from 0.8.
    Method("dkp", "kronecker", doped=True, cmr=True,
           description="DKP with co-matrix row dropout from 0.8 (the library's defaults)",
           layer_options=(("cmr_granularity", "row"),), recipe_options=(("cmr", 0.8),)),
    # Ablations of dkp. The first ones vary the earlier default, whole-matrix CMR from the
    # preset's rate (0.5): CMR per output row or per block instead; 1x1 blocks for S.
    Method("dkp-cmr-matrix-0.5", "kronecker", doped=True, cmr=True,
           description="DKP, CMR drops all of S, from the preset's rate",
           layer_options=(("cmr_granularity", "matrix"),)),
    Method("dkp-cmr-row", "kronecker", doped=True, cmr=True,
           description="DKP, CMR drops rows of S", layer_options=(("cmr_granularity", "row"),)),
    Method("dkp-cmr-block", "kronecker", doped=True, cmr=True,
           description="DKP, CMR drops 1x4 blocks of S",
           layer_options=(("cmr_granularity", "block"),)),
    Method("dkp-1x1", "kronecker", doped=True, cmr=True, description="DKP, S in 1x1 blocks",
           layer_options=(("block_size", (1, 1)), ("cmr_granularity", "matrix"))),
    # Schedule ablations: S reaches its target after 30% of the steps (longer fine-tuning
    # with the mask fixed) or 90%; CMR's rate decays along a cosine; CMR at 0.8.
    Method("dkp-anneal-30", "kronecker", doped=True, cmr=True,
           description="DKP, S annealed over the first 30% of the steps",
           layer_options=(("cmr_granularity", "matrix"),),
           recipe_options=(("anneal_end", 0.3),)),
    Method("dkp-anneal-90", "kronecker", doped=True, cmr=True,
           description="DKP, S annealed over the first 90% of the steps",
           layer_options=(("cmr_granularity", "matrix"),),
           recipe_options=(("anneal_end", 0.9),)),
    Method("dkp-cmr-cosine", "kronecker", doped=True, cmr=True,
           description="DKP, CMR rate decayed along a cosine",
           layer_options=(("cmr_granularity", "matrix"),),
           recipe_options=(("cmr_decay", "cosine"),)),
    Method("dkp-cmr-0.8", "kronecker", doped=True, cmr=True, description="DKP, CMR from 0.8",
           layer_options=(("cmr_granularity", "matrix"),), recipe_options=(("cmr", 0.8),)),
    # The two CMR changes that each helped at 25x (rows, rate 0.8), together.
    Method("dkp-cmr-row-0.8", "kronecker", doped=True, cmr=True,
           description="DKP, CMR drops rows of S, from 0.8",
           layer_options=(("cmr_granularity", "row"),), recipe_options=(("cmr", 0.8),)),
    # 0.5 -> 0.8 helped both granularities: does a rate nearer 1 help further?
    Method("dkp-cmr-row-0.9", "kronecker", doped=True, cmr=True,
           description="DKP, CMR drops rows of S, from 0.9",
           layer_options=(("cmr_granularity", "row"),), recipe_options=(("cmr", 0.9),)),
    # 1x1 blocks helped whole-matrix CMR (137.47 vs 139.76 at 25x): with the best CMR too?
    Method("dkp-1x1-cmr-row-0.8", "kronecker", doped=True, cmr=True,
           description="DKP, S in 1x1 blocks, CMR drops rows of S, from 0.8",
           layer_options=(("block_size", (1, 1)), ("cmr_granularity", "row")),
           recipe_options=(("cmr", 0.8),)),
    # 1x1 S beats 1x4 but TFLite cannot store it compactly: anneal S entry by entry for
    # the first half of the window, then in 1x4 blocks to the end (deploys as 1x4).
    Method("dkp-cmr-row-0.8-early-1x1", "kronecker", doped=True, cmr=True,
           description="DKP, CMR drops rows of S, from 0.8; S annealed in 1x1 blocks to 30% "
                       "of the steps, then in 1x4",
           layer_options=(("cmr_granularity", "row"),),
           recipe_options=(("cmr", 0.8), ("block_switch", 0.3))),
    # The same aim another way: keep a 1x4 block for its largest entry, not its mean.
    Method("dkp-cmr-row-0.8-max", "kronecker", doped=True, cmr=True,
           description="DKP, CMR drops rows of S, from 0.8; 1x4 blocks of S kept by their "
                       "largest entry",
           layer_options=(("cmr_granularity", "row"),),
           recipe_options=(("cmr", 0.8), ("block_pooling", "MAX"))),
)}


def get_method(name):
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; choose one of {list(METHODS)}")
  return METHODS[name]


def check_method_compression(method, compression):
  """A clear error for a factor ``method`` cannot be asked for."""
  compression = float(compression)
  if not math.isfinite(compression) or compression < 1.0:
    raise ValueError(f"compression must be a finite factor >= 1, got {compression}")
  if method.quantized and compression != method.fixed_compression:
    raise ValueError(f"{method.name} quantization compresses by {method.fixed_compression:g}x "
                     f"(bytes) only; it cannot reach {compression:g}x")
  if method.name == "dense" and compression != 1.0:
    raise ValueError(f"the dense method is uncompressed; got compression {compression:g}")
  return compression


def lstm_params(units, input_dim):
  return 4 * units * (input_dim + units + 1)


def small_dense_units(recipe, compression):
  """The width whose LSTM stack has at most 1/compression of the dense stack's parameters."""
  budget = dense_lstm_params(recipe) / compression
  narrowest = dense_lstm_params(recipe.replace(units=1))
  if narrowest > budget:
    # The message has the shape of the structured layers' (`layer_weight_budget`).
    raise ValueError(f"compression {float(compression)} leaves {budget:.0f} parameters for the "
                     f"LSTM stack, fewer than its narrowest version (1 unit per layer) needs "
                     f"({narrowest}); ask for a lower compression")
  units = recipe.units
  while units > 1 and dense_lstm_params(recipe.replace(units=units)) > budget:
    units -= 1
  return units


def check_factor_fits(vocab_size, recipe, method, compression):
  """Refuses, before any training, a factor ``method`` cannot honour on ``recipe``'s model.

  Builds the model once (and plans prune's sparsity), so every method refuses
  with the same shape of message: ``<method> cannot compress the <recipe>
  model <factor>x: <why>``, the why saying what to ask for instead.

  Args:
    vocab_size: words of the corpus the model will be trained on.
    recipe: the `presets.Recipe` (after the method's and the user's changes).
    method: a `Method` or its name.
    compression: the factor asked for.
  """
  method = get_method(method) if isinstance(method, str) else method
  try:
    check_method_compression(method, compression)
    model = build_lm(vocab_size, recipe, method, compression, stateful=False)
    if method.name == "prune":
      for layer in recurrent_layers(model):
        pruning_sparsity(layer, compression)
  except ValueError as error:
    raise ValueError(f"{method.name} cannot compress the {recipe.name} model "
                     f"{float(compression):g}x: {error}") from error


def _uniform(recipe):
  """A fresh U(±init_scale) initializer (one instance per weight: a reused one repeats)."""
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  return keras.initializers.RandomUniform(-recipe.init_scale, recipe.init_scale)


def _initializer(recipe):
  if recipe.init_scale is None:
    return {}
  return {"kernel_initializer": _uniform(recipe), "recurrent_initializer": _uniform(recipe)}


def dense_lstm_params(recipe):
  """Parameters of the recipe's dense LSTM stack: the reference every factor is against."""
  dims = [recipe.embedding] + [recipe.units] * (recipe.layers - 1)
  return sum(lstm_params(recipe.units, d) for d in dims)


def _recurrent_layer(method, recipe, compression, index, stateful):
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  common = dict(return_sequences=True, stateful=stateful, name=f"lstm_{index}",
                **_initializer(recipe))
  if method.structure is None:
    units = recipe.units
    if method.name == "small-dense":
      units = small_dense_units(recipe, compression)
    return keras.layers.LSTM(units, **common)
  return dkp.DKPLSTM(recipe.units, compression=compression, structure=method.structure,
                     doped=method.doped, precondition_factors=recipe.precondition_factors,
                     **dict(method.layer_options), **common)


def build_lm(vocab_size, recipe, method="dkp", compression=25.0, stateful=None, batch_size=None):
  """Embedding -> LSTM-like layers (built by ``method``) -> Dense, for ``recipe``.

  ``stateful`` defaults to ``recipe.carry_state`` (then the batch size is fixed
  to ``batch_size`` or the recipe's).
  """
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  method = get_method(method) if isinstance(method, str) else method
  # Quantized methods train the dense model and round it afterwards.
  compression = 1.0 if method.fixed_compression else check_method_compression(
      method, compression)
  stateful = recipe.carry_state if stateful is None else stateful
  batch = (batch_size or recipe.batch_size) if stateful else None
  def init():
    return "uniform" if recipe.init_scale is None else _uniform(recipe)

  inputs = keras.Input((recipe.num_steps,), batch_size=batch, dtype="int32", name="tokens")
  x = keras.layers.Embedding(vocab_size, recipe.embedding, embeddings_initializer=init(),
                             name="embedding")(inputs)
  for index in range(recipe.layers):
    if recipe.dropout:
      x = keras.layers.Dropout(recipe.dropout, name=f"dropout_{index}")(x)
    x = _recurrent_layer(method, recipe, compression, index, stateful)(x)
  if recipe.dropout:
    x = keras.layers.Dropout(recipe.dropout, name="dropout_out")(x)
  output_options = {"kernel_initializer": init()} if recipe.init_scale is not None else {}
  if recipe.compress_output and method.structure is not None:
    # The softmax matrix is smaller than the LSTM's: compress it less.
    outputs = dkp.DopedDense(vocab_size, compression=max(1.0, compression / 2),
                             structure=method.structure, doped=method.doped, name="softmax",
                             precondition_factors=recipe.precondition_factors,
                             **output_options)(x)
  else:
    outputs = keras.layers.Dense(vocab_size, name="softmax", **output_options)(x)
  return keras.Model(inputs, outputs, name=f"{method.name}_lm")


def recurrent_layers(model):
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  return [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]


def pruning_sparsity(layer, compression):
  """The sparsity of kernel + recurrent kernel that makes a plain LSTM ``compression``x smaller."""
  kernels = sum(int(np.prod(w.shape)) for w in layer.cell.weights if len(w.shape) == 2)
  total = sum(int(np.prod(w.shape)) for w in layer.weights)
  # The structured layers' budget (and refusal): the bias stays dense.
  keep = dkp.structures.layer_weight_budget(kernels, total - kernels, compression)
  return 1.0 - keep / kernels


def prepare_for_pruning(model, compression, begin_step, end_step, frequency):
  """Wraps the LSTM layers for tfmot magnitude pruning to ``compression`` (1x1 blocks)."""
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  from tensorflow_model_optimization.sparsity import keras as tfmot_sparsity  # pylint: disable=import-outside-toplevel

  def wrap(layer):
    if not isinstance(layer, keras.layers.LSTM):
      return layer
    schedule = tfmot_sparsity.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=pruning_sparsity(layer, compression),
        begin_step=begin_step, end_step=end_step, power=3, frequency=frequency)
    return tfmot_sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)

  return keras.models.clone_model(model, clone_function=wrap)


def quantize_per_channel(kernel, bits=8):
  """Symmetric per-output-channel rounding of a Keras [in, out] kernel (what int8/int4 store)."""
  levels = 2 ** (bits - 1) - 1
  scale = np.max(np.abs(kernel), axis=0, keepdims=True) / levels
  scale = np.where(scale == 0, 1.0, scale)
  return (np.clip(np.round(kernel / scale), -levels, levels) * scale).astype(kernel.dtype)


def quantized_lstm_bytes(model, bits=8):
  """Bytes of the LSTM layers stored as `quantize_lstm_weights` leaves them.

  Kernels at ``bits`` per entry plus a float32 scale per output channel;
  biases stay float32.
  """
  nbytes = 0
  for layer in recurrent_layers(model):
    for weight in layer.cell.weights:
      size = int(np.prod(weight.shape))
      if len(weight.shape) == 2:
        nbytes += math.ceil(size * bits / 8) + 4 * int(weight.shape[-1])
      else:
        nbytes += 4 * size
  return nbytes


def quantize_lstm_weights(model, bits=8):
  """Rounds every LSTM kernel of ``model`` in place to ``bits`` bits per output channel."""
  for layer in recurrent_layers(model):
    for weight in layer.cell.weights:
      if len(weight.shape) == 2:
        weight.assign(quantize_per_channel(weight.numpy(), bits))


def stateful_twin(model, batch_size):
  """A copy of ``model`` whose RNN layers carry state across batches of ``batch_size``."""
  return _twin(model, batch_size, stateful=True)


def stateless_twin(model):
  """A copy of ``model`` with a free batch size and RNN layers that start from zero states."""
  return _twin(model, None, stateful=False)


def _twin(model, batch_size, stateful):
  """``model`` rebuilt from its config (any chain of registered layers), weights copied."""
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  config = model.get_config()
  for layer in config["layers"]:
    layer.pop("build_config", None)  # its old batch shape would build the RNN at that batch
    cfg = layer["config"]
    if layer["class_name"] == "InputLayer":
      cfg["batch_input_shape"] = [batch_size] + list(cfg["batch_input_shape"][1:])
      cfg.pop("batch_shape", None)
    elif "stateful" in cfg:
      cfg["stateful"] = stateful
  twin = type(model).from_config(config)
  twin.set_weights(model.get_weights())
  return twin
