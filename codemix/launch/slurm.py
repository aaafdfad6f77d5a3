"""SLURM launcher: render `launch/slurm/codemix.sbatch` and submit it.

The template starts one task per node with `srun`; each task runs the same
codemix command with the jax.distributed coordinator (first node of the
allocation), the process count (SLURM_NTASKS) and the process id
(SLURM_PROCID) taken from the SLURM environment, so it needs no cluster-
specific JAX auto-detection. Fields are written `{{name}}` in the template.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

# launch/slurm/ of the repository: a symlink in a checkout, package data in a wheel.
TEMPLATE = Path(__file__).resolve().parent / "templates" / "codemix.sbatch"


@dataclasses.dataclass(frozen=True)
class SlurmJob:
    """One multi-node GPU job.

    Attributes:
      command: what every task runs, e.g. ["codemix", "train", ...] (the
        coordinator flags are appended by the template).
      nodes: nodes (= JAX processes).
      gpus_per_node: GPUs per node (= local JAX devices per process); 0 asks
        for none (CPU jobs, such as the test cluster's).
      job_name: SLURM job name.
      time: wall-clock limit (HH:MM:SS or D-HH:MM:SS).
      cpus_per_task: CPU cores per task (data pipeline threads).
      partition, account: passed through as #SBATCH lines when set.
      log_dir: where SLURM writes %x-%j.out.
      workdir_root: directory the tasks cd into (the checkout on shared disk;
        default: the directory sbatch was called from).
      requeue_on_stop: when the trainer stops on a signal (exit 143, after its
        checkpoint), the job requeues itself (`scontrol requeue`), so a time
        limit's warning signal resumes like a preemption does.
    """

    command: tuple[str, ...]
    nodes: int = 1
    gpus_per_node: int = 8
    job_name: str = "codemix"
    time: str = "24:00:00"
    cpus_per_task: int = 32
    partition: str | None = None
    account: str | None = None
    log_dir: str = "logs"
    workdir_root: str | None = None
    requeue_on_stop: bool = False

    def __post_init__(self):
        if not self.command:
            raise ValueError("no command to run; put it after `--`, e.g. -- codemix train ...")
        if self.nodes < 1 or self.gpus_per_node < 0:
            raise ValueError(f"nodes={self.nodes} must be >= 1 and gpus_per_node={self.gpus_per_node} >= 0.")

    def render(self, template: Path = TEMPLATE) -> str:
        extra = []
        if self.partition:
            extra.append(f"#SBATCH --partition={self.partition}")
        if self.account:
            extra.append(f"#SBATCH --account={self.account}")
        fields = {
            "job_name": self.job_name,
            "nodes": str(self.nodes),
            "gpu_directive": (f"#SBATCH --gpus-per-node={self.gpus_per_node}" if self.gpus_per_node
                              else "# no GPUs requested (gpus_per_node=0)"),
            "requeue_on_stop": "1" if self.requeue_on_stop else "0",
            "cpus_per_task": str(self.cpus_per_task),
            "time": self.time,
            "log_dir": self.log_dir,
            "workdir_root": ('"$SLURM_SUBMIT_DIR"' if self.workdir_root is None
                             else shlex.quote(self.workdir_root)),
            "extra_directives": "\n".join(extra),
            "command": shlex.join(self.command),
        }
        text = template.read_text()
        for key, value in fields.items():
            text = text.replace("{{" + key + "}}", value)
        left = re.findall(r"\{\{(\w+)\}\}", text)
        if left:
            raise ValueError(f"template {template} has fields codemix does not fill: {left}.")
        # An empty extra_directives leaves a blank line; drop it.
        return re.sub(r"\n\n(?=set -euo)", "\n", text)

    def submit_commands(self, script_path: str) -> list[list[str]]:
        return [["mkdir", "-p", self.log_dir], ["sbatch", script_path]]


def script_path(job: SlurmJob, directory: str = ".") -> str:
    return str(Path(directory) / f"{job.job_name}.sbatch")


def commands(job: SlurmJob, directory: str = ".") -> Sequence[list[str]]:
    return job.submit_commands(script_path(job, directory))
