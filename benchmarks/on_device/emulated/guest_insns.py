"""Invokes one .tflite model a given number of times, for an instruction count (numpy + LiteRT).

Runs inside the arm64 root under qemu-user with the ``insn`` plugin
(`benchmarks.arm64_insns` starts it twice per model and setting: with
``--invokes N`` and with ``--invokes 0``; the difference over N is one
invoke's instructions). Both runs load the model, allocate its tensors, set
every input once to the same seeded random values (not zeros: LiteRT's hybrid int8 kernels
skip an all-zero input vector, so zeros would count less than a real step's work; integer
inputs, token ids, are 0, a valid id whatever the vocabulary) and make
``--warmup`` untimed invokes (the first one prepares kernels, and XNNPack packs
weights), so that the difference holds the invokes alone.

    python3 guest_insns.py --model models/dkp_25x_step.tflite --xnnpack on --invokes 20
"""

import argparse
import gc
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guest_outputs import interpreter_for  # noqa: E402  pylint: disable=wrong-import-position


def run(model, xnnpack, invokes, warmup, maps=None):
  """Loads ``model``, sets its inputs, invokes it ``warmup + invokes`` times; with
  ``maps``, copies the process's memory map there (to place a profile's addresses)."""
  interpreter = interpreter_for(model, xnnpack)
  rng = np.random.default_rng(0)
  for detail in interpreter.get_input_details():
    values = rng.normal(scale=0.5, size=detail["shape"])
    if np.issubdtype(detail["dtype"], np.integer):  # token ids: a rounded normal may be < 0
      values = np.zeros(detail["shape"])
    interpreter.set_tensor(detail["index"], values.astype(detail["dtype"]))
  invoke = interpreter.invoke
  gc.disable()  # a collection would land in some counts and not others
  for _ in range(warmup + invokes):
    invoke()
  if maps:
    with open("/proc/self/maps", encoding="utf-8") as source, \
        open(maps, "w", encoding="utf-8") as target:
      target.write(source.read())


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--model", required=True)
  parser.add_argument("--xnnpack", choices=("on", "off"), required=True)
  parser.add_argument("--invokes", type=int, required=True, help="counted invokes (0: none)")
  parser.add_argument("--warmup", type=int, default=1, help="invokes before the counted ones")
  parser.add_argument("--maps", help="write the process's memory map to this file at the end")
  args = parser.parse_args(argv)
  if args.invokes < 0 or args.warmup < 0:
    parser.error("--invokes and --warmup must be >= 0")
  run(args.model, args.xnnpack == "on", args.invokes, args.warmup, args.maps)


if __name__ == "__main__":
  main()
