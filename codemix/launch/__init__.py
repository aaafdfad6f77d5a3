"""Launchers for multi-host runs: Cloud TPU VMs (`tpu`) and SLURM GPU clusters
(`slurm`). Each builds the exact shell commands first, so `--dry_run` prints
what would run and the tests check it; `codemix launch` is the CLI."""
