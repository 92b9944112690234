"""Runs .tflite models on given inputs with LiteRT; saves their outputs (numpy + LiteRT only).

The same file runs on the host (x86) and inside the arm64 root, so that both
sides feed the models identically. The manifest (JSON) lists the models,
relative to its own directory:

    {"models": [{"name": "dkp_25x_step", "file": "models/dkp_25x_step.tflite",
                 "mode": "step", "inputs": "inputs/dkp_25x_step.npy"}],
     "xnnpack": ["on", "off"]}

Inputs are float32 (samples, batch, steps, features). A step-mode model is
invoked once per step, its state outputs fed back as the next step's state
inputs (starting at zero); a sequence-mode model once per sample, its
variable tensors reset first. Writes ``OUT/<name>__xnn<on|off>.npy``, the
``outputs`` of every sample (samples, batch, steps, units), and
``OUT/status.json``: ``{"<name>__xnn<on|off>": "ok" | "error: ..."}``.

    python3 guest_outputs.py --manifest work/manifest.json --out work/outputs-x86
"""

import argparse
import json
import os
import platform
import sys

import numpy as np


def interpreter_for(path, xnnpack):
  """A LiteRT interpreter with XNNPack (the default) or the builtin kernels only."""
  # pylint: disable=import-outside-toplevel
  from ai_edge_litert.interpreter import Interpreter, OpResolverType
  options = {} if xnnpack else {
      "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
  interpreter = Interpreter(model_path=path, num_threads=1, **options)
  interpreter.allocate_tensors()
  return interpreter


def run_sample(interpreter, mode, x):
  """The ``outputs`` of one sample x (batch, steps, features): (batch, steps, units)."""
  runner = interpreter.get_signature_runner()
  if mode == "sequence":
    interpreter.reset_all_variables()
    return runner(inputs=x)["outputs"]
  details = runner.get_input_details()
  states = {name: np.zeros(d["shape"], d["dtype"]) for name, d in details.items()
            if name != "inputs"}
  outputs = []
  for t in range(x.shape[1]):
    result = runner(inputs=x[:, t:t + 1], **states)
    outputs.append(result["outputs"].reshape(x.shape[0], 1, -1))
    states = {name: result[name] for name in states}
  return np.concatenate(outputs, axis=1)


def run_manifest(manifest_path, out):
  """Runs every model x XNNPack setting of the manifest; returns the status dict."""
  with open(manifest_path, encoding="utf-8") as handle:
    manifest = json.load(handle)
  base = os.path.dirname(os.path.abspath(manifest_path))
  os.makedirs(out, exist_ok=True)
  status = {}
  for entry in manifest["models"]:
    inputs = np.load(os.path.join(base, entry["inputs"]))
    for xnn in manifest.get("xnnpack", ["on", "off"]):
      key = f"{entry['name']}__xnn{xnn}"
      try:
        interpreter = interpreter_for(os.path.join(base, entry["file"]), xnn == "on")
        result = np.stack([run_sample(interpreter, entry["mode"], x) for x in inputs])
      except (RuntimeError, ValueError, KeyError) as error:
        message = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        status[key] = f"error: {message}"
        continue
      np.save(os.path.join(out, key + ".npy"), result)
      status[key] = "ok"
      print(f"{key}: ok", flush=True)
  with open(os.path.join(out, "status.json"), "w", encoding="utf-8") as handle:
    json.dump({"machine": platform.machine(), "status": status}, handle, indent=1)
  return status


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--manifest", required=True)
  parser.add_argument("--out", required=True, help="directory for the outputs")
  args = parser.parse_args(argv)
  status = run_manifest(args.manifest, args.out)
  failed = sum(value != "ok" for value in status.values())
  print(f"{platform.machine()}: {len(status) - failed} runs ok, {failed} failed", file=sys.stderr)


if __name__ == "__main__":
  main()
