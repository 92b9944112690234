"""Size of the `.keras` checkpoint: the DKP LSTM stack against the dense one.

The stack is ``layers`` x LSTM(units, return_sequences=True) over
(batch, time, units) inputs, built as in `benchmarks.latency` (no embedding or
softmax): dense Keras `LSTM` layers, and `DKPLSTM` at each compression with S
in 1x4 and in 1x1 blocks, annealed to its target (`latency.anneal_cheaply`,
which ends with `dkp.finalize`). Each is saved as `.keras`; reported per
model: the file's bytes, the dense file's bytes / this one's, and whether
loading it back gives the same weights and outputs bit for bit.

    python -m benchmarks.checkpoint_size            # 2x650 at 25x and 50x
    python -m benchmarks.checkpoint_size --quick    # tiny smoke configuration
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from benchmarks import common  # imports dkp_keras first
from benchmarks import latency

import tf_keras as keras  # noqa: E402  pylint: disable=wrong-import-order

DEFAULTS = {"units": 650, "layers": 2, "compressions": [25.0, 50.0]}
QUICK = {"units": 32, "layers": 1, "compressions": [4.0]}
STRUCTURES = ("dkp", "dkp-1x1")


def _bit_exact(model, path, units):
  loaded = keras.models.load_model(path)
  x = np.random.default_rng(0).normal(size=(2, 3, units)).astype(np.float32)
  same_weights = all(a.tobytes() == b.tobytes()
                     for a, b in zip(model.get_weights(), loaded.get_weights()))
  return same_weights and np.array_equal(model(x).numpy(), loaded(x).numpy())


def measure(config, workdir, log=print):
  """One row per model: structure, compression, bytes, ratio to dense, bit-exact reload."""
  units, layers = config["units"], config["layers"]
  models = [("dense", 1.0, latency.build_model("baseline", units, layers, 1.0))]
  for compression in config["compressions"]:
    for structure in STRUCTURES:
      model = latency.build_model(structure, units, layers, compression)
      models.append((structure, compression, latency.anneal_cheaply(model, units)))
  rows = []
  for structure, compression, model in models:
    path = os.path.join(workdir, f"{structure}-{compression:g}x.keras")
    model.save(path)
    rows.append({"structure": structure, "compression": compression,
                 "bytes": os.path.getsize(path), "bit_exact_reload": _bit_exact(model, path, units)})
    log(f"{structure} {compression:g}x: {rows[-1]['bytes']} bytes")
  dense_bytes = rows[0]["bytes"]
  for row in rows:
    row["dense_bytes_over_this"] = dense_bytes / row["bytes"]
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.checkpoint_size",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--units", type=int)
  parser.add_argument("--layers", type=int)
  parser.add_argument("--compressions", type=lambda s: [float(v) for v in s.split(",")])
  parser.add_argument("--out", default=os.path.join("benchmarks", "results",
                                                    "checkpoint_size.json"))
  common.add_quick_flag(parser, QUICK)
  args = parser.parse_args(argv)
  config = common.resolve_config(parser, args, DEFAULTS, QUICK, positive=("units", "layers"))
  with tempfile.TemporaryDirectory(prefix="dkp-checkpoints-") as workdir:
    rows = measure(config, workdir)
  common.write_json_atomic(args.out, {"config": config, "host": common.host_info(),
                                      "commit": common.git_commit(), "rows": rows})
  for row in rows:
    print(f"{row['structure']:>8} {row['compression']:>5g}x {row['bytes']:>10} bytes "
          f"{row['dense_bytes_over_this']:6.2f}x smaller, bit-exact {row['bit_exact_reload']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
