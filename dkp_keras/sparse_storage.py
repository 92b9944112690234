"""Sparse storage of mostly-zero arrays in a Keras weights store (pure numpy).

A `.keras` file (and a ``.weights.h5`` file) keeps each layer's variables
under their index in ``layer.weights`` order: ``store["0"]``, ``store["1"]``...
An array written sparse is kept instead in block compressed sparse rows (BSR)
under ``"<i>.bsr_values"``, ``"<i>.bsr_columns"``, ``"<i>.bsr_row_starts"``,
``"<i>.bsr_shape"`` and ``"<i>.bsr_block_shape"``, so a store says by its keys
which form each variable has, and stores holding only dense arrays (every file
written before sparse storage existed) read as before.

The BSR sees an array of any rank as a matrix (leading axes flattened into
rows, the last axis as columns; a scalar as 1x1), cut into ``block_shape``
blocks (zero-padded at the edges); it keeps the blocks with any bit set, each
with one column index. A block shape of (1, 1) is plain CSR. An entry counts as
zero only when all its bits are zero: ``-0.0`` and every NaN are kept, so
decoding gives back the same bits.
"""

from __future__ import annotations

import numpy as np

from dkp_keras import blocks

BSR_FIELDS = ("values", "columns", "row_starts", "shape", "block_shape")


def smallest_unsigned(max_value):
  """The narrowest unsigned numpy integer type that holds ``max_value``."""
  for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
    if max_value <= np.iinfo(dtype).max:
      return np.dtype(dtype)
  raise ValueError(f"{max_value} does not fit in 64 bits")


def _matrix_shape(shape):
  """(rows, columns) of an array of ``shape`` seen as a matrix."""
  if not shape:
    return 1, 1
  return int(np.prod(shape[:-1], dtype=np.int64)), int(shape[-1])


def _check_block_shape(block_shape):
  block_shape = tuple(int(b) for b in block_shape)
  if len(block_shape) != 2 or min(block_shape) < 1:
    raise ValueError(f"block_shape must be two positive integers, got {block_shape}")
  return block_shape


def bsr_encode(array, block_shape=(1, 1)):
  """The BSR fields (`BSR_FIELDS`) of ``array``, indices in the narrowest unsigned types.

  Args:
    array: a numpy array of any shape and dtype.
    block_shape: (rows, columns) of the blocks of the matrix view of ``array``.

  Returns:
    A dict: ``values`` (the kept blocks' entries, block by block in row-major
    block order, each block row-major; ``array``'s dtype), ``columns`` (each
    kept block's block-column index), ``row_starts`` (block rows + 1 offsets
    into the kept blocks), ``shape`` and ``block_shape`` (int64).
  """
  array = np.asarray(array)
  bh, bw = _check_block_shape(block_shape)
  view = blocks.block_view(array.reshape(_matrix_shape(array.shape)), (bh, bw))
  block_rows, _, block_columns, _ = view.shape
  grid = view.transpose(0, 2, 1, 3)
  # Bitwise: a block is kept when any byte of any entry is nonzero (-0.0, NaN too).
  kept = view.view(np.uint8).any(axis=(1, 3))
  _, kept_columns = np.nonzero(kept)
  row_starts = np.concatenate([[0], np.cumsum(kept.sum(axis=1, dtype=np.int64))])
  return {
      "values": grid[kept].reshape(-1),
      "columns": kept_columns.astype(smallest_unsigned(max(block_columns - 1, 0))),
      "row_starts": row_starts.astype(smallest_unsigned(int(row_starts[-1]))),
      "shape": np.asarray(array.shape, dtype=np.int64),
      "block_shape": np.asarray((bh, bw), dtype=np.int64),
  }


def bsr_decode(fields):
  """The array `bsr_encode` encoded, bit for bit; a clear error for inconsistent fields.

  Args:
    fields: a mapping with the `BSR_FIELDS` keys (array-likes).
  """
  values = np.asarray(fields["values"])
  columns = np.asarray(fields["columns"]).astype(np.int64)
  row_starts = np.asarray(fields["row_starts"]).astype(np.int64)
  shape = tuple(int(s) for s in np.asarray(fields["shape"], dtype=np.int64).reshape(-1))
  bh, bw = _check_block_shape(np.asarray(fields["block_shape"]).reshape(-1))
  rows, cols = _matrix_shape(shape)
  block_rows, block_columns = blocks.grid_shape((rows, cols), (bh, bw))
  problems = []
  if values.ndim != 1 or values.size != columns.size * bh * bw or columns.ndim != 1:
    problems.append(f"{values.size} values for {columns.size} blocks of {bh}x{bw}")
  if row_starts.shape != (block_rows + 1,):
    problems.append(f"{row_starts.size} row offsets for {block_rows} block rows")
  elif row_starts[0] != 0 or row_starts[-1] != columns.size or np.any(np.diff(row_starts) < 0):
    problems.append("row offsets that do not run from 0 up to the number of blocks")
  if columns.size and columns.max() >= block_columns:
    problems.append(f"a block column {columns.max()} beyond {block_columns}")
  if problems:
    raise ValueError(f"corrupt sparse array of shape {shape}: {'; '.join(problems)}; the "
                     f"file is damaged, save the model again")
  grid = np.zeros((block_rows, block_columns, bh, bw), dtype=values.dtype)
  block_row_of_each = np.repeat(np.arange(block_rows), np.diff(row_starts))
  grid[block_row_of_each, columns] = values.reshape(-1, bh, bw)
  matrix = blocks.from_block_view(grid.transpose(0, 2, 1, 3), (rows, cols))
  return np.ascontiguousarray(matrix).reshape(shape)


def bsr_nbytes(fields):
  """Bytes of data in the BSR fields (what a store holds besides its per-key overhead)."""
  return sum(np.asarray(fields[name]).nbytes for name in BSR_FIELDS)


def write_arrays(store, arrays, block_shapes):
  """Writes ``arrays`` into a weights store, each sparse when that holds fewer bytes.

  Args:
    store: a dict-like (a Keras weights store's h5 group, or a dict).
    arrays: numpy arrays, in the layer's variable order.
    block_shapes: one entry per array: None to store it dense, or the block
      shapes to try; the smallest encoding is written when its data is smaller
      than the dense array's, the dense array otherwise.
  """
  for index, (array, shapes) in enumerate(zip(arrays, block_shapes, strict=True)):
    array = np.asarray(array)
    encodings = [bsr_encode(array, block_shape) for block_shape in shapes or ()]
    smallest = min(encodings, key=bsr_nbytes, default=None)
    if smallest is not None and bsr_nbytes(smallest) < array.nbytes:
      for name in BSR_FIELDS:
        store[f"{index}.bsr_{name}"] = smallest[name]
    else:
      store[f"{index}"] = array


def read_arrays(store, count, owner):
  """The ``count`` arrays `write_arrays` (or Keras' own saving) wrote, dense or sparse.

  Args:
    store: the dict-like the arrays were written to.
    count: how many variables the reading layer has.
    owner: the reading layer's name, for error messages.
  """
  indices = {key.split(".", 1)[0] for key in store.keys()}
  if indices != {str(i) for i in range(count)}:
    raise ValueError(f"layer '{owner}' expected {count} variables, but the file holds "
                     f"{len(indices)} ({sorted(indices)}): it was saved from a different "
                     f"model; load it into the model it was saved from")
  arrays = []
  for index in range(count):
    if str(index) in store:
      arrays.append(np.asarray(store[str(index)]))
      continue
    missing = [name for name in BSR_FIELDS if f"{index}.bsr_{name}" not in store]
    if missing:
      raise ValueError(f"layer '{owner}': variable {index} is stored sparse but lacks "
                       f"{missing}; the file is damaged, save the model again")
    arrays.append(bsr_decode({name: store[f"{index}.bsr_{name}"] for name in BSR_FIELDS}))
  return arrays
