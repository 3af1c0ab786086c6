"""Pure torch/numpy kernels the Ray roles run: model loading, sampling, log-probs, DPO, features (no Ray)."""
