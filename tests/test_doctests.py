"""`python -m pytest` from the repository root runs every package's docstring examples too."""

import configparser
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pytest_configuration_collects_every_packages_doctests():
  config = configparser.ConfigParser()
  config.read(os.path.join(ROOT, "setup.cfg"))
  pytest_section = config["tool:pytest"]
  assert {"dkp_keras", "tflite_ops", "pipelines", "benchmarks"} <= set(pytest_section["testpaths"].split())
  assert "--doctest-modules" in pytest_section["addopts"].split()
