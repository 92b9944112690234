"""Every product CLI: each flag has a help line, and --help shows every default."""

import argparse

import pytest

from pipelines import compress, convert, quickstart, run, train

PARSERS = {"train": train.build_parser, "convert": convert.build_parser,
           "compress": compress.build_parser, "run": run.build_parser,
           "quickstart": quickstart.build_parser}


# pylint: disable=protected-access
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_flag_has_help_and_every_default_is_shown(name):
  parser = PARSERS[name]()
  formatter = parser._get_formatter()
  for action in parser._actions:
    if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
      continue
    flag = (action.option_strings or [action.dest])[-1]
    assert action.help, f"{name}: {flag} has no help line"
    if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
      shown = formatter._expand_help(action)
      assert "default" in shown and str(action.default) in shown, \
          f"{name}: {flag}'s default {action.default!r} is not shown: {shown!r}"
