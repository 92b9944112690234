"""Helpers the layer tests share."""

import numpy as np


def randomize_doping(owner, scale=0.1, seed=0):
  """Gives every doping matrix S of a DKP layer or cell random values (S starts at zero)."""
  rng = np.random.default_rng(seed)
  for matrix in owner.doped_matrices.values():
    if matrix.doping is not None:
      matrix.doping.assign(rng.normal(0, scale, matrix.doping.shape))
