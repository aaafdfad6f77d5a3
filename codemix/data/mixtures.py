"""Mixtures: token shares over the family tasks, declared in gin/mixtures/*.gin.

A mixture file binds the scoped configurable `mixture_spec` under the
mixture's name, e.g. gin/mixtures/balanced.gin:

    balanced/mixture_spec.shares = {"text": 0.5, "code_web": 0.5}

Shares are fractions of *tokens* (packed rows are all the same length and
fully used, so row shares are token shares; see pipeline.py) and must sum to 1.
`schedule` optionally changes the shares from given optimizer steps on:

    balanced_to_text/mixture_spec.schedule = [(1000, {"text": 1.0})]

A mixture is found by name: from bindings already parsed (an experiment that
includes the file), else by parsing gin/mixtures/<name>.gin (which only adds
`<name>/mixture_spec.*` bindings). This module only reads specs;
codemix/data/tasks.py registers them with SeqIO (`register_mixture`).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import seqio

import gin
from codemix.data.readers import DataError
from codemix.data.task_table import TASKS

log = logging.getLogger(__name__)

# The gin files that ship inside the package (codemix/gin: a link to the
# repository's gin/ in a checkout, a copy in a wheel), so mixtures are found
# from a non-editable install too.
MIXTURE_DIR = Path(__file__).resolve().parents[1] / "gin" / "mixtures"
SHARE_TOLERANCE = 1e-6


@gin.configurable
def mixture_spec(
    shares: Mapping[str, float] = gin.REQUIRED,
    schedule: Sequence[tuple[int, Mapping[str, float]]] = (),
    description: str = "",
) -> dict:
    """One mixture (bind it under the mixture's name as a gin scope).

    Args:
      shares: task -> fraction of training tokens (sums to 1) from step 0.
      schedule: [(step, shares), ...]: new shares from that optimizer step on.
      description: one line for `codemix data inspect`.
    """
    return {"shares": dict(shares), "schedule": [(int(s), dict(sh)) for s, sh in schedule],
            "description": description}


@dataclasses.dataclass(frozen=True)
class MixtureSpec:
    name: str
    phases: tuple[tuple[int, dict[str, float]], ...]  # (first step, task shares), sorted
    description: str = ""
    source: str = ""

    @property
    def tasks(self) -> list[str]:
        seen: dict[str, None] = {}
        for _, shares in self.phases:
            seen.update(dict.fromkeys(shares))
        return list(seen)

    @property
    def shares(self) -> dict[str, float]:
        return self.phases[0][1]

    def rates_at(self, step: int) -> dict[str, float]:
        current = self.phases[0][1]
        for start, shares in self.phases:
            if step >= start:
                current = shares
        return current

    def family_shares(self) -> dict[str, float]:
        """Shares by corpus family (sub-tasks such as text_hq count as their family)."""
        out: dict[str, float] = {}
        for task, share in self.shares.items():
            fam = TASKS[task].family if task in TASKS else task
            out[fam] = out.get(fam, 0.0) + share
        return out


def available() -> list[str]:
    return sorted(p.stem for p in MIXTURE_DIR.glob("*.gin") if not p.stem.startswith("_"))


def _validate(name: str, shares: dict[str, float], where: str) -> dict[str, float]:
    unknown = [t for t in shares if t not in TASKS and t not in seqio.TaskRegistry.names()]
    if unknown:
        raise DataError(
            f"{where}: mixture {name!r} names unknown famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
            f"use task names from {sorted(TASKS)}."
        )
    bad = {t: s for t, s in shares.items() if not (isinstance(s, (int, float)) and s >= 0 and math.isfinite(s))}
    if bad:
        raise DataError(f"{where}: mixture {name!r} has invalid shares {bad}; shares are fractions in [0, 1].")
    total = sum(shares.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise DataError(
            f"{where}: the shares of mixture {name!r} sum to {total:.6g}, not 1 ({shares}); "
            f"fix the table so the fractions add up to 1."
        )
    return {t: float(s) for t, s in shares.items() if s > 0}


def _bound(name: str) -> bool:
    try:
        gin.query_parameter(f"{name}/mixture_spec.shares")
        return True
    except (ValueError, KeyError):
        return False


def get_spec(name: str) -> MixtureSpec:
    """The mixture `name` (parsing gin/mixtures/<name>.gin if not yet bound)."""
    path = MIXTURE_DIR / f"{name}.gin"
    where = str(path) if path.exists() else f"gin binding {name}/mixture_spec"
    if not _bound(name):
        if not path.exists():
            raise DataError(
                f"unknown mixture {name!r}: no gin/mixtures/{name}.gin and no binding "
                f"{name}/mixture_spec.shares. Known mixtures: {available()}."
            )
        with gin.unlock_config():
            gin.parse_config_file(str(path))
        if not _bound(name):
            raise DataError(f"{path}: does not bind {name}/mixture_spec.shares; add that line.")
    with gin.config_scope(name):
        raw = mixture_spec()
    phases = [(0, _validate(name, raw["shares"], where))]
    for step, shares in sorted(raw["schedule"]):
        if step <= 0:
            raise DataError(f"{where}: schedule step {step} of mixture {name!r} must be > 0 (step 0 is `shares`).")
        phases.append((step, _validate(name, shares, f"{where} (schedule step {step})")))
    return MixtureSpec(name, tuple(phases), raw["description"], where)


def is_mixture(name: str) -> bool:
    return _bound(name) or (MIXTURE_DIR / f"{name}.gin").exists()
