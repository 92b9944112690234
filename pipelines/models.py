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
  ``doped-lmf``, ``doped-hmd``, ``dkp``: with S annealed; ``dkp`` also with
  co-matrix dropout (CMR), by default the library's: rows of S, from 0.8.

The DKP knobs (`DKP_OPTIONS`) tune a doped method: ``method.with_options(...)``
(``python -m pipelines.train --cmr-granularity matrix ...``). Named variants
of ``dkp`` studied by the benchmarks are data there (`benchmarks.recipes`).

The compression factor applies to the LSTM layers (weights and biases) and is
counted by `dkp_keras.compression_report` for every method.

``front`` (a `pipelines.frontends.Frontend`) picks the Keras: tf_keras by
default, Keras 3 with `dkp_keras.keras3`'s layers (every method but those
tfmot or tf_keras quantization need: `check_frontend`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dkp_keras import cmr
from dkp_keras import structures
from pipelines import frontends

# The DKP knobs: arguments of the `DKPLSTM` layers ...
LAYER_OPTIONS = ("cmr_granularity", "block_size", "structure_fraction")
# ... and fields of the recipe's annealing / CMR schedule (`presets.Recipe`).
RECIPE_OPTIONS = ("cmr", "cmr_decay", "anneal_end", "block_switch", "block_pooling")
DKP_OPTIONS = LAYER_OPTIONS + RECIPE_OPTIONS
# The options that tune co-matrix dropout: only for a method with CMR.
CMR_OPTIONS = ("cmr", "cmr_decay", "cmr_granularity")
BLOCK_POOLINGS = ("AVG", "MAX")


@dataclasses.dataclass(frozen=True)
class Method:
  """A way to build (and train) the LSTM layers of the language model.

  Args:
    name: the method's name (the CLI's ``--method``; a benchmark's recipe name).
    structure: the `DKPLSTM` structure; None builds a Keras `LSTM`.
    doped: whether the layers have an annealed sparse co-matrix S.
    cmr: whether training applies co-matrix dropout (at the recipe's ``cmr`` rate).
    description: one line for listings.
    layer_options: (name, value) pairs passed to every `DKPLSTM` (`LAYER_OPTIONS`).
    bits: post-training quantization of the dense model's LSTM kernels.
    recipe_options: (field, value) pairs replacing the recipe's (`RECIPE_OPTIONS`).
  """
  name: str
  structure: str | None = None
  doped: bool = False
  cmr: bool = False
  description: str = ""
  layer_options: tuple = ()
  bits: int | None = None
  recipe_options: tuple = ()

  def adapt(self, recipe):
    """``recipe`` with this method's schedule changes (the same recipe for most methods)."""
    return recipe.replace(**dict(self.recipe_options)) if self.recipe_options else recipe

  def with_options(self, **options):
    """This method with DKP knobs (`DKP_OPTIONS`) set; a clear error for a bad one.

    Args:
      **options: any of ``cmr_granularity`` ('row', 'matrix', 'block'),
        ``block_size`` ((rows, cols) of S's blocks), ``structure_fraction``
        (share of the budget for the structure), ``cmr`` (initial CMR rate),
        ``cmr_decay``, ``anneal_end`` (fraction of the steps S anneals over),
        ``block_switch`` (S anneals in 1x1 blocks until this fraction) and
        ``block_pooling`` ('AVG' or 'MAX': how a block of S is scored).
        None values are ignored.
    """
    options = {name: value for name, value in options.items() if value is not None}
    if not options:
      return self
    unknown = sorted(set(options) - set(DKP_OPTIONS))
    if unknown:
      raise ValueError(f"unknown DKP options {unknown}; choose from {list(DKP_OPTIONS)}")
    if not self.doped:
      raise ValueError(f"{self.name} has no co-matrix S to tune; the DKP options "
                       f"({', '.join(_named(o) for o in sorted(options))}) apply to the doped "
                       f"methods "
                       f"({', '.join(m.name for m in METHODS.values() if m.doped)})")
    cmr_options = sorted(set(options) & set(CMR_OPTIONS))
    if cmr_options and not self.cmr:
      raise ValueError(f"{self.name} trains without co-matrix dropout; "
                       f"{', '.join(_named(o) for o in cmr_options)} apply to dkp")
    if "block_size" in options:
      options["block_size"] = tuple(options["block_size"])
    _check_options(options)
    layer = {**dict(self.layer_options),
             **{k: v for k, v in options.items() if k in LAYER_OPTIONS}}
    recipe = {**dict(self.recipe_options),
              **{k: v for k, v in options.items() if k in RECIPE_OPTIONS}}
    return dataclasses.replace(self, layer_options=tuple(layer.items()),
                               recipe_options=tuple(recipe.items()))

  @property
  def quantized(self):
    return self.bits is not None

  @property
  def fixed_compression(self):
    """The only factor this method reaches (bytes for quantization), or None if any."""
    if self.name == "dense":
      return 1.0
    return 32.0 / self.bits if self.quantized else None


def _named(option):
  """An option's name in messages: the argument and its CLI flag."""
  return f"{option} (--{option.replace('_', '-')})"


def _check_options(options):
  """Refuses a DKP option value the layers or the schedule would refuse later."""
  if "cmr" in options and not 0.0 <= options["cmr"] < 1.0:
    raise ValueError(f"{_named('cmr')}, the initial co-matrix dropout rate, must be in [0, 1), "
                     f"got {options['cmr']}")
  choices = {"cmr_granularity": cmr.GRANULARITIES, "cmr_decay": cmr.DECAYS,
             "block_pooling": BLOCK_POOLINGS}
  for name, allowed in choices.items():
    if name in options and options[name] not in allowed:
      raise ValueError(f"unknown {_named(name)} {options[name]!r}; choose one of "
                       f"{list(allowed)}")
  for name in ("structure_fraction", "anneal_end", "block_switch"):
    if name in options and not 0.0 < options[name] <= 1.0:
      raise ValueError(f"{_named(name)} must be a fraction in (0, 1], got {options[name]}")
  if "block_size" in options:
    size = options["block_size"]
    if len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size):
      raise ValueError(f"{_named('block_size')} must be two positive integers (rows, cols), "
                       f"got {size!r}")


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
    # The library's defaults: co-matrix row dropout (rows of S), from 0.8.
    Method("dkp", "kronecker", doped=True, cmr=True,
           description="DKP with co-matrix row dropout from 0.8 (the library's defaults)",
           layer_options=(("cmr_granularity", "row"),), recipe_options=(("cmr", 0.8),)),
)}


def get_method(name):
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; choose one of {list(METHODS)}")
  return METHODS[name]


def check_frontend(method, front):
  """A clear error for a method the Keras of ``front`` cannot train."""
  method = get_method(method) if isinstance(method, str) else method
  why = front.unsupported_methods.get(method.name)
  if why is not None:
    supported = [name for name in METHODS if name not in front.unsupported_methods]
    raise ValueError(f"method {method.name} is not available with --keras {front.version}: "
                     f"{why}; with --keras {front.version} choose one of {supported}, or "
                     f"train it with --keras 2")


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


def check_factor_fits(vocab_size, recipe, method, compression, front=None):
  """Refuses, before any training, a factor ``method`` cannot honour on ``recipe``'s model.

  Builds the model once (and plans prune's sparsity), so every method refuses
  with the same shape of message: ``<method> cannot compress the <recipe>
  model <factor>x: <why>``, the why saying what to ask for instead.

  Args:
    vocab_size: words of the corpus the model will be trained on.
    recipe: the `presets.Recipe` (after the method's and the user's changes).
    method: a `Method` or its name.
    compression: the factor asked for.
    front: the `frontends.Frontend` to build with (default: tf_keras).
  """
  method = get_method(method) if isinstance(method, str) else method
  try:
    check_method_compression(method, compression)
    model = build_lm(vocab_size, recipe, method, compression, stateful=False, front=front)
    if method.name == "prune":
      for layer in recurrent_layers(model):
        pruning_sparsity(layer, compression)
  except ValueError as error:
    raise ValueError(f"{method.name} cannot compress the {recipe.name} model "
                     f"{float(compression):g}x: {error}") from error


def _uniform(recipe, front):
  """A fresh U(±init_scale) initializer (one instance per weight: a reused one repeats)."""
  return front.keras.initializers.RandomUniform(-recipe.init_scale, recipe.init_scale)


def _initializer(recipe, front):
  if recipe.init_scale is None:
    return {}
  return {"kernel_initializer": _uniform(recipe, front),
          "recurrent_initializer": _uniform(recipe, front)}


def dense_lstm_params(recipe):
  """Parameters of the recipe's dense LSTM stack: the reference every factor is against."""
  dims = [recipe.embedding] + [recipe.units] * (recipe.layers - 1)
  return sum(lstm_params(recipe.units, d) for d in dims)


def _recurrent_layer(method, recipe, compression, index, stateful, front):
  common = dict(return_sequences=True, stateful=stateful, name=f"lstm_{index}",
                **_initializer(recipe, front))
  if method.structure is None:
    units = recipe.units
    if method.name == "small-dense":
      units = small_dense_units(recipe, compression)
    return front.keras.layers.LSTM(units, **common)
  return front.dkp.DKPLSTM(recipe.units, compression=compression, structure=method.structure,
                     doped=method.doped, precondition_factors=recipe.precondition_factors,
                     **dict(method.layer_options), **common)


def build_lm(vocab_size, recipe, method="dkp", compression=25.0, stateful=None, batch_size=None,
             front=None):
  """Embedding -> LSTM-like layers (built by ``method``) -> Dense, for ``recipe``.

  ``stateful`` defaults to ``recipe.carry_state`` (then the batch size is fixed
  to ``batch_size`` or the recipe's). ``front`` (a `frontends.Frontend`,
  default tf_keras) is the Keras the model is built with.
  """
  front = front or frontends.get_frontend()
  keras = front.keras
  method = get_method(method) if isinstance(method, str) else method
  check_frontend(method, front)
  # Quantized methods train the dense model and round it afterwards.
  compression = 1.0 if method.fixed_compression else check_method_compression(
      method, compression)
  stateful = recipe.carry_state if stateful is None else stateful
  batch = (batch_size or recipe.batch_size) if stateful else None
  def init():
    return "uniform" if recipe.init_scale is None else _uniform(recipe, front)

  inputs = keras.Input((recipe.num_steps,), batch_size=batch, dtype="int32", name="tokens")
  x = keras.layers.Embedding(vocab_size, recipe.embedding, embeddings_initializer=init(),
                             name="embedding")(inputs)
  for index in range(recipe.layers):
    if recipe.dropout:
      x = keras.layers.Dropout(recipe.dropout, name=f"dropout_{index}")(x)
    x = _recurrent_layer(method, recipe, compression, index, stateful, front)(x)
  if recipe.dropout:
    x = keras.layers.Dropout(recipe.dropout, name="dropout_out")(x)
  output_options = {"kernel_initializer": init()} if recipe.init_scale is not None else {}
  if recipe.compress_output and method.structure is not None:
    # The softmax matrix is smaller than the LSTM's: compress it less.
    outputs = front.dkp.DopedDense(vocab_size, compression=max(1.0, compression / 2),
                             structure=method.structure, doped=method.doped, name="softmax",
                             precondition_factors=recipe.precondition_factors,
                             **output_options)(x)
  else:
    outputs = keras.layers.Dense(vocab_size, name="softmax", **output_options)(x)
  return keras.Model(inputs, outputs, name=f"{method.name}_lm")


def recurrent_layers(model):
  """The RNN layers of ``model`` (tf_keras or Keras 3)."""
  return frontends.of_model(model).recurrent_layers(model)


def pruning_sparsity(layer, compression):
  """The sparsity of kernel + recurrent kernel that makes a plain LSTM ``compression``x smaller."""
  kernels = sum(int(np.prod(w.shape)) for w in layer.cell.weights if len(w.shape) == 2)
  total = sum(int(np.prod(w.shape)) for w in layer.weights)
  # The structured layers' budget (and refusal): the bias stays dense.
  keep = structures.layer_weight_budget(kernels, total - kernels, compression)
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
  """``model`` rebuilt from its config (any chain of registered layers, either Keras),
  weights copied."""
  config = model.get_config()
  for layer in config["layers"]:
    layer.pop("build_config", None)  # its old batch shape would build the RNN at that batch
    cfg = layer["config"]
    if layer["class_name"] == "InputLayer":
      key = "batch_shape" if "batch_shape" in cfg else "batch_input_shape"  # Keras 3 / tf_keras
      cfg[key] = [batch_size] + list(cfg[key][1:])
    elif "stateful" in cfg:
      cfg["stateful"] = stateful
  twin = type(model).from_config(config)
  twin.set_weights(model.get_weights())
  return twin
