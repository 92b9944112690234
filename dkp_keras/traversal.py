"""Walking a model: its layers, nested ones included, and the DKP layers among them.

A DKP layer may sit inside a Keras wrapper (`Bidirectional`,
`TimeDistributed`), an `RNN` (a `DKPLSTMCell`) or a tfmot pruning wrapper;
these functions see through all of them, so annealing, CMR, the accounting and
the training pipeline find the same layers.
"""

from __future__ import annotations

import tf_keras as keras

from dkp_keras import compat
from dkp_keras.doped_layer_base import doped_owners


class NotAChainError(ValueError):
  """The model is not a chain of layers; the message names the layer that breaks it."""


def all_layers(model):
  """Every layer in ``model``, nested ones included (wrapped layers, RNN cells)."""
  return compat.flatten_layers(model)


def find_doped_owners(model):
  """Every built DKP layer or cell with doping in ``model`` (also inside wrappers and RNNs)."""
  return doped_owners(all_layers(model))


def doped_layers(model):
  """(layer, its doped owners) for every top-level layer of ``model`` that holds a doped S."""
  return [(layer, owners) for layer in model.layers if (owners := find_doped_owners(layer))]


def pruning_wrappers(model):
  """Every tfmot pruning wrapper in ``model`` (nested ones included)."""
  return [m for m in all_layers(model) if isinstance(m, compat.PruneLowMagnitude)]


def chain_layers(model, purpose="lowered"):
  """The layers of ``model`` in order, checking it is a chain of layers.

  A chain has one input and one output, and each layer is called once, on the
  output of the layer before it (no branches, joins or shared layers).

  Args:
    model: a tf_keras `Sequential` or functional model.
    purpose: what the caller does with a chain (``"lowered"``, ``"compressed"``),
      for the error message.

  Raises:
    NotAChainError: (a ValueError) naming the layer that breaks the chain.

  >>> inputs = keras.Input((3,))
  >>> model = keras.Model(inputs, keras.layers.Dense(2, name="out")(inputs))
  >>> [layer.name for layer in chain_layers(model)]
  ['out']
  """
  if not isinstance(model, keras.Model):
    raise NotAChainError(f"expected a tf_keras Model, got {type(model).__name__}")
  if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
    raise NotAChainError(
        f"model {model.name!r} has {len(model.inputs or [])} inputs and "
        f"{len(model.outputs or [])} outputs; only models with one of each can be {purpose}")
  layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
  if not isinstance(model, keras.Sequential):
    # The model's own config lists each layer's inputs in this model (a layer
    # object may also sit in other models, e.g. after annealing's clones).
    config = model.get_config()
    inputs = {entry[0] for entry in config["input_layers"]}
    off_chain = first_layer_off_chain(
        config["layers"], inputs, lambda node: [inbound[0] for inbound in node])
    if off_chain:
      raise NotAChainError(f"{off_chain}: only chains of layers (no branches or shared layers) "
                           f"can be {purpose}")
  return layers


def first_layer_off_chain(entries, inputs, node_sources):
  """Says which layer of a serialized functional model does not follow the one before, if any.

  Works on a model config (Keras 2 or Keras 3: ``node_sources`` reads its node format), so
  the check is the same for both front ends.

  Args:
    entries: the config's ``layers``, in order.
    inputs: the names of the model's input layers.
    node_sources: one inbound node -> the names of the layers it reads.

  Returns:
    ``"layer 'x' does not simply follow ..."`` for the first layer with other than one node
    reading exactly the layer before it (the inputs for the first), else None.
  """
  previous = None
  for entry in entries:
    if entry["name"] in inputs:
      continue
    nodes = entry["inbound_nodes"]
    sources = [source for node in nodes for source in node_sources(node)]
    expected = sorted(inputs) if previous is None else [previous]
    if len(nodes) != 1 or sources != expected:
      return (f"layer {entry['name']!r} does not simply follow "
              f"{'the input' if previous is None else repr(previous)}")
    previous = entry["name"]
  return None
