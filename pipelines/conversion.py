"""Lowering a Keras model with DKP layers to a verified `.tflite` file (`convert`).

The work behind ``python -m pipelines.convert`` (its flags are `convert`'s
arguments). Accepts a `.keras` / `.h5` file, a SavedModel directory or an
in-memory model, tf_keras or Keras 3 (a Keras 3 model is lowered as its
tf_keras twin, `dkp_keras.keras2_twin`, and verified against itself). The
Kronecker part becomes reshape / FULLY_CONNECTED / TRANSPOSE ops and S a
sparse kernel (see `tflite_ops`: 1x4-block S as the converter's block-sparse
weight, other sparse S rewritten as a CSR weight after conversion); only
TFLite builtin ops are allowed. The written file is read back: its ops,
bytes per component and sparse weights are reported, and it is run with
LiteRT against the Keras model on ``verify_samples`` random inputs (and
``verify_data``). A file that fails verification is kept as
``<out>.unverified`` and `ConversionError` is raised; nothing is ever
half-written at ``out`` (temp file + rename). Every output location is
checked before any work: no output is an input or another output, and an
existing file is replaced only with ``force``.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

import dkp_keras as dkp  # registers the DKP layers, sets TF_USE_LEGACY_KERAS
import tensorflow as tf  # noqa: E402  (after dkp_keras)
import tf_keras as keras  # noqa: E402

from dkp_keras import keras2_twin  # noqa: E402
from dkp_keras.compression import missed_target_warning  # noqa: E402
from dkp_keras.verify import normwise_error  # noqa: E402
from pipelines import choices  # noqa: E402
from pipelines import models  # noqa: E402
from tflite_ops import describe  # noqa: E402
from tflite_ops import files  # noqa: E402
from tflite_ops import lowering  # noqa: E402
from tflite_ops import quantize as quantize_weights  # noqa: E402
from tflite_ops import sparse_fc_rewrite  # noqa: E402
from tflite_ops import sparse_matmul  # noqa: E402

WEIGHT_BYTES = {"none": 4, "float16": 2, "dynamic-int8": 1}
# A file that fails verification is kept at ``out + UNVERIFIED``.
UNVERIFIED = ".unverified"


class ConversionError(RuntimeError):
  """The model could not be converted or verified; the message says why."""


def _check_options(verify_samples, tolerance):
  if isinstance(verify_samples, bool) or not isinstance(verify_samples, (int, np.integer)) or (
      verify_samples < 0):
    raise ValueError(f"--verify must be a whole number >= 0 (0 skips the random inputs), got "
                     f"{verify_samples!r}")
  if tolerance is not None and not tolerance >= 0:  # NaN fails too
    raise ValueError(f"--tolerance must be a number >= 0 (the max normwise error accepted), got "
                     f"{tolerance!r}")


def _check_outputs(out, report_path, inputs, force):
  """Every output location, checked before any work: (out, report_path) as absolute paths."""
  outputs = files.check_outputs({"--out": out, "the failed-verification copy": (
      None if out is None else os.fspath(out) + UNVERIFIED), "--report": report_path},
                                inputs, force)
  return outputs["--out"], outputs.get("--report")


def _load_verify_data(path):
  try:
    data = np.load(path, allow_pickle=False)
  except FileNotFoundError as error:
    raise FileNotFoundError(f"--verify-data {path}: no such file") from error
  except OSError as error:
    raise ConversionError(f"cannot read --verify-data {path}: {error.strerror or error}") from error
  except (ValueError, EOFError) as error:  # numpy's message for a text file speaks of pickles
    raise ConversionError(f"--verify-data {path} is not an array written by numpy.save (a .npy "
                          "file)") from error
  if not isinstance(data, np.ndarray):
    raise ConversionError(f"--verify-data {path} holds several arrays (.npz); give one .npy "
                          "array (examples, steps, ...)")
  return data


def _vocabulary(model):
  """The token ids the model's first layer accepts (an Embedding's input_dim), else None."""
  return getattr(lowering.model_chain(model)[0], "input_dim", None)


def _check_verify_data(data, model):
  """``data`` as an array, refused where the model cannot take it: wrong rank, or values
  that are not finite (or, for token inputs, not ids of the model's Embedding)."""
  data = np.asarray(data)
  if data.ndim < 2 or data.size == 0:
    raise ConversionError(f"--verify-data must be an array (examples, steps, ...), got shape "
                          f"{data.shape}")
  if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
    raise ConversionError(f"--verify-data must hold real numbers, got dtype {data.dtype}")
  bad = ~np.isfinite(data)
  expected = "finite numbers"
  if model.inputs and model.inputs[0].dtype.is_integer:
    vocabulary = _vocabulary(model)
    bad |= (data != np.round(data)) | (data < 0)
    expected = "whole token ids 0 or more"
    if vocabulary is not None:
      bad |= data >= vocabulary
      expected = f"whole token ids 0..{vocabulary - 1} (the Embedding's input_dim {vocabulary})"
  if bad.any():
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ConversionError(f"--verify-data holds {data[where].item()} at index {where} "
                          f"({int(bad.sum())} such values); the model takes {expected}")
  return data


def _converter(lowered, model, quantize):
  converter = tf.lite.TFLiteConverter.from_concrete_functions([lowered.concrete], model)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex
  optimizations = []
  # float16 is applied afterwards (`quantize.float16_weights`) so that S stays a
  # sparse float32 weight: LiteRT computes NaN from sparse float16 weights.
  if quantize == "dynamic-int8":
    optimizations.append(tf.lite.Optimize.DEFAULT)
  # Only when some S runs the sparse FC: the flag would also store a 'dense'
  # S (or a pruned plain layer) sparse, and block-aligned ones then run the
  # sparse kernel even where dense is faster.
  if any(m.doping_kernel == "block" for m in lowered.matrices()):
    optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
  converter.optimizations = optimizations
  return converter


def _store_csr(flatbuffer, lowered):
  """Rewrites each S lowered 'csr' as a CSR weight; (flatbuffer, how many were stored).

  One pass also puts exactly the FULLY_CONNECTED ops with sparse weights at op
  version 8, or XNNPack would run them as dense (`sparse_fc_rewrite.mark_sparse_fully_connected`).
  """
  # The converter stores S (Keras [in, out]) as the FULLY_CONNECTED weight [out, in].
  csr = [m.doping.T for m in lowered.matrices() if m.doping_kernel == "csr"]
  flatbuffer, stored = sparse_fc_rewrite.store_csr_weights(flatbuffer, csr)
  if stored != len(csr):
    # The converter changed a weight into a form the rewrite does not read:
    # say so rather than report a kernel that does not run.
    raise ConversionError(f"only {stored} of the {len(csr)} S lowered 'csr' were found as "
                          "FULLY_CONNECTED weights in the converted file")
  return flatbuffer, stored


def _random_inputs(model, lowered, rng, steps):
  """Inputs the model accepts: token ids below the embedding's vocabulary, else normals."""
  spec = lowered.concrete.structured_input_signature[0][0]
  shape = [s if s is not None else 1 for s in spec.shape.as_list()]
  shape[1] = steps
  if spec.dtype.is_integer:
    high = _vocabulary(model) or 10
    return rng.integers(0, high, size=shape).astype(spec.dtype.as_numpy_dtype)
  return rng.normal(size=shape).astype(np.float32)


def _reference_model(model):
  """``model``, or where its batch size is fixed (stateful, as trained), a stateless twin.

  Stateful layers need a fixed batch, so the returned model has none: each
  verification input starts from zero states, and the twin accepts the
  converted file's batch size (1 by default) where the original accepts only
  its training batch.
  """
  if not model.inputs or model.inputs[0].shape[0] is None:
    return model
  return models.stateless_twin(model)


def _run_tflite(runner, lowered, x):
  if lowered.mode == "sequence":
    return runner(inputs=x)["outputs"]
  states = {name: np.zeros(shape, np.float32) for name, shape in lowered.state_shapes.items()}
  outputs = []
  for t in range(x.shape[1]):
    result = runner(inputs=x[:, t:t + 1], **states)
    outputs.append(result["outputs"])
    states = {name: result[name] for name in states}
  return np.concatenate(outputs, axis=1) if outputs[0].ndim >= 3 else outputs[-1]


def verify(path, model, lowered, samples=8, data=None, seed=0, reference_model=None):
  """Max normwise error of the .tflite outputs against Keras over the inputs.

  ``reference_model`` (default ``model``) gives the expected outputs: a Keras 3
  model whose tf_keras twin ``model`` was lowered.
  """
  interpreter, delegate_note = open_interpreter(path)
  runner = interpreter.get_signature_runner()
  rng = np.random.default_rng(seed)
  steps = _verify_steps(model, lowered)
  inputs = [_random_inputs(model, lowered, rng, steps) for _ in range(samples)]
  if data is not None:
    inputs += list(_batches(data, lowered, steps))
  errors = []
  reference = _reference_model(model if reference_model is None else reference_model)
  for x in inputs:
    # A Keras LSTM passes through as UNIDIRECTIONAL_SEQUENCE_LSTM, whose states
    # are variable tensors that persist across invocations: start each sequence at zero.
    interpreter.reset_all_variables()
    errors.append(normwise_error(_run_tflite(runner, lowered, x), np.asarray(reference(x, training=False))))
  return {"samples": len(inputs), "max_error": max(errors) if errors else None,
          "errors": errors, "xnnpack": delegate_note}


def open_interpreter(path):
  """LiteRT's default interpreter (XNNPack), or the builtin kernels where XNNPack refuses.

  XNNPack fails to prepare some sparse int8 FULLY_CONNECTED weights (measured);
  the builtin kernels run them. The note says which ran.
  """
  # pylint: disable=import-outside-toplevel
  from ai_edge_litert.interpreter import Interpreter, OpResolverType
  try:
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    return interpreter, "used"
  except RuntimeError as error:
    interpreter = Interpreter(
        model_path=path,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter, f"failed ({str(error).splitlines()[0][:120]}); verified without it"


def _verify_steps(model, lowered):
  """Time steps per verification input."""
  if lowered.mode == "sequence":
    return lowered.seq_len
  return model.inputs[0].shape[1] or min(lowered.seq_len, 8)


def _check_data_shape(data, model, lowered):
  """Refuses --verify-data whose shape the converted model cannot take (before converting)."""
  steps = _verify_steps(model, lowered)
  spec = lowered.concrete.structured_input_signature[0][0]
  batch = spec.shape[0] or 1
  per_step = tuple(spec.shape.as_list()[2:])
  if data.shape[1] < steps or len(data) < batch or len(data.shape[2:]) != len(per_step) or any(
      d is not None and d != n for d, n in zip(per_step, data.shape[2:])):
    raise ConversionError(
        f"--verify-data must be (>= {batch} examples, >= {steps} steps"
        f"{''.join(f', {d}' for d in per_step)}) for this model, got shape {data.shape}")


def _batches(data, lowered, steps):
  data = np.asarray(data)
  spec = lowered.concrete.structured_input_signature[0][0]
  batch = spec.shape[0] or 1
  for start in range(0, len(data) - batch + 1, batch):
    yield data[start:start + batch, :steps].astype(spec.dtype.as_numpy_dtype)


def _components(info, lowered, table, quantize):
  """Bytes per component. Sparse values / indices and totals are read from the file;
  structure factors and S stored dense are the lowering's sizes at the quantized width
  (an estimate); dense weights are the rest of the constants.
  """
  sparse_values = sum(t.sparsity.values_bytes for t in info.sparse_tensors)
  sparse_indices = sum(t.sparsity.indices_bytes for t in info.sparse_tensors)
  width = WEIGHT_BYTES[quantize] / 4
  # Sparse index vectors live in the tensors' metadata, not in buffers.
  other = max(info.weights_bytes - sparse_values, 0)
  structure = min(other, int(width * sum(m.component_bytes() for m in lowered.matrices()
                                         if m.structure is not None)))
  doping_dense = min(other - structure, int(width * sum(
      m.doping.size * 4 for m in lowered.matrices()
      if m.doping is not None and m.doping_kernel == "dense")))
  dense_bytes = int(table.loc[table["layer"] == "total", "dense_bytes"].iloc[0])
  return {
      "file": info.file_bytes, "weights": info.weights_bytes + sparse_indices,
      "structure_factors": structure, "doping_stored_dense": doping_dense,
      "dense_weights": other - structure - doping_dense,
      "sparse_values": sparse_values, "sparse_indices": sparse_indices,
      "dense_model_float32": dense_bytes,
      "compression_vs_dense": dense_bytes / info.file_bytes if info.file_bytes else None,
  }


def _sparse_check(info, lowered):
  """Each S lowered as 'block' must be stored sparse, in the fast layout, not densified;
  those lowered 'csr' are counted as CSR weights read by FULLY_CONNECTED."""
  fast = [t for t in info.sparse_tensors if describe.is_fast_block_sparse(t)]
  csr = [t for t in info.sparse_tensors if describe.is_csr_sparse(t)]
  densified = info.op_counts.get("DENSIFY", 0)
  block = [m for m in lowered.matrices() if m.doping_kernel == "block"]
  aligned = [m for m in block if sparse_matmul.is_block_aligned(m.doping)]
  return {"block_kernels": len(block), "block_aligned": len(aligned),
          "sparse_tensors": len(info.sparse_tensors), "fast_block_sparse": len(fast),
          "csr_sparse": len(csr),
          "densify_ops": densified,  # S lowered 'dense' may be stored sparse, then densified
          "all_block_aligned_stored_fast": len(fast) >= len(aligned)}


@dataclasses.dataclass
class ConversionResult:
  path: str
  report: dict


def convert(model_or_path, out, mode="sequence", seq_len=None, batch_size=1,
            sparse_kernel="auto", quantize="none", verify_samples=8, verify_data=None,
            report_path=None, force=False, tolerance=None, fuse_doping=False):
  """Converts, writes, inspects and verifies; returns the path and the report dict.

  Args:
    model_or_path: a tf_keras or Keras 3 model, or a `.keras` / `.h5` file or
      SavedModel directory (loaded with `dkp_keras.load_model`, a Keras 3 file
      with Keras 3). A Keras 3 model is lowered as its tf_keras twin
      (`dkp_keras.keras2_twin.tf_keras_twin`) and verified against its own outputs.
    out: the `.tflite` file to write.
    verify_samples: random inputs to verify on (0: none).
    verify_data: an array, or a `.npy` file of one, of inputs (examples,
      steps, ...) verified beside the random ones; token ids must be valid
      for the model's Embedding.
    report_path: where to write the report as JSON (None: nowhere).
    force: whether an existing ``out``, ``report_path`` or ``out +
      '.unverified'`` may be replaced. Outputs are checked before any work,
      and never replace an input or each other, even with ``force``.
    tolerance: max normwise error accepted (>= 0; default per quantization,
      `choices.TOLERANCES`).
    mode, seq_len, batch_size, sparse_kernel, quantize: as the CLI flags.
    fuse_doping: step mode: one S per DKPLSTM layer over its input and state
      (`lowering.lower_model`): faster, but padding S's input part to whole
      blocks makes the file larger than the asked compression, so it is off
      by default.

  Raises:
    FileNotFoundError, ConversionError, lowering.UnsupportedModelError,
    files.OutputPathError, dkp_keras.loading.ModelFileError,
    keras2_twin.UnsupportedKeras3ModelError (the last four ValueErrors) with a
    message naming the problem. On a verification failure
    the file is kept as ``out + '.unverified'``.
  """
  if quantize not in choices.QUANTIZATIONS:
    raise ValueError(f"unknown quantization {quantize!r}; choose one of {choices.QUANTIZATIONS}")
  if quantize == "dynamic-int8" and sparse_kernel == "csr":
    raise ValueError("the csr kernel needs float weights (TFLite has no CSR kernel for int8 "
                     "weights); use --sparse-kernel auto, block or dense with dynamic-int8")
  if (seq_len is not None and seq_len < 1) or (batch_size is not None and batch_size < 1):
    raise ValueError(f"seq_len and batch size must be >= 1, got {seq_len}, {batch_size}")
  _check_options(verify_samples, tolerance)
  in_memory = isinstance(model_or_path, keras.Model) or keras2_twin.is_keras3_model(model_or_path)
  source = model_or_path if in_memory else os.fspath(model_or_path)
  data_path = os.fspath(verify_data) if isinstance(verify_data, (str, os.PathLike)) else None
  out, report_path = _check_outputs(out, report_path, {
      "model": None if in_memory else source, "--verify-data": data_path}, force)
  model = model_or_path if in_memory else _load_model(source)
  keras3_model = None
  if keras2_twin.is_keras3_model(model):
    keras3_model, model = model, keras2_twin.tf_keras_twin(model)
  if verify_data is not None:
    verify_data = _check_verify_data(
        _load_verify_data(data_path) if data_path else verify_data, model)
  start = time.perf_counter()
  # A model saved stateful (trained with a fixed batch) is lowered as its stateless twin,
  # which takes any --batch; layers the lowering passes through keep the model's batch.
  reference = _reference_model(model)
  if seq_len is None:
    seq_len = lowering.fixed_seq_len(reference) or choices.DEFAULT_SEQ_LEN
  lowered = lowering.lower_model(reference, mode=mode, seq_len=seq_len,
                                 batch_size=batch_size, sparse_kernel=sparse_kernel,
                                 csr=quantize != "dynamic-int8", fuse_doping=fuse_doping)
  if verify_data is not None:
    _check_data_shape(verify_data, model, lowered)
  try:
    flatbuffer = _converter(lowered, reference, quantize).convert()
  except Exception as error:
    raise ConversionError(f"the TFLite converter failed: {str(error).strip()[-2000:]}") from error
  flatbuffer, csr_stored = _store_csr(flatbuffer, lowered)
  if quantize == "float16":  # after the CSR rewrite: float16 leaves sparse weights alone
    flatbuffer = quantize_weights.float16_weights(flatbuffer, min_elements=64)
  convert_s = time.perf_counter() - start

  tmp = files.temp_beside(out)
  with open(tmp, "wb") as handle:
    handle.write(flatbuffer)
  try:
    info = describe.inspect_model(tmp)
    if info.custom_ops:
      raise ConversionError(f"the converted model needs non-builtin ops {info.custom_ops}")
    checked = verify(tmp, model, lowered, verify_samples, verify_data,
                     reference_model=keras3_model) if (
        verify_samples or verify_data is not None) else {"samples": 0, "max_error": None}
    limit = choices.TOLERANCES[quantize] if tolerance is None else tolerance
    table = dkp.compression_report(model)
    report = {
        "source": source if isinstance(source, str) else model.name, "output": out,
        "mode": mode, "seq_len": lowered.seq_len if mode == "sequence" else 1,
        "batch": batch_size,
        "sparse_kernel": sparse_kernel, "quantize": quantize, "fuse_doping": fuse_doping,
        "kernels": {m.name: m.doping_kernel for m in lowered.matrices()
                    if m.doping is not None},
        "inputs": lowered.input_names, "outputs": lowered.output_names,
        "op_counts": info.op_counts, "bytes": _components(info, lowered, table, quantize),
        "sparsity": {**_sparse_check(info, lowered), "csr_stored": csr_stored},
        "verification": {**checked, "tolerance": limit,
                         "against": "tf_keras" if keras3_model is None else "keras3"},
        "convert_seconds": convert_s,
        "target_warning": missed_target_warning(table),
    }
    if checked["max_error"] is not None and not checked["max_error"] <= limit:
      files.publish(tmp, out + UNVERIFIED)
      report["output"] = out + UNVERIFIED
      _write_report(report_path, report)
      raise ConversionError(
          f"verification failed: max normwise error {checked['max_error']:.3g} exceeds "
          f"{limit:.3g}; the file is kept as {out}{UNVERIFIED}")
    files.publish(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  _write_report(report_path, report)
  return ConversionResult(out, report)


def _load_model(path):
  """The model in a file: with Keras 3 where Keras 3 saved it, else with tf_keras."""
  if keras2_twin.saved_by_keras3(path):
    return keras2_twin.load_keras3_model(path)
  return dkp.load_model(path)


def _write_report(path, report):
  if path:
    files.write_json_atomic(path, report)


def format_report(report):
  """A short human summary of a conversion report."""
  sizes = report["bytes"]
  verification = report["verification"]
  error = verification["max_error"]
  lines = [
      f"wrote {report['output']} ({sizes['file'] / 1024:.1f} KiB, {report['mode']} mode, "
      f"quantize={report['quantize']}, converted in {report['convert_seconds']:.1f} s)",
      "ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(report["op_counts"].items())),
      f"bytes: structure factors {sizes['structure_factors']:,}  dense weights "
      f"{sizes['dense_weights']:,}  S stored dense {sizes['doping_stored_dense']:,}  sparse "
      f"values {sizes['sparse_values']:,}  sparse indices {sizes['sparse_indices']:,}",
      f"dense float32 model {sizes['dense_model_float32']:,} bytes -> file "
      f"{sizes['file']:,} bytes: {sizes['compression_vs_dense']:.1f}x smaller",
      "sparse S: " + ", ".join(f"{k}={v}" for k, v in report["sparsity"].items()),
      "kernels: " + (", ".join(f"{k}={v}" for k, v in report["kernels"].items()) or "none"),
      ("verification: skipped" if error is None else
       f"verification: {verification['samples']} inputs, max normwise error {error:.2e} "
       f"(tolerance {verification['tolerance']:.0e})"
       + (" against the Keras 3 model" if verification.get("against") == "keras3" else "")),
  ]
  if report.get("target_warning"):
    lines.append(f"warning: {report['target_warning']}")
  return "\n".join(lines)
