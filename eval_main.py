"""Evaluates a model dir written by train_main.py: exact top-1/top-5 over the eval split.

The program is the module `autonl_tf.eval_main` (``python -m autonl_tf.eval_main``, the same
flags); this file is its entry point at the top of the repository. ``--help`` lists the flags.
"""

from autonl_tf.eval_main import run

if __name__ == "__main__":
    run()
