"""Trains an AutoNL classifier (or any architecture) with the paper's recipe.

The program is the module `autonl_tf.train_main` (``python -m autonl_tf.train_main``, the same
flags); this file is its entry point at the top of the repository. ``--help`` lists the flags.
"""

from autonl_tf.train_main import run

if __name__ == "__main__":
    run()
