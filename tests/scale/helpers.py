"""Multi-process helpers for the scale-out tests (on top of tests/train/helpers.py)."""
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.train.helpers import REPO, TINY_GIN, env

# A micro decoder (d_model 64, 2 blocks, 4 heads of 16: ~107k parameters) on the
# byte-level local_text task, laid over tiny_cpu.gin. What the multi-host tests
# check -- 2 hosts compute what 1 host does, checkpoints reshard on restore --
# does not depend on the model's size, and every dimension still divides the
# 8-device FSDP mesh and the fsdp=2 x tensor=2 restore mesh (d_model 64 = 8 x 8,
# 4 heads = 2 x 2), so each parameter is really split across processes.
MULTIHOST = [
    "ModelConfig.d_model=64",
    "ModelConfig.num_layers=2",
    "ModelConfig.num_heads=4",
    "ModelConfig.num_kv_heads=4",
    "ModelConfig.head_dim=16",
    "ModelConfig.d_ff=128",
    "SEQ_LEN=32",
    "BATCH_SIZE=8",
    "make_schedule.warmup_steps=1",
    "train.log_every=1",
    "train.progress=False",
    "train.async_checkpoints=False",
    "HeldOutOptions.tokens_per_family=1024",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multihost_cmd(workdir, params, extra_args=()) -> list[str]:
    """`codemix train` on tiny_cpu.gin with the MULTIHOST model's shapes laid over it."""
    cmd = [sys.executable, "-m", "codemix.main", "--log_level", "WARNING", "train",
           "--gin_file", TINY_GIN, "--workdir", str(workdir)]
    for p in MULTIHOST + list(params):
        cmd += ["--gin_param", p]
    return cmd + list(extra_args)


def start(cmd, devices: int, log=None) -> subprocess.Popen:
    """Start a trainer; its output goes to `log` (a file: pipes that nobody
    reads while another process is awaited would fill up and block it)."""
    log = Path(log) if log else Path(tempfile.mkstemp(suffix=".log")[1])
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env(devices), stdout=out, stderr=subprocess.STDOUT)
    proc.log_path = log
    return proc


def start_multiprocess(workdir, params, processes: int, devices_per_process: int,
                       log_dir=None) -> list[subprocess.Popen]:
    """`processes` trainers joined by jax.distributed over gloo on localhost."""
    port = free_port()
    procs = []
    for pid in range(processes):
        args = ["--coordinator_address", f"127.0.0.1:{port}", "--num_processes", str(processes),
                "--process_id", str(pid), "--cpu_collectives", "gloo"]
        log = Path(log_dir) / f"process_{pid}.log" if log_dir else None
        procs.append(start(multihost_cmd(workdir, params, args), devices_per_process, log))
    return procs


def finish(procs, timeout: int = 800) -> None:
    """Wait for every process; if one fails, stop the others and show its output."""
    try:
        for p in procs:
            p.wait(timeout=timeout)
            assert p.returncode == 0, Path(p.log_path).read_text()[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
