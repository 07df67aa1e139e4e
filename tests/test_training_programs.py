"""tests.support.programs: a program forked from the preloaded server behaves as the same
command in a fresh interpreter (argv, sys.path, environment, directory, output, atexit, exit
status, signals), and what it cannot serve runs with subprocess."""
# bazel: size=large timeout=long tags=subprocess,slow

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.support import programs
from tests.support.training import subprocess_env

pytestmark = pytest.mark.slow

# Prints what a program can see of how it was started, writes its atexit file, exits 3.
PROBE = textwrap.dedent("""\
    import atexit, json, os, sys
    preloaded = "tensorflow" in sys.modules
    atexit.register(lambda: open("atexit.txt", "w").write("ran"))
    print("to stderr", file=sys.stderr)
    print(json.dumps({"argv": sys.argv, "path": sys.path, "cwd": os.getcwd(),
                      "probe_var": os.environ.get("PROBE_VAR"), "name": __name__,
                      "orig_argv": sys.orig_argv[1:], "preloaded": preloaded}))
    sys.exit(3)
    """)


@pytest.fixture(autouse=True)
def use_the_server(monkeypatch):
    """These tests are about the server: a run with AUTONL_FRESH_PROCESSES=1 tests it too."""
    monkeypatch.delenv("AUTONL_FRESH_PROCESSES", raising=False)


@pytest.fixture()
def probe(tmp_path):
    package = tmp_path / "lib" / "probe_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(PROBE)
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "run").mkdir()
    return tmp_path


def _both(command, cwd, env):
    """(fresh interpreter, forked) runs of ``command``: their outputs, parsed."""
    runs = []
    for runner in (subprocess.run, programs.run):
        (cwd / "atexit.txt").unlink(missing_ok=True)
        completed = runner(command, cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=120)
        assert completed.returncode == 3, completed.stderr[-2000:]
        assert completed.stderr == "to stderr\n"
        assert (cwd / "atexit.txt").read_text() == "ran"
        runs.append(json.loads(completed.stdout))
    return runs


@pytest.mark.parametrize("form", ["script", "module"])
def test_a_forked_program_sees_what_a_fresh_interpreter_sees(probe, form):
    env = subprocess_env(PROBE_VAR="x y", PYTHONPATH=str(probe / "lib"))
    target = [str(probe / "probe.py")] if form == "script" else ["-m", "probe_pkg"]
    fresh, forked = _both([sys.executable, *target, "--flag=1", "two words"], probe / "run", env)
    assert (fresh.pop("preloaded"), forked.pop("preloaded")) == (False, True)
    assert forked == fresh
    assert fresh["argv"][1:] == ["--flag=1", "two words"] and fresh["name"] == "__main__"


def test_signals_and_timeouts_reach_the_forked_program(probe):
    (probe / "sleeper.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    command = [sys.executable, str(probe / "sleeper.py")]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        process = programs.Popen(command, cwd=probe, env=subprocess_env(),
                                 stdout=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)
        assert process.poll() is None
        process.send_signal(sig)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == -sig and out == "up\n"
    with pytest.raises(subprocess.TimeoutExpired):
        programs.run(command, cwd=probe, env=subprocess_env(), timeout=0.5)


def test_shared_file_and_stderr_to_stdout(probe):
    log = probe / "log.txt"
    with open(log, "w") as out:
        completed = programs.run([sys.executable, str(probe / "probe.py")], cwd=probe,
                                 env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT)
    assert completed.returncode == 3 and completed.stdout is None
    lines = log.read_text().splitlines()
    assert lines[0] == "to stderr" and json.loads(lines[1])["preloaded"] is True


def test_what_the_server_cannot_serve_runs_fresh(probe, monkeypatch):
    def preloaded(command, env):
        completed = programs.run(command, cwd=probe, env=env, capture_output=True, text=True)
        assert completed.returncode == 3, completed.stderr[-2000:]
        return json.loads(completed.stdout.splitlines()[-1])["preloaded"]

    script = [sys.executable, str(probe / "probe.py")]
    assert preloaded(script, subprocess_env()) is True
    # Interpreter options, another program, an import-time variable that differs.
    assert preloaded([sys.executable, "-X", "utf8", str(probe / "probe.py")],
                     subprocess_env()) is False
    assert preloaded(["bash", "-c", f"exec {sys.executable} probe.py"], subprocess_env()) is False
    assert preloaded(script, subprocess_env(TF_CPP_MIN_LOG_LEVEL="0")) is False
    monkeypatch.setenv("AUTONL_FRESH_PROCESSES", "1")
    assert preloaded(script, subprocess_env()) is False
