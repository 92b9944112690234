"""Model traversal: nested DKP layers are found, chains are told from other graphs."""

import pytest
import tf_keras as keras

import dkp_keras as dkp
from dkp_keras import traversal


def wrapped_model():
  inputs = keras.Input((5, 8))
  x = keras.layers.Bidirectional(dkp.DKPLSTM(4, compression=1.5, return_sequences=True),
                                 name="both_ways")(inputs)
  x = keras.layers.TimeDistributed(dkp.DopedDense(6, compression=1.5), name="per_step")(x)
  x = keras.layers.Dense(3, name="plain")(x)
  return keras.Model(inputs, x)


def test_doped_owners_are_found_inside_wrappers_and_rnns():
  model = wrapped_model()
  owners = traversal.find_doped_owners(model)
  assert sorted(type(o).__name__ for o in owners) == ["DKPLSTMCell", "DKPLSTMCell",
                                                      "DopedDense"]
  per_layer = {layer.name: len(found) for layer, found in traversal.doped_layers(model)}
  assert per_layer == {"both_ways": 2, "per_step": 1}


def test_undoped_layers_are_not_owners():
  inputs = keras.Input((8,))
  model = keras.Model(inputs, dkp.DopedDense(6, compression=1.5, doped=False)(inputs))
  assert traversal.find_doped_owners(model) == []
  assert traversal.doped_layers(model) == []


def test_pruning_wrappers_are_found_only_after_preparing():
  model = wrapped_model()
  assert traversal.pruning_wrappers(model) == []
  annealed = dkp.prepare_for_annealing(model, end_step=4)
  assert sorted(w.layer.name for w in traversal.pruning_wrappers(annealed)) == [
      "both_ways", "per_step"]


def test_chains_give_their_layers_in_order():
  model = wrapped_model()
  assert [layer.name for layer in traversal.chain_layers(model)] == [
      "both_ways", "per_step", "plain"]
  sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"),
                                 keras.layers.Dense(2, name="b")])
  assert [layer.name for layer in traversal.chain_layers(sequential)] == ["a", "b"]


def test_branches_shared_layers_and_several_outputs_are_not_chains():
  inputs = keras.Input((3,))
  left = keras.layers.Dense(3, name="left")(inputs)
  joined = keras.layers.Add(name="join")([left, inputs])
  with pytest.raises(traversal.NotAChainError, match="'join'.*can be compressed"):
    traversal.chain_layers(keras.Model(inputs, joined), "compressed")
  shared = keras.layers.Dense(3, name="shared")
  twice = keras.Model(inputs, shared(shared(inputs)))
  with pytest.raises(ValueError, match="'shared'"):
    traversal.chain_layers(twice)
  with pytest.raises(ValueError, match="2 outputs"):
    traversal.chain_layers(keras.Model(inputs, [left, joined]))
  with pytest.raises(ValueError, match="tf_keras Model"):
    traversal.chain_layers(keras.layers.Dense(2))
