"""What the tests (and a few benchmarks) share: tiny configs, the programs run as processes with
TensorFlow imported once, a small trained demo model, TensorFlow's graph profiler."""
