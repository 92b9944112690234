"""What `lowering.lower_model` can be asked for, importable without TensorFlow (for parsers)."""

MODES = ("sequence", "step")  # whole sequences in and out, or one time step with explicit states
KERNELS = ("auto", "block", "csr", "gather", "dense")  # how S runs (`sparse_matmul`)
