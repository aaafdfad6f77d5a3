"""The SLURM template's XLA GPU flags: the ones it promises, all known to the installed XLA."""
import os
import re
import subprocess
import sys

from codemix.launch import slurm


def _template_xla_flags() -> list[str]:
    script = slurm.SlurmJob(command=("codemix", "train"), nodes=2).render()
    match = re.search(r'^export XLA_FLAGS="(.*?)"$', script, flags=re.MULTILINE | re.DOTALL)
    assert match, "the template no longer sets XLA_FLAGS"
    body = match.group(1).replace("\\\n", " ")
    assert body.rstrip().endswith("${XLA_FLAGS:-}")  # the user's own flags come last and win
    return body.replace("${XLA_FLAGS:-}", "").split()


def test_sbatch_sets_the_latency_hiding_scheduler_and_pipelined_collectives():
    flags = dict(f.lstrip("-").split("=", 1) for f in _template_xla_flags())
    assert flags["xla_gpu_enable_latency_hiding_scheduler"] == "true"
    for op in ("all_gather", "reduce_scatter", "all_reduce"):
        assert flags[f"xla_gpu_enable_pipelined_{op}"] == "true"
        assert int(flags[f"xla_gpu_{op}_combine_threshold_bytes"]) >= 1 << 26


def test_installed_xla_knows_every_flag_of_the_template():
    # XLA aborts the process on an unknown flag in XLA_FLAGS (a renamed flag would
    # kill every task of the job at start); the GPU flags are parsed on CPU too.
    env = dict(os.environ, XLA_FLAGS=" ".join(_template_xla_flags()), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", "import jax; print(int(jax.numpy.ones(3).sum()))"],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr[-2000:]
