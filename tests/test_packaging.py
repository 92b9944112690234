"""The install brings one TensorFlow distribution: the one tf-keras itself requires."""

import importlib.metadata
import os
import re

from setuptools.config.setupcfg import read_configuration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TENSORFLOW_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly"}


def _names(requirements):
  return [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower().replace("_", "-")
          for r in requirements]


def test_one_tensorflow_distribution_is_required_the_one_tf_keras_needs():
  required = _names(read_configuration(os.path.join(ROOT, "setup.cfg"))
                    ["options"]["install_requires"])
  tensorflows = [name for name in required if name in TENSORFLOW_DISTRIBUTIONS]
  assert tensorflows == ["tensorflow"]
  # tf-keras pulls `tensorflow` whatever else we ask for: any other one would be a second copy.
  assert "tensorflow" in _names(importlib.metadata.requires("tf-keras") or [])
