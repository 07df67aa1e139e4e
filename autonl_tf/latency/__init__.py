"""Latency tables: measuring the parts of a search space's networks on a device (docs/latency.md).

    python -m autonl_tf.latency.build_table --config=search:demo --mode=int8 --output=t.json

* `autonl_tf.latency.build`: which models a table is measured from, converting them, and the
  table from their timings;
* `autonl_tf.latency.timing`: LiteRT timing on this machine (interleaved rounds, fastest run);
* `autonl_tf.latency.benchmark_model`: the same table from Android's ``benchmark_model`` (over
  adb), and the parser of its output;
* `autonl_tf.latency.measure`: the measured latency of a searched network against its
  prediction;
* `autonl_tf.latency.device`: what this machine is.

The table's format, and the search's use of it, live in `autonl_tf.search.latency_cost`.
"""
