"""Shared set-up for trainer tests: a micro model on the local text task."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY_GIN = "gin/runs/tiny_cpu.gin"

# ~60k parameters, 64-token rows: a step takes milliseconds on one CPU core.
MICRO = [
    "ModelConfig.d_model=64",
    "ModelConfig.num_layers=2",
    "ModelConfig.num_heads=2",
    "ModelConfig.num_kv_heads=2",
    "ModelConfig.head_dim=32",
    "ModelConfig.d_ff=128",
    "SEQ_LEN=64",
    "BATCH_SIZE=8",
    "make_schedule.warmup_steps=2",
    "train.log_every=1",
    "train.checkpoint_every=5",
    "train.progress=False",
    "HeldOutOptions.tokens_per_family=1024",
]


def env(devices: int = 1) -> dict:
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    e["JAX_PLATFORMS"] = "cpu"
    e["TF_CPP_MIN_LOG_LEVEL"] = "2"
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def train_cmd(workdir, params, extra_args=()) -> list[str]:
    cmd = [sys.executable, "-m", "codemix.main", "--log_level", "WARNING", "train",
           "--gin_file", TINY_GIN, "--workdir", str(workdir)]
    for p in params:
        cmd += ["--gin_param", p]
    return cmd + list(extra_args)


def run_train(workdir, params, devices=1, timeout=300, extra_args=()):
    proc = subprocess.run(train_cmd(workdir, params, extra_args), cwd=REPO, env=env(devices),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def metrics(workdir) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_step(workdir, step, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = metrics(workdir)
        if m and m[-1]["step"] >= step:
            return m[-1]["step"]
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout}s")
