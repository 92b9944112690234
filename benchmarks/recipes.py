"""Named variants of the product methods that the accuracy benchmark studies.

Each recipe is a base method of `pipelines.models.METHODS` with DKP options
(`pipelines.models.DKP_OPTIONS`) set; ``benchmarks.accuracy --methods`` takes
these names beside the product methods, and records rows (and run directories)
under them. The names are those of earlier rows in ``benchmarks/results``: a
recipe's options never change (a new variant gets a new name), or those rows
would stop describing what they measured.

Most vary the earlier default of ``dkp`` (whole-matrix CMR from the presets'
rate, 0.5): CMR per output row or per block of S, 1x1 blocks for S, the
annealing window, the CMR decay and rate; the rest vary today's default (row
CMR from 0.8): its rate, 1x1 blocks, S annealed in 1x1 blocks before its own,
blocks of S scored by their largest entry, a shorter annealing window.
"""

from __future__ import annotations

import dataclasses

from pipelines import models

# name -> (base method, DKP options). Every option is spelled out, also where it
# equals the base method's default, so that a recipe reads alone.
RECIPES = {
    "dkp-nocmr": ("dkp", {"cmr": 0.0}),
    "dkp-cmr-matrix-0.5": ("dkp", {"cmr_granularity": "matrix", "cmr": 0.5}),
    "dkp-cmr-row": ("dkp", {"cmr_granularity": "row", "cmr": 0.5}),
    "dkp-cmr-block": ("dkp", {"cmr_granularity": "block", "cmr": 0.5}),
    "dkp-1x1": ("dkp", {"block_size": (1, 1), "cmr_granularity": "matrix", "cmr": 0.5}),
    "dkp-anneal-30": ("dkp", {"cmr_granularity": "matrix", "cmr": 0.5, "anneal_end": 0.3}),
    "dkp-anneal-90": ("dkp", {"cmr_granularity": "matrix", "cmr": 0.5, "anneal_end": 0.9}),
    "dkp-cmr-cosine": ("dkp", {"cmr_granularity": "matrix", "cmr": 0.5,
                               "cmr_decay": "cosine"}),
    "dkp-cmr-0.8": ("dkp", {"cmr_granularity": "matrix", "cmr": 0.8}),
    "dkp-cmr-row-0.8": ("dkp", {"cmr_granularity": "row", "cmr": 0.8}),
    "dkp-cmr-row-0.9": ("dkp", {"cmr_granularity": "row", "cmr": 0.9}),
    "dkp-1x1-cmr-row-0.8": ("dkp", {"block_size": (1, 1), "cmr_granularity": "row",
                                    "cmr": 0.8}),
    # S annealed entry by entry until 30% of the steps, then in the layers' 1x4 blocks
    # (it deploys as 1x4).
    "dkp-cmr-row-0.8-early-1x1": ("dkp", {"cmr_granularity": "row", "cmr": 0.8,
                                          "block_switch": 0.3}),
    "dkp-cmr-row-0.8-max": ("dkp", {"cmr_granularity": "row", "cmr": 0.8,
                                    "block_pooling": "MAX"}),
    # A longer fine-tune with S's mask fixed: annealed over 30% of the steps, not 60%.
    "dkp-cmr-row-0.8-anneal-30": ("dkp", {"cmr_granularity": "row", "cmr": 0.8,
                                          "anneal_end": 0.3}),
}


def names():
  """Every name `get_method` takes: the product methods, then the recipes."""
  return list(models.METHODS) + list(RECIPES)


def get_method(name):
  """The `models.Method` called ``name``: a product method, or a recipe named after itself.

  Args:
    name: a product method (``dkp``) or a recipe of `RECIPES` (``dkp-anneal-30``).
  """
  if name in models.METHODS:
    return models.METHODS[name]
  if name not in RECIPES:
    raise ValueError(f"unknown method {name!r}; choose one of {names()}")
  base, options = RECIPES[name]
  return dataclasses.replace(models.get_method(base).with_options(**options), name=name)
