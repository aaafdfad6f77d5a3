"""codemix works from any directory and from a non-editable install: the gin
files and the sbatch template travel with the package, and gin finds them
through its search path (codemix/config.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import gin
import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
from codemix import config

CHECKOUT = Path(__file__).resolve().parent.parent
SHIPPED_GIN = sorted(p.relative_to(CHECKOUT).as_posix() for p in (CHECKOUT / "gin").rglob("*.gin"))


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """The current directory is outside the checkout."""
    monkeypatch.chdir(tmp_path)
    gin.clear_config()
    yield tmp_path
    gin.clear_config()


def test_shipped_gin_files_resolve_from_any_directory(elsewhere):
    path = Path(config.resolve_gin_file("gin/experiments/demo.gin"))
    assert path.read_text() == (CHECKOUT / "gin/experiments/demo.gin").read_text()
    # runs/tiny_cpu.gin includes 'gin/models/tiny.gin' and 'gin/runtime/cpu.gin'
    config.parse(["gin/runs/tiny_cpu.gin"], finalize=False)
    assert config.query("ModelConfig.num_layers") is not None


def test_user_gin_file_includes_the_shipped_ones(elsewhere):
    (elsewhere / "mine.gin").write_text("include 'gin/models/tiny.gin'\nModelConfig.num_layers = 3\n")
    config.parse(["mine.gin"], finalize=False)
    assert config.query("ModelConfig.num_layers") == 3
    assert config.query("ModelConfig.d_model") is not None  # from the shipped tiny.gin


def test_a_file_in_the_current_directory_takes_precedence(elsewhere):
    (elsewhere / "gin" / "models").mkdir(parents=True)
    (elsewhere / "gin" / "models" / "tiny.gin").write_text("ModelConfig.num_layers = 7\n")
    assert config.resolve_gin_file("gin/models/tiny.gin") == "gin/models/tiny.gin"
    config.parse(["gin/models/tiny.gin"], finalize=False)
    assert config.query("ModelConfig.num_layers") == 7


def test_missing_gin_file_names_where_it_looked(elsewhere):
    with pytest.raises(config.ConfigError, match="not found.*current directory.*shipped with codemix"):
        config.resolve_gin_file("gin/experiments/nope.gin")


def _venv_on_main_packages(root: Path) -> Path:
    """A fresh venv (no pip) that sees this environment's site-packages but not
    its .pth files, so the editable codemix of the checkout is invisible."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    purelib = Path(subprocess.run([str(root / "bin" / "python"), "-c",
                                   "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "main_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin"


@pytest.mark.slow
def test_wheel_installed_non_editable_runs_from_outside_the_checkout(tmp_path):
    # Built from a copy: setuptools leaves build/ in the tree it builds, and a
    # stale build/lib would leak into later wheels.
    source = tmp_path / "source"
    # Work folders only at the top: gin/runs/ is shipped.
    everywhere = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "__pycache__", ".pytest_cache")
    top = {"build", "dist", "runs", "workdirs"}
    shutil.copytree(CHECKOUT, source, symlinks=True, ignore=lambda d, names: set(everywhere(d, names)) | (
        top & set(names) if Path(d) == CHECKOUT else set()))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", str(wheels)],
                   check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("codemix-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"codemix/{g}" for g in SHIPPED_GIN} <= names
    assert "codemix/launch/templates/codemix.sbatch" in names

    bin_dir = _venv_on_main_packages(tmp_path / "venv")
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    away = tmp_path / "away"
    away.mkdir()

    def codemix(*argv: str) -> str:
        proc = subprocess.run([str(bin_dir / "codemix"), *argv], capture_output=True, text=True, env=env,
                              cwd=away, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    where = subprocess.run([str(bin_dir / "python"), "-c", "import codemix.config as c; print(c.GIN_DIR)"],
                           capture_output=True, text=True, env=env, cwd=away, check=True).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv") and not Path(where).is_symlink()

    plan = codemix("experiment", "run", "gin/experiments/demo.gin", "--dry_run", "--workdir", str(tmp_path / "x"))
    assert "24 runs" in plan or "runs," in plan
    script = codemix("launch", "slurm", "--nodes", "2", "--dry_run", "--",
                     "codemix", "train", "--gin_file", "gin/runs/tiny_cpu.gin", "--workdir", "runs/a")
    assert "#SBATCH --nodes=2" in script
    assert "sbatch" in script
    # A single run (gin/runs/) and a stage (its include of gin/stages/common.gin) parse from the wheel.
    assert json.loads(codemix("plan", "--gin_file", "gin/runs/tiny_cpu.gin", "--devices", "1", "--json"))["steps"] == 200
    stage = codemix("plan", "--gin_file", "gin/models/tiny.gin", "--gin_file", "gin/runtime/cpu.gin",
                    "--gin_file", "gin/stages/init.gin", "--gin_param", "MIXTURE='balanced'",
                    "--gin_param", "TOKEN_BUDGET=65536", "--gin_param", "BATCH_SIZE=8", "--gin_param", "SEQ_LEN=256",
                    "--devices", "1", "--json")
    assert json.loads(stage)["steps"] == 32


def test_readme_and_ci_build_llama_cpp_portably_without_amx():
    """The README's test command and .ci/run build llama.cpp with the flags the
    judge's build check names (issue 31), and setup.py pins the version tested."""
    from codemix.eval.judge.local_server import LLAMA_CPP_CMAKE_ARGS, LLAMA_CPP_VERSION

    assert "-DGGML_NATIVE=OFF" in LLAMA_CPP_CMAKE_ARGS and "-DGGML_AMX_INT8=OFF" in LLAMA_CPP_CMAKE_ARGS
    readme = (CHECKOUT / "README.md").read_text().splitlines()
    test_command = readme[readme.index("```bash") + 2]
    assert test_command.startswith(f'CMAKE_ARGS="{LLAMA_CPP_CMAKE_ARGS}" pip install ') and "pytest" in test_command
    assert test_command in (CHECKOUT / ".ci" / "run").read_text()
    assert f'"llama-cpp-python=={LLAMA_CPP_VERSION}"' in (CHECKOUT / "setup.py").read_text()


def _lock() -> dict[str, str]:
    import re

    out = {}
    for line in (CHECKOUT / "requirements-lock.txt").read_text().splitlines():
        m = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_lock_pins_every_requirement_within_setup_pys_bounds_and_is_what_is_installed():
    """requirements-lock.txt (.ci/lock.sh) covers setup.py's core, [test] and [tpu]
    requirements with versions inside their bounds, and this environment, which the
    tests run in, has exactly the locked versions: the lock is what was tested."""
    import ast
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    lock = _lock()
    tree = ast.parse((CHECKOUT / "setup.py").read_text())
    core = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "CORE")
    extras = next(k.value for n in ast.walk(tree) if isinstance(n, ast.Call)
                  for k in n.keywords if k.arg == "extras_require")
    specs = ast.literal_eval(core) + [r for name, reqs in ast.literal_eval(extras).items()
                                      if name in ("test", "tpu") for r in reqs]
    for spec in specs:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"{name} is not in requirements-lock.txt: run .ci/lock.sh"
        assert req.specifier.contains(lock[name], prereleases=True), (spec, lock[name])
        # setup.py's lower bounds are tested versions: the locked one, not an older one.
        lower = [s.version for s in req.specifier if s.operator in (">=", "==")]
        assert not lower or lower[0] == lock[name], f"{spec}: the tested version is {lock[name]}"
    for name, pinned in lock.items():
        try:
            got = version(name)
        except PackageNotFoundError:
            continue  # e.g. libtpu where jax[tpu] is not installed
        assert got == pinned, f"{name} {got} is installed, the lock says {pinned}: run .ci/lock.sh"


def test_ci_and_launchers_install_with_the_lock():
    run = (CHECKOUT / ".ci" / "run").read_text()
    assert 'export PIP_CONSTRAINT="$PWD/requirements-lock.txt' in run
    assert run.index("PIP_CONSTRAINT") < run.index("pip install --no-warn-conflicts")
    from codemix.launch.tpu import TpuJob

    install = " ".join(TpuJob(name="x", zone="z", accelerator="v4-8").install()[0])
    assert "-c requirements-lock.txt" in install
