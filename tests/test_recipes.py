"""`benchmarks.recipes`: the named variants train exactly as the methods they replaced."""

import dataclasses
import glob
import os

import pandas as pd
import pytest

from benchmarks import accuracy
from benchmarks import recipes
from pipelines import models
from pipelines import presets
from pipelines import training

RESULTS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "results")
RECIPE = presets.Recipe("t", layers=1, units=24, embedding=12, num_steps=5, batch_size=4)

# Extracted from `pipelines.models.METHODS` before the variants became recipes (the same for
# every preset): name -> (CMR callback, recipe fields the method changed, the DKPLSTM's
# (structure, doped, block_size, cmr_granularity, structure_fraction, cmr_scaling), bits).
BEFORE = {
    "dense": (False, {}, None, None),
    "small-dense": (False, {}, None, None),
    "prune": (False, {}, None, None),
    "int8": (False, {}, None, 8),
    "int4": (False, {}, None, 4),
    "kp": (False, {}, ("kronecker", False, (4, 1), "row", 0.5, "none"), None),
    "lmf": (False, {}, ("lowrank", False, (4, 1), "row", 0.5, "none"), None),
    "hmd": (False, {}, ("hmd", False, (4, 1), "row", 0.5, "none"), None),
    "doped-lmf": (False, {}, ("lowrank", True, (4, 1), "row", 0.5, "none"), None),
    "doped-hmd": (False, {}, ("hmd", True, (4, 1), "row", 0.5, "none"), None),
    "dkp-nocmr": (False, {}, ("kronecker", True, (4, 1), "row", 0.5, "none"), None),
    "dkp": (True, {"cmr": 0.8}, ("kronecker", True, (4, 1), "row", 0.5, "none"), None),
    "dkp-cmr-matrix-0.5": (True, {}, ("kronecker", True, (4, 1), "matrix", 0.5, "none"), None),
    "dkp-cmr-row": (True, {}, ("kronecker", True, (4, 1), "row", 0.5, "none"), None),
    "dkp-cmr-block": (True, {}, ("kronecker", True, (4, 1), "block", 0.5, "none"), None),
    "dkp-1x1": (True, {}, ("kronecker", True, (1, 1), "matrix", 0.5, "none"), None),
    "dkp-anneal-30": (True, {"anneal_end": 0.3},
                      ("kronecker", True, (4, 1), "matrix", 0.5, "none"), None),
    "dkp-anneal-90": (True, {"anneal_end": 0.9},
                      ("kronecker", True, (4, 1), "matrix", 0.5, "none"), None),
    "dkp-cmr-cosine": (True, {"cmr_decay": "cosine"},
                       ("kronecker", True, (4, 1), "matrix", 0.5, "none"), None),
    "dkp-cmr-0.8": (True, {"cmr": 0.8}, ("kronecker", True, (4, 1), "matrix", 0.5, "none"), None),
    "dkp-cmr-row-0.8": (True, {"cmr": 0.8}, ("kronecker", True, (4, 1), "row", 0.5, "none"),
                        None),
    "dkp-cmr-row-0.9": (True, {"cmr": 0.9}, ("kronecker", True, (4, 1), "row", 0.5, "none"),
                        None),
    "dkp-1x1-cmr-row-0.8": (True, {"cmr": 0.8}, ("kronecker", True, (1, 1), "row", 0.5, "none"),
                            None),
    "dkp-cmr-row-0.8-early-1x1": (True, {"block_switch": 0.3, "cmr": 0.8},
                                  ("kronecker", True, (4, 1), "row", 0.5, "none"), None),
    "dkp-cmr-row-0.8-max": (True, {"block_pooling": "MAX", "cmr": 0.8},
                            ("kronecker", True, (4, 1), "row", 0.5, "none"), None),
    "dkp-cmr-row-0.8-anneal-30": (True, {"anneal_end": 0.3, "cmr": 0.8},
                                  ("kronecker", True, (4, 1), "row", 0.5, "none"), None),
}


def _cmr_schedule(uses_cmr, recipe):
  """(rate, decay) of the CMR callback, or None: what reaches the callback."""
  return (recipe.cmr, recipe.cmr_decay) if uses_cmr and recipe.cmr > 0 else None


def _changes(recipe, preset):
  return {k: v for k, v in dataclasses.asdict(recipe).items()
          if dataclasses.asdict(preset)[k] != v}


def test_every_method_and_recipe_trains_as_before():
  assert sorted(recipes.names()) == sorted(BEFORE)
  for name, (cmr, changes, layer, bits) in BEFORE.items():
    method = recipes.get_method(name)
    assert method.name == name and method.bits == bits
    for preset in presets.PRESETS.values():
      before = preset.replace(**changes)
      after = method.adapt(preset)
      callback = training.co_matrix_dropout(method, after)
      schedule = None if callback is None else (callback.rate, callback.decay)
      assert schedule == _cmr_schedule(cmr, before), name
      if schedule is None:  # without CMR its rate is never read
        after = after.replace(cmr=before.cmr)
      assert after == before, name
    if layer is None:
      assert method.structure is None
      continue
    cfg = models.build_lm(50, RECIPE, method, 4.0, stateful=False).get_layer("lstm_0").get_config()
    assert (cfg["structure"], cfg["doped"], tuple(cfg["block_size"]), cfg["cmr_granularity"],
            cfg["structure_fraction"], cfg["cmr_scaling"]) == layer, name


def test_recorded_fingerprints_stay():
  # The committed results resume only while their preset's fingerprint stays.
  assert accuracy.recipe_id(presets.get_preset("ptb-small")) == "8fca551b3b"
  small = presets.get_preset("ptb-small")
  for change in ({"block_pooling": "MAX"}, {"precondition_factors": True}, {"cmr": 0.8}):
    assert accuracy.recipe_id(small.replace(**change)) != "8fca551b3b"


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(RESULTS, "*_small*.csv"))))
def test_every_recorded_method_is_known(path):
  for name in set(pd.read_csv(path)["method"]):
    assert recipes.get_method(name).name == name


def test_unknown_recipe():
  with pytest.raises(ValueError, match="unknown method 'dkp-magic'; choose one of .*dkp-nocmr"):
    recipes.get_method("dkp-magic")
