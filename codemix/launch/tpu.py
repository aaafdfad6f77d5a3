"""Cloud TPU VM launcher: the gcloud commands of one multi-host job.

A job is: create (or reuse) the TPU VM -> sync this checkout to every worker ->
install the package on every worker -> run the same command on every worker
with `--distributed` (jax.distributed.initialize() reads the TPU topology from
the VM's metadata, so no coordinator flags are needed) -> optionally delete.

Spot capacity goes through a queued resource (`--spot`): the request waits in
Cloud TPU's queue until capacity is free. A preempted spot VM is not reusable:
relaunching the same command deletes it, queues a new one and runs the same
command in the same workdir, where the trainer resumes from the latest
checkpoint. The workdir must therefore be on storage every worker and every
incarnation of the VM sees (a gs:// bucket); a worker's local disk dies with it.

Every step is a list of argv lists; `plan()` returns them in order with a short
label, `shell()` renders one the way it is printed by `--dry_run`.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Sequence

# Default TPU VM software version per generation (the "base" images carry no
# framework: the package and jax[tpu] are pip-installed by the install step).
RUNTIME_VERSIONS = {
    "v4": "tpu-ubuntu2204-base",
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}
REMOTE_DIR = "codemix"  # checkout location on each worker, relative to $HOME
# States (gcloud `describe --format=value(state)`) in which a VM can run jobs,
# and those after which it must be deleted and created again.
READY_STATES = ("READY",)
DEAD_STATES = ("PREEMPTED", "TERMINATED", "STOPPED", "SUSPENDED", "FAILED")


@dataclasses.dataclass(frozen=True)
class Topology:
    chips: int
    hosts: int
    devices: int  # JAX devices (one per chip on v4 and later: megacore)


def topology(accelerator: str) -> Topology:
    """Chips, hosts and JAX devices of an accelerator type such as "v4-32".

    The number after the dash counts TensorCores for v4 and v5p (two per
    chip) and chips for v5e ("v5litepod-N") and v6e; every host has 4 chips,
    except single-host v5e/v6e slices of up to 8 chips.
    """
    m = re.fullmatch(r"(v4|v5p|v5litepod|v6e)-(\d+)", accelerator)
    if not m:
        raise ValueError(
            f"unknown TPU accelerator type {accelerator!r}; use e.g. v4-32, v5p-64, "
            f"v5litepod-16 or v6e-16."
        )
    gen, n = m.group(1), int(m.group(2))
    chips = n // 2 if gen in ("v4", "v5p") else n
    if chips < 1:
        raise ValueError(f"accelerator type {accelerator!r} has no whole chip.")
    hosts = 1 if (gen in ("v5litepod", "v6e") and chips <= 8) else max(chips // 4, 1)
    return Topology(chips=chips, hosts=hosts, devices=chips)


def generation(accelerator: str) -> str:
    return accelerator.split("-")[0]


@dataclasses.dataclass(frozen=True)
class TpuJob:
    """One multi-host job on a TPU VM.

    Attributes:
      name: TPU VM name (also the queued resource's name with --spot).
      zone: e.g. us-central2-b (where your quota is).
      accelerator: accelerator type, e.g. v4-32.
      command: the command every worker runs, e.g. ["codemix", "train", ...].
      project: GCP project (default: gcloud's configured one).
      spot: request spot capacity through a queued resource.
      version: TPU software version (default: RUNTIME_VERSIONS per generation).
      source: local checkout to sync (default: the current directory).
      log_file: worker-side log (appended, so relaunches keep the history).
      follow: run in the foreground of the SSH session and stream the output
        (the job dies with the session); default: detached on every worker,
        logs fetched with `codemix launch tpu --logs`.
    """

    name: str
    zone: str
    accelerator: str
    command: tuple[str, ...] = ()
    project: str | None = None
    spot: bool = False
    version: str | None = None
    source: str = "."
    log_file: str = "codemix-run.log"
    follow: bool = False

    def __post_init__(self):
        topology(self.accelerator)  # validates the type early
        if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", self.name):
            raise ValueError(
                f"TPU name {self.name!r} is invalid; use lower-case letters, digits and dashes, "
                f"starting with a letter."
            )

    @property
    def runtime_version(self) -> str:
        return self.version or RUNTIME_VERSIONS[generation(self.accelerator)]

    @property
    def tarball(self) -> str:
        return f"/tmp/{self.name}-codemix.tgz"

    # --- the pieces every gcloud command shares ----------------------------
    def _where(self) -> list[str]:
        out = [f"--zone={self.zone}"]
        if self.project:
            out.append(f"--project={self.project}")
        return out

    def _ssh(self, remote: str) -> list[str]:
        return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", self.name, *self._where(),
                "--worker=all", f"--command={remote}"]

    # --- steps ---------------------------------------------------------------
    def describe(self) -> list[str]:
        """Prints the VM's state (READY, PREEMPTED, ...); fails if it does not exist."""
        return ["gcloud", "compute", "tpus", "tpu-vm", "describe", self.name, *self._where(),
                "--format=value(state)"]

    def create(self) -> list[list[str]]:
        if self.spot:
            return [
                ["gcloud", "compute", "tpus", "queued-resources", "create", self.name,
                 f"--node-id={self.name}", *self._where(),
                 f"--accelerator-type={self.accelerator}",
                 f"--runtime-version={self.runtime_version}", "--spot"],
                # Block until the queued request is filled (ACTIVE) or failed.
                ["bash", "-c", self._wait_active_script()],
            ]
        return [["gcloud", "compute", "tpus", "tpu-vm", "create", self.name, *self._where(),
                 f"--accelerator-type={self.accelerator}", f"--version={self.runtime_version}"]]

    def _wait_active_script(self) -> str:
        describe = shlex.join(["gcloud", "compute", "tpus", "queued-resources", "describe",
                               self.name, *self._where(), "--format=value(state.state)"])
        return (f"until s=$({describe}); [ \"$s\" = ACTIVE ]; do "
                f"case \"$s\" in FAILED|SUSPENDED) echo \"queued resource $s\" >&2; exit 1;; esac; "
                f"echo \"waiting for capacity ($s)\"; sleep 60; done")

    def delete(self) -> list[list[str]]:
        if self.spot:
            return [["gcloud", "compute", "tpus", "queued-resources", "delete", self.name,
                     *self._where(), "--force", "--quiet"]]
        return [["gcloud", "compute", "tpus", "tpu-vm", "delete", self.name, *self._where(),
                 "--quiet"]]

    def sync(self) -> list[list[str]]:
        """Pack the checkout (without .git and caches), copy it to every worker, unpack."""
        excludes = [f"--exclude={p}" for p in (".git", "__pycache__", "*.egg-info", ".pytest_cache")]
        return [
            ["tar", "czf", self.tarball, *excludes, "-C", self.source, "."],
            ["gcloud", "compute", "tpus", "tpu-vm", "scp", self.tarball,
             f"{self.name}:{REMOTE_DIR}.tgz", *self._where(), "--worker=all"],
            self._ssh(f"mkdir -p ~/{REMOTE_DIR} && tar xzf ~/{REMOTE_DIR}.tgz -C ~/{REMOTE_DIR}"),
        ]

    def install(self) -> list[list[str]]:
        # requirements-lock.txt: the exact versions the tests ran, as constraints (jax is
        # pinned there; jax[tpu] then brings the libtpu that version names).
        return [self._ssh(f"cd ~/{REMOTE_DIR} && python3 -m pip install --quiet -c requirements-lock.txt "
                          f"-e '.[tpu]'")]

    def worker_command(self) -> str:
        """The command each worker runs: the user's, with --distributed added."""
        cmd = list(self.command)
        if not cmd:
            raise ValueError("no command to run; put it after `--`, e.g. -- codemix train ...")
        if "--distributed" not in cmd and "--coordinator_address" not in cmd:
            cmd.append("--distributed")
        # PATH: pip --user installs console scripts to ~/.local/bin on TPU VMs.
        return (f"cd ~/{REMOTE_DIR} && export PATH=$HOME/.local/bin:$PATH && "
                f"{shlex.join(cmd)} 2>&1 | tee -a ~/{self.log_file}; exit ${{PIPESTATUS[0]}}")

    def run(self) -> list[list[str]]:
        if not self.follow:
            return self.run_detached()
        # gcloud streams every worker's output to this terminal, prefixed by worker.
        return [self._ssh(self.worker_command())]

    def run_detached(self) -> list[list[str]]:
        """Start the command on every worker in its own session (setsid nohup), so it
        survives the SSH session; its output goes to the worker's log file."""
        cmd = list(self.command)
        if "--distributed" not in cmd and "--coordinator_address" not in cmd and cmd[:2] != ["bash", "-c"]:
            cmd.append("--distributed")
        inner = f"cd ~/{REMOTE_DIR} && export PATH=$HOME/.local/bin:$PATH && {shlex.join(cmd)}"
        return [self._ssh(f"setsid nohup bash -c {shlex.quote(inner)} >> ~/{self.log_file} 2>&1 < /dev/null &")]

    def logs(self, lines: int = 200) -> list[list[str]]:
        """The last lines of every worker's log (`codemix launch tpu --logs`)."""
        return [self._ssh(f"tail -n {int(lines)} ~/{self.log_file}")]


STEPS = ("create", "sync", "install", "run", "delete")


def plan(job: TpuJob, steps: Sequence[str] = ("create", "sync", "install", "run")) -> list[tuple[str, list[str]]]:
    """(step, argv) pairs in order. "create" is create-or-reuse: it is only
    executed when `describe` says the VM is missing or dead (see launch())."""
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown launch step(s) {unknown}; choose from {STEPS}.")
    out: list[tuple[str, list[str]]] = []
    for step in STEPS:
        if step in steps:
            out += [(step, argv) for argv in getattr(job, step)()]
    return out


def shell(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def check_workdir(command: Sequence[str]) -> str | None:
    """A warning when the command's --workdir is not on shared storage."""
    for i, a in enumerate(command):
        value = None
        if a == "--workdir" and i + 1 < len(command):
            value = command[i + 1]
        elif a.startswith("--workdir="):
            value = a.split("=", 1)[1]
        if value is not None and not value.startswith("gs://"):
            return (f"--workdir {value} is not a gs:// path: each worker would write its own "
                    f"checkpoints to local disk and a relaunched VM could not resume. Use a bucket.")
    return None
