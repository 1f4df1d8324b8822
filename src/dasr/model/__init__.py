"""The network: architectures (no weights), weights (offline sources, fingerprint), the backbone,
the probability backprop (TensorFlow or JAX), ImageNet classification."""
