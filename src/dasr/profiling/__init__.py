"""Profiling pieces of the benchmarks (``benchmarks/bench.py``).

* :mod:`~dasr.profiling.flops`: multiply-accumulate counts of the forward pass and of one seed's
  probability backprop, for a given input size;
* :mod:`~dasr.profiling.peak`: the measured matmul peak, on TensorFlow or JAX (the hardware
  floor the counts are compared with);
* :mod:`~dasr.profiling.gpu`: GPU kernel placement of the backprop's ops, allocator peaks
  (TensorFlow); :mod:`~dasr.profiling.jax_device`: the device's name and peak memory on JAX;
* :mod:`~dasr.profiling.machine`: CPU name, usable threads, peak resident memory;
* :mod:`~dasr.profiling.timing`: waiting for device results, summaries of repeated timings.

Nothing here is imported by the pipeline itself.
"""
