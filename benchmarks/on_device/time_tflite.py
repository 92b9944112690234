"""Times one .tflite model with LiteRT's Interpreter; prints one JSON line (µs).

Standalone (no project imports), for boards without the LiteRT benchmark tool:

    python3 time_tflite.py --model m.tflite --num_threads 1 --xnnpack on --num_runs 300
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np


def percentile(values, q):
  """Linear-interpolated percentile of a list (numpy's default)."""
  return float(np.percentile(values, q))


# A copy of tflite_ops.timing.timing_interpreter (this file runs alone on a board);
# tests/test_on_device.py keeps the two equal.
def timing_interpreter(path, num_threads=1, xnnpack=True, seed=0):
  """A LiteRT ``Interpreter`` of the .tflite file at ``path``, allocated, its inputs set once.

  Float inputs get seeded standard-normal values, integer inputs (token ids) zeros.
  Not zeros everywhere: dynamic-int8 (hybrid) kernels skip an all-zero input vector,
  so zero inputs and states would time an int8 model's matmuls as free.

  Args:
    path: the .tflite file.
    num_threads: the interpreter's CPU threads.
    xnnpack: False runs the builtin kernels only (no default XNNPack delegate).
    seed: the seed of the float inputs' values.
  """
  # pylint: disable=import-outside-toplevel
  from ai_edge_litert.interpreter import Interpreter, OpResolverType
  options = {} if xnnpack else {
      "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
  interpreter = Interpreter(model_path=str(path), num_threads=num_threads, **options)
  interpreter.allocate_tensors()
  rng = np.random.default_rng(seed)
  for detail in interpreter.get_input_details():
    shape, dtype = detail["shape"], detail["dtype"]
    values = (rng.standard_normal(shape).astype(dtype) if np.issubdtype(dtype, np.floating)
              else np.zeros(shape, dtype))
    interpreter.set_tensor(detail["index"], values)
  return interpreter


def time_model(path, num_threads=1, xnnpack=True, num_runs=300, warmup_runs=10):
  """Per-invoke times in µs of ``path`` with inputs set once (`timing_interpreter`); a dict."""
  interpreter = timing_interpreter(path, num_threads, xnnpack)
  for _ in range(warmup_runs):
    interpreter.invoke()
  samples = []
  for _ in range(num_runs):
    start = time.perf_counter()
    interpreter.invoke()
    samples.append((time.perf_counter() - start) * 1e6)
  return {"model": str(path), "num_threads": num_threads, "xnnpack": xnnpack,
          "runs": num_runs, "warmup_runs": warmup_runs,
          "latency_us_median": percentile(samples, 50),
          "latency_us_p10": percentile(samples, 10), "latency_us_p90": percentile(samples, 90),
          "latency_us_mean": statistics.fmean(samples), "latency_us_min": min(samples),
          "latency_us_max": max(samples),
          "latency_us_std": statistics.pstdev(samples) if len(samples) > 1 else 0.0}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--model", required=True)
  parser.add_argument("--num_threads", type=int, default=1)
  parser.add_argument("--xnnpack", choices=("on", "off"), default="on")
  parser.add_argument("--num_runs", type=int, default=300)
  parser.add_argument("--warmup_runs", type=int, default=10)
  parser.add_argument("--result_json", help="also write the JSON here")
  args = parser.parse_args(argv)
  result = time_model(args.model, args.num_threads, args.xnnpack == "on", args.num_runs,
                      args.warmup_runs)
  line = json.dumps(result)
  if args.result_json:
    with open(args.result_json, "w", encoding="utf-8") as handle:
      handle.write(line + "\n")
  print(line)
  sys.stdout.flush()


if __name__ == "__main__":
  main()
