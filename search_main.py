"""Searches an AutoNL architecture under a MACs or latency target (docs/search.md).

The program is the module `autonl_tf.search_main` (``python -m autonl_tf.search_main``, the same
flags); this file is its entry point at the top of the repository. ``--help`` lists the flags.
"""

from autonl_tf.search_main import run

if __name__ == "__main__":
    run()
