"""mate.kernels: Triton kernels for MATE's hot losses (installed as ``mate.kernels``, never as a
top-level ``kernels``). The Gaussian-prior word-query attention and prototype cross-entropy
kernels arrive with the fused-kernels work; the public entry points are ``mate.ops``."""
