"""The launchers: dry runs print exactly what launch/README.md documents, the
TPU launcher creates-or-reuses (and recreates a preempted spot VM), and the
sbatch template hands srun's tasks the coordinator from the SLURM environment."""
import os
import re
import shlex
import stat
import subprocess

import pytest

from codemix.launch import slurm, tpu
from codemix.main import main
from tests.train.helpers import REPO

README = REPO / "launch" / "README.md"


def _documented_dry_runs() -> list[tuple[str, str]]:
    text = README.read_text()
    blocks = re.findall(r"<!-- dry-run -->\n```console\n\$ (.*?)\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 3, "launch/README.md lost its dry-run examples"
    return blocks


@pytest.mark.parametrize("command,expected", _documented_dry_runs(),
                         ids=lambda v: v.split(" --")[0] if v.startswith("codemix") else "")
def test_dry_run_prints_exactly_the_documented_commands(command, expected, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = shlex.split(command)
    assert argv[0] == "codemix"
    assert main(argv[1:]) == 0
    assert capsys.readouterr().out == expected


def test_worker_command_gets_distributed_flag_once():
    job = tpu.TpuJob(name="x", zone="z", accelerator="v4-32",
                     command=("codemix", "train", "--workdir", "gs://b/r"))
    assert job.worker_command().count("--distributed") == 1
    again = tpu.TpuJob(name="x", zone="z", accelerator="v4-32",
                       command=("codemix", "train", "--distributed", "--workdir", "gs://b/r"))
    assert again.worker_command().count("--distributed") == 1


@pytest.mark.parametrize("accelerator,chips,hosts", [
    ("v4-8", 4, 1), ("v4-32", 16, 4), ("v5p-32", 16, 4), ("v5litepod-8", 8, 1),
    ("v5litepod-64", 64, 16), ("v6e-16", 16, 4)])
def test_topology_of_accelerator_types(accelerator, chips, hosts):
    t = tpu.topology(accelerator)
    assert (t.chips, t.hosts) == (chips, hosts)


def test_unknown_accelerator_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown TPU accelerator type 'v9-3'"):
        tpu.topology("v9-3")


def test_local_workdir_is_flagged_for_multi_host_runs():
    assert "gs://" in tpu.check_workdir(["codemix", "train", "--workdir", "/tmp/run"])
    assert tpu.check_workdir(["codemix", "train", "--workdir=gs://b/run"]) is None


def _fake_gcloud(tmp_path, vm_state: str):
    """A `gcloud` that logs its argv and answers describe with `vm_state`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "gcloud.log"
    script = bindir / "gcloud"
    script.write_text(
        "#!/bin/bash\n"
        f'echo "$*" >> {log}\n'
        'case "$*" in\n'
        f'  *"tpu-vm describe"*) [ -n "{vm_state}" ] && echo {vm_state} || exit 1;;\n'
        '  *"queued-resources describe"*) echo ACTIVE;;\n'
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir, log


def _launch(tmp_path, monkeypatch, state, *extra):
    bindir, log = _fake_gcloud(tmp_path, state)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    src = tmp_path / "src"
    src.mkdir()
    (src / "setup.py").write_text("# checkout\n")
    rc = main(["launch", "tpu", "--name", "job", "--zone", "us-central2-b", "--accelerator", "v4-32",
               "--source", str(src), *extra, "--", "codemix", "train", "--workdir", "gs://b/run"])
    assert rc == 0
    return log.read_text().splitlines()


def test_relaunch_of_preempted_spot_vm_recreates_it_and_reruns(tmp_path, monkeypatch):
    calls = _launch(tmp_path, monkeypatch, "PREEMPTED", "--spot")
    kinds = [" ".join(c.split()[:3]) for c in calls]
    assert kinds == [
        "compute tpus tpu-vm",            # describe -> PREEMPTED
        "compute tpus queued-resources",  # delete
        "compute tpus queued-resources",  # create --spot
        "compute tpus queued-resources",  # describe -> ACTIVE
        "compute tpus tpu-vm",            # scp
        "compute tpus tpu-vm",            # ssh: unpack
        "compute tpus tpu-vm",            # ssh: install
        "compute tpus tpu-vm",            # ssh: run
    ]
    assert "queued-resources delete job" in calls[1] and "--force" in calls[1]
    assert "queued-resources create job" in calls[2] and "--spot" in calls[2]
    assert "--worker=all" in calls[-1] and "--workdir gs://b/run --distributed" in calls[-1]


def test_launch_reuses_a_ready_vm(tmp_path, monkeypatch):
    calls = _launch(tmp_path, monkeypatch, "READY", "--steps", "create,run")
    assert len(calls) == 2 and "tpu-vm describe" in calls[0] and "tpu-vm ssh" in calls[1]


def test_launch_creates_a_missing_vm(tmp_path, monkeypatch):
    calls = _launch(tmp_path, monkeypatch, "", "--steps", "create")
    assert "tpu-vm describe" in calls[0]
    assert "tpu-vm create job" in calls[1] and "--accelerator-type=v4-32" in calls[1]


def _run_sbatch(tmp_path, hostnames_body: str, nodes: int = 2):
    job = slurm.SlurmJob(command=("printargs", "train", "--gin_param", "MIXTURE='balanced'"), nodes=nodes)
    script = tmp_path / "job.sbatch"
    script.write_text(job.render())
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fakes = {
        "scontrol": hostnames_body,
        # srun: start task 1 of 2 in this shell, as SLURM would on node 2.
        "srun": 'shift; SLURM_PROCID=1 SLURM_NTASKS=2 "$@"',
        "printargs": 'printf "%s\\n" "$@"',
    }
    for name, body in fakes.items():
        f = bindir / name
        f.write_text(f"#!/bin/bash\n{body}\n")
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
               SLURM_JOB_NODELIST="gpu-node-[7-8]", SLURM_JOB_ID="123456", SLURM_SUBMIT_DIR=str(tmp_path))
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_sbatch_tasks_get_coordinator_and_ids_from_slurm_env(tmp_path):
    assert _run_sbatch(tmp_path, 'printf "gpu-node-7\\ngpu-node-8\\n"') == [
        "train", "--gin_param", "MIXTURE='balanced'",
        "--coordinator_address", "gpu-node-7:23456", "--num_processes", "2", "--process_id", "1"]


def test_sbatch_survives_a_long_host_list_under_pipefail(tmp_path):
    # A big allocation's host list: taking its first line must not kill the
    # producer with SIGPIPE (exit 141 under `set -o pipefail`).
    lines = _run_sbatch(tmp_path, 'seq -f "gpu-node-%g" 7 200006', nodes=2)
    assert lines[3:5] == ["--coordinator_address", "gpu-node-7:23456"]
