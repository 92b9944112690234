"""The tf_keras twin of a Keras 3 model: what the TFLite lowering converts for a Keras 3 file.

The lowering (`tflite_ops.lowering`) reads tf_keras models. `tf_keras_twin`
rebuilds a Keras 3 model that is a chain of supported layers as the tf_keras
model of the same layers, names and weights: `DopedDense`, `DKPLSTM`,
`Embedding`, `Dense`, `LSTM`, `Dropout`, `Activation`, and `Bidirectional` /
`TimeDistributed` around them. Each layer is built from its Keras 3 config;
what only trains (initializers, regularizers, constraints, seeds) is left out,
since the weights are copied. Anything else is refused with a message naming
the layer and why, rather than converted into something that computes another
function. This module imports both Kerases; `dkp_keras.keras3` imports no tf_keras.

>>> keras3_model = load_keras3_model("lm.keras")   # doctest: +SKIP
>>> twin = tf_keras_twin(keras3_model)             # doctest: +SKIP
"""

from __future__ import annotations

import keras
import numpy as np
import tf_keras

from dkp_keras import keras3
from dkp_keras import layers as legacy_layers
from dkp_keras import lstm as legacy_lstm
from dkp_keras import traversal
from dkp_keras.loading import ModelFileError, saved_keras_version

# Keras 3 class -> the tf_keras class of its twin (exact classes: a subclass may compute
# something else).
_TWIN_CLASSES = {
    keras.layers.Embedding: tf_keras.layers.Embedding, keras.layers.Dense: tf_keras.layers.Dense,
    keras.layers.LSTM: tf_keras.layers.LSTM, keras.layers.Dropout: tf_keras.layers.Dropout,
    keras.layers.Activation: tf_keras.layers.Activation,
    keras3.DopedDense: legacy_layers.DopedDense, keras3.DKPLSTM: legacy_lstm.DKPLSTM,
}
_WRAPPERS = (keras.layers.Bidirectional, keras.layers.TimeDistributed)
SUPPORTED_LAYERS = sorted(cls.__name__ for cls in [*_TWIN_CLASSES, *_WRAPPERS])

# Config entries only Keras 3 has: the value at which the twin computes the same function
# (_ANY: every value, it only seeds or schedules training or picks a kernel).
_ANY = object()
_KERAS3_ONLY = {"seed": _ANY, "use_cudnn": _ANY, "lora_alpha": _ANY, "lora_rank": None,
                "quantization_config": None}
# Entries that only shape training: the twin gets the trained weights instead.
_TRAINING_ONLY = ("_initializer", "_regularizer", "_constraint")
_ACTIVATION_KEYS = ("activation", "recurrent_activation")
# Where each activation is compared between the two Kerases.
_ACTIVATION_GRID = np.linspace(-6.0, 6.0, 97, dtype=np.float32).reshape(1, -1)

KERAS3_CUSTOM_OBJECTS = {f"dkp_keras>{cls.__name__}": cls
                         for cls in (keras3.DopedDense, keras3.DKPLSTM, keras3.DKPLSTMCell)}


class UnsupportedKeras3ModelError(ValueError):
  """A Keras 3 model without a tf_keras twin; the message names the layer and why."""


def is_keras3_model(model):
  """Whether ``model`` is a Keras 3 model (not a tf_keras one)."""
  return isinstance(model, keras.Model)


def saved_by_keras3(path):
  """Whether the ``.keras`` / ``.h5`` file at ``path`` was saved by Keras 3."""
  version = saved_keras_version(path)
  return bool(version) and str(version).split(".")[0] == "3"


def load_keras3_model(path):
  """Loads a Keras 3 model file (DKP layers or not) with Keras 3, not compiled.

  Raises:
    ModelFileError: (a ValueError) Keras 3 cannot read it; the message says why.
  """
  try:
    model = keras.saving.load_model(path, compile=False, custom_objects=KERAS3_CUSTOM_OBJECTS)
  except Exception as error:  # Keras raises many types for a bad file
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    raise ModelFileError(f"{path} was saved by Keras 3 but Keras 3 cannot load it "
                         f"({type(error).__name__}: {first_line})") from error
  if not isinstance(model, keras.Model):
    raise ModelFileError(f"{path} holds a {type(model).__name__}, not a Keras model")
  return model


def tf_keras_twin(model):
  """The tf_keras model with the layers, names and weights of the Keras 3 ``model``.

  Args:
    model: a built Keras 3 `Sequential` or functional model, a chain of the
      layers `SUPPORTED_LAYERS` names (one input, one output, no branches).

  Returns:
    The `tf_keras.Model`; its outputs are the Keras 3 model's (the lowering and
    `pipelines.conversion` verify the converted file against ``model`` itself).

  Raises:
    UnsupportedKeras3ModelError: (a ValueError) the model is not such a chain,
      or a layer, argument or activation has no tf_keras equivalent.
  """
  if not model.inputs or len(model.inputs) != 1 or len(model.outputs) != 1:
    raise UnsupportedKeras3ModelError(
        f"model {model.name!r} has {len(model.inputs or [])} inputs and "
        f"{len(model.outputs or [])} outputs; only built models with one of each convert")
  chain = _chain(model)
  model_input = model.inputs[0]
  inputs = tf_keras.Input(batch_shape=tuple(model_input.shape), dtype=model_input.dtype,
                          name=_input_name(model))
  x = inputs
  twins = [_twin_layer(layer) for layer in chain]
  for twin in twins:
    x = twin(x)
  twin_model = tf_keras.Model(inputs, x, name=model.name)
  for layer, twin in zip(chain, twins):
    _copy_weights(layer, twin)
  return twin_model


def _input_name(model):
  input_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.InputLayer)]
  return input_layers[0].name if input_layers else None


def _chain(model):
  """The model's layers in order (no InputLayer), refused unless each follows the last."""
  layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
  if isinstance(model, keras.Sequential):
    return layers
  config = model.get_config()
  inputs = {entry[0] for entry in config["input_layers"]} if isinstance(
      config["input_layers"][0], list) else {config["input_layers"][0]}
  off_chain = traversal.first_layer_off_chain(
      config["layers"], inputs, lambda node: [history[0] for history in _tensor_histories(node)])
  if off_chain:
    raise UnsupportedKeras3ModelError(
        f"{off_chain}: only chains of layers (no branches, shared layers or extra tensor "
        f"arguments) can be converted")
  return layers


def _tensor_histories(node):
  """The ``keras_history`` of every tensor a serialized node passes (args and kwargs)."""
  if isinstance(node, dict):
    if node.get("class_name") == "__keras_tensor__":
      return [node["config"]["keras_history"]]
    return [h for value in node.values() for h in _tensor_histories(value)]
  if isinstance(node, (list, tuple)):
    return [h for value in node for h in _tensor_histories(value)]
  return []


def _twin_layer(layer):
  """The tf_keras twin of one Keras 3 layer (not built: weights are copied later)."""
  if type(layer) is keras.layers.Bidirectional:  # pylint: disable=unidiomatic-typecheck
    return tf_keras.layers.Bidirectional(
        _twin_layer(layer.forward_layer), backward_layer=_twin_layer(layer.backward_layer),
        merge_mode=layer.merge_mode, name=layer.name)
  if type(layer) is keras.layers.TimeDistributed:  # pylint: disable=unidiomatic-typecheck
    return tf_keras.layers.TimeDistributed(_twin_layer(layer.layer), name=layer.name)
  twin_class = _TWIN_CLASSES.get(type(layer))
  if twin_class is None:
    raise UnsupportedKeras3ModelError(
        f"layer {layer.name!r} ({type(layer).__name__}) is not supported for Keras 3 "
        f"conversion; supported layers: {', '.join(SUPPORTED_LAYERS)}")
  config = _twin_config(layer)
  try:
    return twin_class.from_config(config)
  except (TypeError, ValueError) as error:
    raise UnsupportedKeras3ModelError(
        f"layer {layer.name!r} ({type(layer).__name__}): tf_keras cannot build it from its "
        f"Keras 3 arguments ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
    ) from error


def _twin_config(layer):
  """The Keras 3 layer's config, as the tf_keras class reads it."""
  config = {}
  for key, value in layer.get_config().items():
    if key.endswith(_TRAINING_ONLY):
      continue
    if key in _KERAS3_ONLY:
      inert = _KERAS3_ONLY[key]
      if inert is not _ANY and value != inert:
        raise UnsupportedKeras3ModelError(
            f"layer {layer.name!r} ({type(layer).__name__}): {key}={value!r} has no tf_keras "
            f"equivalent; convert the model without it ({key}={inert!r})")
      continue
    if key == "dtype":
      value = _dtype_name(layer, value)
    elif key in _ACTIVATION_KEYS:
      _check_activation(layer, key, value)
    config[key] = value
  return config


def _dtype_name(layer, dtype):
  if isinstance(dtype, dict):
    if dtype.get("class_name") != "DTypePolicy":
      raise UnsupportedKeras3ModelError(
          f"layer {layer.name!r} ({type(layer).__name__}): dtype policy "
          f"{dtype.get('class_name')} (a quantized layer) has no tf_keras equivalent; convert "
          f"the float model and quantize with --quantize")
    return dtype["config"]["name"]
  return dtype


def _check_activation(layer, key, name):
  """Refuses an activation tf_keras lacks or defines differently (hard_sigmoid does)."""
  where = f"layer {layer.name!r} ({type(layer).__name__}): {key}={name!r}"
  if not isinstance(name, str):
    raise UnsupportedKeras3ModelError(f"{where} is not a built-in Keras activation; only "
                                      "those convert")
  try:
    legacy = tf_keras.activations.get(name)
  except ValueError:
    raise UnsupportedKeras3ModelError(f"{where} does not exist in tf_keras") from None
  ours = keras.ops.convert_to_numpy(keras.activations.get(name)(_ACTIVATION_GRID))
  theirs = np.asarray(legacy(tf_keras.backend.constant(_ACTIVATION_GRID)))
  if not np.allclose(ours, theirs, rtol=1e-5, atol=1e-6):
    raise UnsupportedKeras3ModelError(
        f"{where} computes another function in tf_keras (the two Kerases define it "
        f"differently); use another activation")


def _copy_weights(layer, twin):
  """Copies ``layer``'s weights into its built twin, after checking both have the same shapes.

  Wrappers layer by layer: tf_keras' `Bidirectional` lists all trainable weights first,
  Keras 3 each direction's in turn.
  """
  if isinstance(layer, keras.layers.Bidirectional):
    _copy_weights(layer.forward_layer, twin.forward_layer)
    _copy_weights(layer.backward_layer, twin.backward_layer)
    return
  if isinstance(layer, keras.layers.TimeDistributed):
    _copy_weights(layer.layer, twin.layer)
    return
  weights = [keras.ops.convert_to_numpy(w) for w in layer.weights]
  shapes = [tuple(w.shape) for w in weights]
  twin_shapes = [tuple(w.shape) for w in twin.weights]
  if shapes != twin_shapes:
    raise UnsupportedKeras3ModelError(
        f"layer {layer.name!r} ({type(layer).__name__}): its weights {shapes} do not match "
        f"its tf_keras twin's {twin_shapes}")
  twin.set_weights(weights)
