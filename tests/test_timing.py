"""Timing helpers: repetitions interleave across variants; medians per variant."""

import pytest

from tflite_ops import timing


def test_repetitions_interleave_across_variants():
  calls = []
  callables = {name: (lambda name=name: calls.append(name)) for name in ("dense", "dkp", "kp")}
  result = timing.interleaved_medians(callables, repeats=3, number=2, warmup=1)
  timed = calls[3:]                                     # after one warm-up call each
  blocks = [timed[i] for i in range(0, len(timed), 2)]  # first call of every block
  assert blocks == ["dense", "dkp", "kp"] * 3
  assert set(result) == {"dense", "dkp", "kp"}
  for stats in result.values():
    assert len(stats["samples_s"]) == 3
    assert stats["p10_s"] <= stats["median_s"] <= stats["p90_s"]


def test_bad_counts_are_rejected():
  with pytest.raises(ValueError, match="repeats"):
    timing.interleaved_medians({"a": lambda: None}, repeats=0)
