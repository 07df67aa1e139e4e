"""The installed package is autonl_tf alone: no top-level `configs` to shadow a user's own.

A wheel is built from the source (no network: the build backend is the one installed) and
installed into a scratch directory; Python runs from outside the repository with only that on
its path.
"""

# bazel: size=medium tags=slow

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.support.training import REPO_ROOT, subprocess_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site dir holding the installed wheel, the wheel's top-level names)."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "autonl_tf", source / "autonl_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"),
                    str(source)], check=True, timeout=300)
    (wheel,) = (root / "dist").glob("*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    site = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=300)
    return site, top_level


def _python(site, code: str, cwd) -> subprocess.CompletedProcess:
    env = subprocess_env()
    env["PYTHONPATH"] = str(site)
    # -P: the working directory (maybe the repository, with its source tree) is not on sys.path.
    return subprocess.run([sys.executable, "-P", "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_wheel_holds_autonl_tf_only(installed):
    _, top_level = installed
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"autonl_tf"}


def test_import_configs_fails_outside_the_repository(installed, tmp_path):
    site, _ = installed
    completed = _python(site, "import configs", cwd=tmp_path)
    assert completed.returncode != 0
    assert "No module named 'configs'" in completed.stderr


def test_installed_package_loads_the_published_models_and_the_repository_configs(installed):
    """The named models ship with the package; configs/ files load by path (and by name from
    the repository root, where the README's commands run)."""
    site, _ = installed
    code = (
        "import autonl_tf, os, sys\n"
        f"assert autonl_tf.__file__.startswith({str(site)!r}), autonl_tf.__file__\n"
        "from autonl_tf.models import list_models, resolve_model_spec\n"
        "from autonl_tf.runner.config import load_config\n"
        "assert list_models() == ['autonl_l', 'autonl_s', 'mobilenet_v2'], list_models()\n"
        "assert len(resolve_model_spec('autonl_s').blocks) > 10\n"
        "from autonl_tf.latency.committed import demo_table\n"
        "assert os.path.exists(demo_table('int8')), demo_table('int8')\n"
        "by_path = load_config(os.path.join('configs', 'search.py') + ':demo')\n"
        "by_name = load_config('autonl_l')\n"
        "assert 'configs' not in sys.modules\n"
        "print(by_path.search_space.stages[0]['filters'], by_name.model.arch)\n")
    completed = _python(site, code, cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split()[-2:] == ["16", "autonl_l"]
    assert not os.path.exists(os.path.join(site, "configs"))


def test_the_installed_programs_run_as_modules_outside_the_repository(installed, tmp_path):
    """``python -m autonl_tf.<program>`` needs nothing outside the package: a bad flag is
    answered by the installed module (exit 2) from a folder that holds no repository."""
    site, _ = installed
    env = subprocess_env()
    env["PYTHONPATH"] = str(site)
    for program in ("search_main", "train_main", "eval_main", "pipeline"):
        completed = subprocess.run([sys.executable, "-P", "-m", f"autonl_tf.{program}",
                                    "--no_such_flag"], cwd=tmp_path, env=env,
                                   capture_output=True, text=True, timeout=300)
        assert completed.returncode == 2, (program, completed.stderr[-2000:])
        assert "Unknown command line flag 'no_such_flag'" in completed.stderr, program
    # Without configs/ the default config cannot load: one flag error naming the fix.
    completed = subprocess.run([sys.executable, "-P", "-m", "autonl_tf.train_main",
                                f"--model_dir={tmp_path / 'm'}"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2 and "Traceback" not in completed.stderr, completed.stderr
    assert "--config is required here: the default config 'autonl_s' is in no configs/" \
        in completed.stderr
