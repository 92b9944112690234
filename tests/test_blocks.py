"""The block grid of S: padding, scores, counting and magnitude pruning in blocks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dkp_keras import blocks

SHAPES = st.tuples(st.integers(1, 9), st.integers(1, 9))
BLOCKS = st.sampled_from([(1, 1), (4, 1), (1, 4), (2, 2), (3, 2)])


def matrices(shape):
  return hnp.arrays(np.float64, shape, elements=st.floats(-4, 4, allow_nan=False, width=32))


@settings(deadline=None, max_examples=60)
@given(st.data(), SHAPES, BLOCKS)
def test_block_view_pads_with_zeros_and_keeps_entries(data, shape, block_size):
  matrix = data.draw(matrices(shape))
  view = blocks.block_view(matrix, block_size)
  rows, cols = blocks.grid_shape(shape, block_size)
  assert view.shape == (rows, block_size[0], cols, block_size[1])
  flat = view.reshape(rows * block_size[0], cols * block_size[1])
  np.testing.assert_array_equal(flat[:shape[0], :shape[1]], matrix)
  assert np.count_nonzero(flat) == np.count_nonzero(matrix)


@settings(deadline=None, max_examples=60)
@given(st.data(), SHAPES, BLOCKS, st.sampled_from(blocks.POOLINGS))
def test_keep_top_blocks_keeps_exactly_the_best_blocks(data, shape, block_size, pooling):
  matrix = data.draw(matrices(shape))
  rows, cols = blocks.grid_shape(shape, block_size)
  keep = data.draw(st.integers(0, rows * cols))
  kept = blocks.keep_top_blocks(matrix, keep, block_size, pooling)
  # Entries are either kept as they were or zeroed, and at most `keep` blocks survive.
  assert np.all((kept == matrix) | (kept == 0))
  assert blocks.kept_blocks(kept, block_size) <= keep
  scores = blocks.block_scores(matrix, block_size, pooling)
  kept_mask = blocks.block_view(kept != 0, block_size).any(axis=(1, 3))
  whole = blocks.expand_blocks(np.ones_like(kept_mask), block_size, shape)
  assert whole.shape == matrix.shape
  if keep and kept_mask.any():
    # No dropped block with a nonzero scores above a kept one.
    dropped = ~kept_mask & (scores > 0)
    if dropped.any():
      assert scores[dropped].max() <= scores[kept_mask].min()
  # top_blocks_mask is the mask applied: exactly `keep` blocks, zero ones included (the
  # Keras 3 annealing's masks keep a block whose entries are zero now).
  mask = blocks.top_blocks_mask(matrix, keep, block_size, pooling)
  assert mask.dtype == bool and mask.shape == matrix.shape
  assert int(blocks.block_view(mask, block_size).any(axis=(1, 3)).sum()) == keep
  np.testing.assert_array_equal(np.where(mask, matrix, 0.0), kept)


def test_kept_block_count_rounds_the_kept_share_of_the_grid():
  assert blocks.kept_block_count((10, 3), (4, 1), 0.5) == 4  # 9 blocks: 4.5 rounds to 4
  assert blocks.kept_block_count((10, 3), (4, 1), 0.0) == 9
  assert blocks.kept_block_count((10, 3), (4, 1), 1.0) == 0


def test_kept_blocks_and_scores_small_example():
  kernel = np.array([[0., 1.], [0., 3.], [-4., 0.], [0., 0.], [0., 0.]])
  assert blocks.kept_blocks(kernel, (2, 1)) == 2
  np.testing.assert_allclose(blocks.block_scores(kernel, (2, 1), "AVG"),
                             [[0., 2.], [2., 0.], [0., 0.]])
  np.testing.assert_allclose(blocks.block_scores(kernel, (2, 1), "MAX"),
                             [[0., 3.], [4., 0.], [0., 0.]])
  assert blocks.keep_top_blocks(kernel, 1, (2, 1), "MAX").tolist() == [
      [0., 0.], [0., 0.], [-4., 0.], [0., 0.], [0., 0.]]


def test_rejects_unknown_pooling_and_impossible_counts():
  with pytest.raises(ValueError, match="block pooling"):
    blocks.block_scores(np.ones((2, 2)), (1, 1), "SUM")
  with pytest.raises(ValueError, match="keep must be in"):
    blocks.keep_top_blocks(np.ones((2, 2)), 5, (1, 1))


@settings(deadline=None, max_examples=60)
@given(st.data(), SHAPES, BLOCKS)
def test_from_block_view_undoes_block_view(data, shape, block_size):
  matrix = data.draw(matrices(shape))
  view = blocks.block_view(matrix, block_size)
  np.testing.assert_array_equal(blocks.from_block_view(view, shape), matrix)
  padded = blocks.pad_to_blocks(matrix, block_size)
  assert padded.shape == blocks.padded_shape(shape, block_size)
  assert all(size % block == 0 for size, block in zip(padded.shape, block_size))
  assert all(0 <= p - s < b for p, s, b in zip(padded.shape, shape, block_size))


@settings(deadline=None, max_examples=30)
@given(SHAPES, BLOCKS)
def test_expand_blocks_gives_the_same_mask_in_numpy_and_tensorflow(shape, block_size):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (only this test needs TF)
  grid = np.arange(np.prod(blocks.grid_shape(shape, block_size))).reshape(
      blocks.grid_shape(shape, block_size))
  expanded = blocks.expand_blocks(grid, block_size, shape)
  assert expanded.shape == shape
  np.testing.assert_array_equal(
      blocks.expand_blocks(tf.constant(grid), block_size, shape, ops=tf).numpy(), expanded)
  # Each entry carries its own block's value.
  rows, cols = np.indices(shape)
  np.testing.assert_array_equal(expanded, grid[rows // block_size[0], cols // block_size[1]])
