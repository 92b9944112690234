"""Shared test setup: Keras 2 everywhere, quiet TensorFlow, deterministic seeds."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# TF calls are slow to trace the first time: no per-example deadline.
settings.register_profile("dkp", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("dkp")


@pytest.fixture(autouse=True)
def _seed():
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(0)
  yield
  keras.backend.clear_session()
