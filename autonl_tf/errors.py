"""The exit-code convention of every autonl_tf command, as exception base classes.

Each error type of the library derives from one of three bases, so that the commands map errors
to exit codes by kind instead of keeping a list of every type (README "Exit codes"):

- `UserError` (exit 2): bad flags, config, data, architecture, checkpoint or devices; the message
  names the thing and the fix, and is printed as one line without a traceback.
- `RunFailure` (exit 1): the run itself failed (divergence, an export failing verification).
- `Preempted` (exit 3): interrupted by SIGTERM after saving a checkpoint; rerun to resume.
- `NotLearning` (exit 4): the run stopped itself because the model learned nothing measurable
  (a search whose supernet is at chance at the end of its warm-up would let the cost term
  decide alone); the message says what was measured and what to try.

This module imports nothing from autonl_tf: every layer can use it.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["EXIT_BAD_INPUT", "EXIT_NOT_LEARNING", "EXIT_OK", "EXIT_PREEMPTED", "EXIT_RUN_FAILED",
           "NotLearning", "Preempted", "RunFailure", "UserError", "error_line", "exit_on_errors",
           "one_line"]

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PREEMPTED = 3
EXIT_NOT_LEARNING = 4


class UserError(Exception):
    """Bad input; the message is the whole story (exit 2, one line)."""


class RunFailure(Exception):
    """The run failed although its input was valid (exit 1, one line)."""


class Preempted(Exception):
    """Interrupted by a signal after saving a checkpoint (exit 3)."""


class NotLearning(Exception):
    """The model learned nothing measurable; the run stopped rather than go on blind (exit 4)."""


def one_line(error: BaseException) -> str:
    """An exception's message on one line (messages never span lines in our output)."""
    text = " ".join(str(arg) for arg in error.args) if error.args else type(error).__name__
    return " ".join(text.replace("\\n", " ").replace("\\'", "'").split())


def error_line(program: str, error: BaseException) -> str:
    """``<program>: error: <message>``."""
    return f"{program}: error: {one_line(error)}"


@contextlib.contextmanager
def exit_on_errors(program: str | None = None):
    """Turns our error kinds into one stderr line and their exit code; anything else (a bug)
    keeps its traceback."""
    from absl import app

    program = program or os.path.basename(sys.argv[0])
    try:
        yield
    except app.UsageError as e:
        print(error_line(program, e), file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except Preempted as e:
        print(f"{program}: {one_line(e)}", file=sys.stderr)
        sys.exit(EXIT_PREEMPTED)
    except NotLearning as e:
        print(error_line(program, e), file=sys.stderr)
        sys.exit(EXIT_NOT_LEARNING)
    except RunFailure as e:
        print(error_line(program, e), file=sys.stderr)
        sys.exit(EXIT_RUN_FAILED)
    except UserError as e:
        print(error_line(program, e), file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
