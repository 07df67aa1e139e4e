"""The repository's programs run from tests as processes, with TensorFlow imported once.

Every end-to-end test runs a command-line program (``python train_main.py ...``,
``python -m autonl_tf.export ...``) in a process of its own: its own argv, environment, working
directory, exit status and signals. Started with `subprocess`, each such process first spends
2.5-3 CPU-seconds importing TensorFlow and Keras, the same bytes every time; the test suite starts
about 75 of them, on 2 cores a quarter of its CPU time.

`run` and `Popen` here take the arguments of their `subprocess` namesakes. A Python command
(``[sys.executable, <script.py> | -m <module>, args...]``) runs in a child of a fork server
(`multiprocessing`'s "forkserver" with a preload, the standard-library mechanism made for this)
that imported TensorFlow and Keras once and has run nothing since. In the child, as in a fresh
interpreter: ``sys.argv``/``sys.orig_argv``, ``sys.path`` (the script's folder or the working
directory, then PYTHONPATH, then the interpreter's own), the environment and working directory
of the call, stdout/stderr to the call's pipes or files, ``__main__`` semantics, atexit handlers
at the end, and the exit status (negative: killed by that signal). What the child shares with
the server is only what importing TensorFlow and Keras did.

Anything else runs with `subprocess` unchanged: a command that is not such a Python command
(``bash``, interpreter options like ``-X importtime`` or ``-P``), a command whose environment
differs from the server's in a variable TensorFlow reads while it is imported
(`IMPORT_TIME_VARIABLES`), and every command when ``AUTONL_FRESH_PROCESSES=1`` is set (to check
that a test result does not depend on the server: the suite passes both ways).
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import types
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["IMPORT_TIME_VARIABLES", "Popen", "run"]

# Environment variables that TensorFlow (or its libraries) reads while it is imported or when it
# first initialises devices: a command that sets them differently from the server needs its
# own interpreter.
IMPORT_TIME_VARIABLES = ("TF_CPP_", "TF_ENABLE_", "TF_XLA_", "XLA_FLAGS", "CUDA_", "OMP_",
                         "KMP_", "MKL_", "TF_NUM_", "TF_USE_LEGACY_KERAS", "KERAS_BACKEND",
                         "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "LD_")

_PRELOAD_MODULE = "tests.support.preload_tensorflow"
_server_env: dict[str, str] | None = None
_fresh_sys_path: list[str] | None = None
_pipe_dir: str | None = None
_MAX_TEMP_DIR_LENGTH = 60  # + "/pymp-XXXXXXXX/listener-XXXXXXXX" stays under 107 bytes
_SAME_AS_STDOUT = "&1"  # stderr=subprocess.STDOUT, as the child's stderr "path"


def _fresh_interpreter_path() -> list[str]:
    """``sys.path`` of ``python -c`` without PYTHONPATH, minus its first entry (the script's
    folder or the working directory), measured once."""
    global _fresh_sys_path
    if _fresh_sys_path is None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        code = "import json, sys; print(json.dumps(sys.path[1:]))"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout
        _fresh_sys_path = json.loads(out)
    return _fresh_sys_path


def _python_target(command: Sequence[str]) -> tuple[str, str] | None:
    """('path', script) or ('module', name) for ``[sys.executable, script | -m name, ...]``."""
    if len(command) < 2 or os.fspath(command[0]) != sys.executable:
        return None
    first = os.fspath(command[1])
    if first == "-m" and len(command) >= 3:
        return "module", os.fspath(command[2])
    if first.endswith(".py") and not first.startswith("-"):
        return "path", first
    return None


def _import_time_settings(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_VARIABLES)}


def _context(env: Mapping[str, str]) -> Any | None:
    """The fork-server context, started (with ``env``) on first use; None when ``env`` differs
    from the server's in an import-time variable."""
    global _server_env
    context = multiprocessing.get_context("forkserver")
    if _server_env is None:
        context.set_forkserver_preload([_PRELOAD_MODULE])
        saved_env, saved_tempdir = dict(os.environ), tempfile.tempdir
        # The server inherits os.environ when it starts, and imports TensorFlow with it.
        os.environ.clear()
        os.environ.update(env)
        # Its socket goes in a new temporary folder, and a socket path may hold at most
        # 107 bytes: under Bazel, TMPDIR is a deep sandbox path.
        if len(tempfile.gettempdir()) > _MAX_TEMP_DIR_LENGTH and os.access("/tmp", os.W_OK):
            tempfile.tempdir = "/tmp"
        try:
            from multiprocessing import forkserver

            forkserver.ensure_running()
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            tempfile.tempdir = saved_tempdir
        _server_env = dict(env)
    if _import_time_settings(env) != _import_time_settings(_server_env):
        return None
    return context


def _open_output(spec: Any, name: str) -> tuple[str | None, str | None]:
    """(path the child writes, path the parent reads back) for a stdout/stderr argument."""
    if spec is None:
        return None, None
    if spec == subprocess.DEVNULL:
        return os.devnull, None
    if spec == subprocess.PIPE:
        global _pipe_dir
        if _pipe_dir is None:  # removed with what is left in it when the tests end
            _pipe_dir = tempfile.mkdtemp(prefix="autonl_programs_")
            atexit.register(shutil.rmtree, _pipe_dir, ignore_errors=True)
        handle, path = tempfile.mkstemp(prefix=f"{name}_", dir=_pipe_dir)
        os.close(handle)
        return path, path
    if spec == subprocess.STDOUT:
        return _SAME_AS_STDOUT, None
    if hasattr(spec, "name") and isinstance(spec.name, str):
        spec.flush()
        return spec.name, None
    raise ValueError(f"{name}={spec!r}: use None, PIPE, DEVNULL, STDOUT or a named file")


def _child(kind: str, target: str, argv: list[str], orig_argv: list[str], env: dict[str, str],
           cwd: str, stdout_path: str | None, stderr_path: str | None,
           fresh_path: list[str]) -> None:
    """Runs in the forked child: becomes ``python <target> <argv[1:]>``."""
    for fd, path in ((1, stdout_path), (2, stderr_path)):
        if path == _SAME_AS_STDOUT:
            os.dup2(1, 2)
        elif path is not None:
            out = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(out, fd)
            os.close(out)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    python_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    # Python puts the folder of the script (a symlink followed) first, or the working directory.
    first = os.path.dirname(os.path.realpath(target)) if kind == "path" else os.getcwd()
    sys.path[:] = [first, *python_path, *fresh_path]
    sys.argv[:] = argv
    sys.orig_argv[:] = orig_argv
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if kind == "module":
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    finally:
        atexit._run_exitfuncs()  # a fresh interpreter runs them when it exits


class Popen:
    """`subprocess.Popen` for the tests: the same arguments (``args, cwd, env, stdout, stderr,
    text``) and the methods the tests use (``poll, wait, communicate, send_signal, kill``); ``stdout``
    and ``stderr`` given as PIPE are read by `communicate` (not streamed). Start programs from
    one thread: starting one swaps ``sys.modules['__main__']`` and may swap ``os.environ``."""

    def __init__(self, args: Sequence[str], *, cwd: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None, stdout: Any = None,
                 stderr: Any = None, text: bool = False) -> None:
        self.args = [os.fspath(a) for a in args]
        self.returncode: int | None = None
        self._text = text
        env = dict(os.environ if env is None else env)
        cwd = os.fspath(cwd) if cwd is not None else os.getcwd()
        target = _python_target(self.args)
        context = None
        if target is not None and os.environ.get("AUTONL_FRESH_PROCESSES") != "1":
            context = _context(env)
        if context is None:
            self._process = subprocess.Popen(self.args, cwd=cwd, env=env, stdout=stdout,
                                             stderr=stderr, text=text)
            self._child = None
            self.pid = self._process.pid
            return
        self._process = None
        kind, name = target
        out_path, self._stdout_read = _open_output(stdout, "stdout")
        err_path, self._stderr_read = _open_output(stderr, "stderr")
        if kind == "module":
            argv = [name, *self.args[3:]]  # runpy puts the module's file in argv[0]
        else:
            argv = self.args[1:]
        self._child = context.Process(
            target=_child, name=" ".join(self.args[1:3]),
            args=(kind, name, argv, list(self.args), env, cwd, out_path, err_path,
                  _fresh_interpreter_path()))
        # multiprocessing re-imports the parent's __main__ in a child (as __mp_main__) unless
        # it is `python -m` of a package's __main__. The child becomes another program, so it
        # gets no __main__ of ours: a benchmark script's absl flags would clash with the
        # program's, and pytest's runner would be loaded for nothing.
        main_module = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            self._child.start()
        finally:
            sys.modules["__main__"] = main_module
        self.pid = self._child.pid

    def poll(self) -> int | None:
        if self._process is not None:
            self.returncode = self._process.poll()
        elif self.returncode is None:
            self.returncode = self._child.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self._process is not None:
            self.returncode = self._process.wait(timeout)
            return self.returncode
        self._child.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def _read_back(self, path: str | None) -> str | bytes | None:
        if path is None:
            return None
        with open(path, "rb") as f:
            data = f.read()
        return data.decode("utf-8", "replace") if self._text else data

    def communicate(self, timeout: float | None = None) -> tuple[Any, Any]:
        if self._process is not None:
            out, err = self._process.communicate(timeout=timeout)
            self.returncode = self._process.returncode
            return out, err
        self.wait(timeout)
        out, err = self._read_back(self._stdout_read), self._read_back(self._stderr_read)
        for path in (self._stdout_read, self._stderr_read):
            if path is not None and os.path.exists(path):
                os.remove(path)
        return out, err

    def send_signal(self, sig: int) -> None:
        if self._process is not None:
            self._process.send_signal(sig)
        elif self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def run(args: Sequence[str], *, cwd: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None, capture_output: bool = False,
        stdout: Any = None, stderr: Any = None, text: bool = False,
        timeout: float | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """`subprocess.run` for the tests (see the module docstring); on timeout the program is
    killed and `subprocess.TimeoutExpired` raised, as `subprocess.run` does."""
    if capture_output:
        stdout = stderr = subprocess.PIPE
    process = Popen(args, cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=text)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    completed = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    if check:
        completed.check_returncode()
    return completed

