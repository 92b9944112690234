"""Sparse S in `.keras` files: bit-exact round trips, smaller files, old files still load."""

import io
import os
import zipfile

import h5py
import numpy as np
import pytest
import tf_keras as keras
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import dkp_keras as dkp
from dkp_keras import sparse_storage
from dkp_keras.doped_matrix import DopedLayerMixin
from dkp_keras.traversal import find_doped_owners

# --------------------------------------------------------------------------- pure numpy

DTYPES = {np.float16: np.uint16, np.float32: np.uint32, np.float64: np.uint64,
          np.int32: np.uint32, np.uint8: np.uint8}


@st.composite
def mostly_zero_arrays(draw):
  """Arrays with any bits (NaNs, infinities, -0.0...) where kept, all-zero bits elsewhere."""
  dtype = draw(st.sampled_from(sorted(DTYPES, key=str)))
  shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7))
  bits = draw(hnp.arrays(DTYPES[dtype], shape))
  kept = draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
  return np.where(kept, bits, 0).astype(DTYPES[dtype]).view(dtype)


@given(array=mostly_zero_arrays(), block_shape=st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_bsr_round_trip_is_bit_exact(array, block_shape):
  decoded = sparse_storage.bsr_decode(sparse_storage.bsr_encode(array, block_shape))
  assert decoded.dtype == array.dtype and decoded.shape == array.shape
  assert decoded.tobytes() == array.tobytes()


@given(array=mostly_zero_arrays(), block_shape=st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_store_round_trip_is_bit_exact_dense_or_sparse(array, block_shape):
  store = {}
  sparse_storage.write_arrays(store, [array, array], [None, [(1, 1), block_shape]])
  assert "0" in store  # not a candidate: dense, however sparse
  first, second = sparse_storage.read_arrays(store, 2, "layer")
  for decoded in (first, second):
    assert decoded.dtype == array.dtype and decoded.tobytes() == array.tobytes()


def test_negative_zero_and_nan_are_kept_as_entries():
  array = np.zeros((3, 5), np.float32)
  array[0, 1], array[2, 4] = -0.0, np.float32(np.nan)
  array.view(np.uint32)[1, 2] = 0x7f800001  # a signalling NaN
  fields = sparse_storage.bsr_encode(array)
  assert fields["values"].size == 3
  assert sparse_storage.bsr_decode(fields).tobytes() == array.tobytes()


def test_all_zero_is_stored_sparse_and_fully_dense_stays_dense():
  zeros = np.zeros((8, 16), np.float32)
  dense = np.arange(1, 129, dtype=np.float32).reshape(8, 16)
  store = {}
  sparse_storage.write_arrays(store, [zeros, dense], [[(1, 1)], [(1, 1), (4, 1)]])
  assert store["0.bsr_values"].size == 0 and "0" not in store
  assert "1" in store and not any(key.startswith("1.") for key in store)
  assert [a.tobytes() for a in sparse_storage.read_arrays(store, 2, "layer")] == [
      zeros.tobytes(), dense.tobytes()]


def test_blocks_take_one_index_each_and_win_when_s_is_block_sparse():
  rng = np.random.default_rng(0)
  kept_blocks = rng.random((4, 24)) < 0.1
  array = np.where(np.repeat(kept_blocks, 4, axis=0), rng.normal(size=(16, 24)), 0)
  array = array.astype(np.float32)
  by_block = sparse_storage.bsr_encode(array, (4, 1))
  by_entry = sparse_storage.bsr_encode(array, (1, 1))
  assert by_block["columns"].size == kept_blocks.sum() == by_entry["columns"].size // 4
  store = {}
  sparse_storage.write_arrays(store, [array], [[(1, 1), (4, 1)]])
  assert list(store["0.bsr_block_shape"]) == [4, 1]


@pytest.mark.parametrize("max_value, dtype", [
    (0, np.uint8), (255, np.uint8), (256, np.uint16), (65535, np.uint16), (65536, np.uint32),
    (2**32, np.uint64)])
def test_indices_take_the_narrowest_unsigned_type(max_value, dtype):
  assert sparse_storage.smallest_unsigned(max_value) == np.dtype(dtype)


@pytest.mark.parametrize("field, change", [
    ("row_starts", lambda a: a[:-1]),
    ("row_starts", lambda a: a[::-1].copy()),
    ("columns", lambda a: a + 100),
    ("values", lambda a: a[1:]),
])
def test_corrupt_fields_are_a_clear_error(field, change):
  array = np.zeros((6, 5), np.float32)
  array[1, 2], array[4, 0] = 1.0, 2.0
  fields = sparse_storage.bsr_encode(array)
  fields[field] = change(fields[field])
  with pytest.raises(ValueError, match="corrupt sparse array.*save the model again"):
    sparse_storage.bsr_decode(fields)


def test_wrong_variable_count_and_missing_fields_are_clear_errors():
  store = {}
  sparse_storage.write_arrays(store, [np.zeros(100, np.float32)], [[(1, 1)]])
  with pytest.raises(ValueError, match="expected 2 variables.*load it into the model it was"):
    sparse_storage.read_arrays(store, 2, "layer")
  del store["0.bsr_columns"]
  with pytest.raises(ValueError, match=r"variable 0 is stored sparse but lacks \['columns'\]"):
    sparse_storage.read_arrays(store, 1, "layer")


# --------------------------------------------------------------------------- layers and files


def small_model():
  inputs = keras.Input((None, 24))
  x = dkp.DKPLSTM(64, compression=8, return_sequences=True)(inputs)
  outputs = dkp.DopedDense(32, compression=8, block_size=(1, 1))(x)
  return keras.Model(inputs, outputs)


def anneal_by_hand(model, seed=0, negative_zeros=False):
  """S at its planned number of kept blocks, the rest zero (-0.0 where S was negative if asked,
  as tfmot's masking by multiplication leaves it)."""
  rng = np.random.default_rng(seed)
  for owner in find_doped_owners(model):
    for matrix in owner.doped_matrices.values():
      (bh, bw), (n, m) = matrix.plan.block_size, matrix.doping.shape
      blocks = (-(-n // bh), -(-m // bw))
      chosen = rng.permutation(blocks[0] * blocks[1]) < matrix.plan.doping_max_nnz // (bh * bw)
      mask = np.kron(chosen.reshape(blocks), np.ones((bh, bw), bool))[:n, :m]
      values = rng.normal(0, 0.1, (n, m)).astype(np.float32)
      matrix.doping.assign(values * mask if negative_zeros else np.where(mask, values, 0))
  return model


def stored_keys(path):
  """Every dataset name in a `.keras` file's weights."""
  names = []
  with zipfile.ZipFile(path) as archive:
    with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
      weights.visititems(lambda name, item: names.append(name)
                         if isinstance(item, h5py.Dataset) else None)
  return names


def assert_bit_exact(model, loaded, x):
  assert [w.dtype for w in loaded.get_weights()] == [w.dtype for w in model.get_weights()]
  assert [w.tobytes() for w in loaded.get_weights()] == [w.tobytes() for w in model.get_weights()]
  assert loaded(x).numpy().tobytes() == model(x).numpy().tobytes()


def inputs(seed=1):
  return np.random.default_rng(seed).normal(size=(2, 5, 24)).astype(np.float32)


def save_with_s_dense(model, path, monkeypatch):
  """Saves as dkp-keras did before sparse storage: Keras' own `save_own_variables`, S dense."""
  with monkeypatch.context() as patch:
    patch.setattr(DopedLayerMixin, "save_own_variables", keras.layers.Layer.save_own_variables)
    model.save(path)


def test_annealed_s_is_stored_sparse_and_round_trips_bit_exact(tmp_path):
  model = anneal_by_hand(small_model())
  path = str(tmp_path / "model.keras")
  model.save(path)
  keys = stored_keys(path)
  # Both S of the LSTM cell in (4, 1) blocks, the Dense's S (block (1, 1)) by entry.
  assert sorted(k.rsplit("/", 2)[0] for k in keys if k.endswith(".bsr_values")) == [
      "layers/dkplstm/cell", "layers/dkplstm/cell", "layers/doped_dense"]
  assert_bit_exact(model, keras.models.load_model(path), inputs())


def test_sparse_file_is_smaller_by_the_bytes_the_encoding_saves(tmp_path, monkeypatch):
  model = anneal_by_hand(small_model())
  sparse_path, dense_path = str(tmp_path / "sparse.keras"), str(tmp_path / "dense.keras")
  model.save(sparse_path)
  save_with_s_dense(model, dense_path, monkeypatch)
  saved = 0
  for owner in find_doped_owners(model):
    for doping in owner.get_prunable_weights():
      s = doping.numpy()
      encoded = min(sparse_storage.bsr_nbytes(sparse_storage.bsr_encode(s, block))
                    for block in {(1, 1), owner.block_size})
      saved += s.nbytes - encoded
  extra_keys = len(stored_keys(sparse_path)) - len(stored_keys(dense_path))
  dense_size, sparse_size = os.path.getsize(dense_path), os.path.getsize(sparse_path)
  # The file shrinks by the data the encoding saves, less HDF5's cost of the extra keys.
  expected_ratio = dense_size / (dense_size - saved + 1024 * extra_keys)
  assert expected_ratio > 2
  assert expected_ratio <= dense_size / sparse_size <= dense_size / (dense_size - saved)
  assert_bit_exact(model, keras.models.load_model(sparse_path), inputs())


def test_files_saved_with_s_dense_still_load_bit_exact(tmp_path, monkeypatch):
  model = anneal_by_hand(small_model())
  path = str(tmp_path / "old.keras")
  save_with_s_dense(model, path, monkeypatch)
  assert not any(".bsr_" in key for key in stored_keys(path))
  assert_bit_exact(model, keras.models.load_model(path), inputs())


def test_s_not_sparse_enough_stays_dense(tmp_path):
  model = small_model()
  rng = np.random.default_rng(0)
  for owner in find_doped_owners(model):
    for doping in owner.get_prunable_weights():
      doping.assign(rng.normal(size=doping.shape))
  path = str(tmp_path / "model.keras")
  model.save(path)
  assert not any(".bsr_" in key for key in stored_keys(path))
  assert_bit_exact(model, keras.models.load_model(path), inputs())


def test_negative_zeros_and_nan_round_trip_bit_exact_and_can_be_cleared(tmp_path):
  model = anneal_by_hand(small_model(), negative_zeros=True)
  dense = model.layers[-1]
  s = dense.matrix.doping.numpy()
  s[0, 0] = np.nan
  dense.matrix.doping.assign(s)
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert [w.tobytes() for w in loaded.get_weights()] == [w.tobytes() for w in model.get_weights()]

  before = {d.name: d.numpy() for o in find_doped_owners(model) for d in o.get_prunable_weights()}
  assert any(np.any((v == 0) & np.signbit(v)) for v in before.values())
  for layer in model.layers[1:]:  # DKPLSTM (through its cell) and DopedDense
    layer.clear_negative_zeros()
  for owner in find_doped_owners(model):
    for doping in owner.get_prunable_weights():
      after, old = doping.numpy(), before[doping.name]
      assert not np.any((after == 0) & np.signbit(after))
      changed = after.view(np.uint32) != old.view(np.uint32)
      assert np.all(old[changed] == 0) and np.all(np.signbit(old[changed]))
  cleared = str(tmp_path / "cleared.keras")
  model.save(cleared)
  assert os.path.getsize(cleared) < os.path.getsize(path)


def test_weights_files_are_sparse_and_legacy_h5_stays_dense(tmp_path):
  model = anneal_by_hand(small_model())
  weights = str(tmp_path / "model.weights.h5")
  model.save_weights(weights)
  with h5py.File(weights, "r") as store:
    names = []
    store.visit(names.append)
  assert any(".bsr_values" in name for name in names)
  fresh = small_model()
  fresh.load_weights(weights)
  assert_bit_exact(model, fresh, inputs())

  legacy = str(tmp_path / "model.h5")
  model.save(legacy)
  assert_bit_exact(model, keras.models.load_model(legacy), inputs())


def test_a_variable_of_another_shape_is_a_clear_error():
  model = small_model()
  layer = model.layers[-1]
  store = {}
  layer.save_own_variables(store)
  store["0"] = np.zeros((3, 3), np.float32)
  with pytest.raises(ValueError, match="with shape \\(3, 3\\).*rebuild the model"):
    layer.load_own_variables(store)
