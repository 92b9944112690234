"""Helpers the layer and conversion tests share."""

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def randomize_doping(owner, scale=0.1, seed=0):
  """Gives every doping matrix S of a DKP layer or cell random values (S starts at zero)."""
  rng = np.random.default_rng(seed)
  for matrix in owner.doped_matrices.values():
    if matrix.doping is not None:
      matrix.doping.assign(rng.normal(0, scale, matrix.doping.shape))


def run_step_file(path, x, state_shapes):
  """Runs a step-mode .tflite file over ``x`` one time step at a time, states starting at zero.

  Args:
    path: the .tflite file (its signature takes ``inputs`` and the states, returns
      ``outputs`` and the states).
    x: the inputs, time on axis 1.
    state_shapes: {state name: shape}.

  Returns:
    The outputs of every step, concatenated on axis 1.
  """
  runner = Interpreter(model_path=str(path)).get_signature_runner()
  states = {name: np.zeros(shape, np.float32) for name, shape in state_shapes.items()}
  outputs = []
  for t in range(x.shape[1]):
    result = runner(inputs=x[:, t:t + 1], **states)
    outputs.append(result["outputs"])
    states = {name: result[name] for name in states}
  return np.concatenate(outputs, axis=1)
