"""Variants as data: chains of stages, and the study's experiment matrix.

A *stage* is (kind, mixture, token budget); a *variant* is a chain of stages.
Variants that share a prefix share its runs: "text_only" and
"text_only+cooldown_code" train the init stage once. `expand` turns variants
into the unique runs in dependency order, each knowing its parent run.

Run names are the chain itself, e.g. `init-balanced-200B__continue-text_only-200B`, so
they are stable, readable, and identical across experiments that agree on a
prefix.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import gin

STAGE_KINDS = ("init", "continue", "cooldown")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: how it starts (kind), what it reads (mixture), how long (tokens), and
    at which ladder size (0: the experiment's model_gin; N > 0: codemix/experiments/ladder.py's size N)."""

    kind: str
    mixture: str
    tokens: float
    size: int = 0

    def __post_init__(self):
        if self.kind not in STAGE_KINDS:
            raise ValueError(f"stage kind {self.kind!r} is unknown; use one of {STAGE_KINDS}.")
        if self.tokens <= 0:
            raise ValueError(f"stage {self.kind}/{self.mixture}: token budget must be positive.")
        if self.size < 0:
            raise ValueError(f"stage {self.kind}/{self.mixture}: ladder size {self.size} must be >= 1 (0: none).")

    @property
    def slug(self) -> str:
        return f"{self.kind}-{self.mixture}-{human_tokens(self.tokens)}" + (f"-w{self.size}" if self.size else "")


@dataclasses.dataclass(frozen=True)
class Variant:
    """A chain of stages; `seeds`, when set, replaces Experiment.seeds for this variant (a ladder
    runs more seeds at its top rung than below it)."""

    name: str
    stages: tuple[Stage, ...]
    seeds: tuple[int, ...] | None = None

    def __post_init__(self):
        if not self.stages:
            raise ValueError(f"variant {self.name!r} has no stages.")
        if self.stages[0].kind != "init":
            raise ValueError(
                f"variant {self.name!r} starts with a {self.stages[0].kind!r} stage, which needs a "
                f"parent; the first stage of a chain must be 'init'."
            )
        for s in self.stages[1:]:
            if s.kind == "init":
                raise ValueError(f"variant {self.name!r}: 'init' can only be the first stage.")


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: the last stage of a chain prefix."""

    name: str
    stage: Stage
    parent: str | None
    variants: tuple[str, ...]
    depth: int
    seed: int = 0


def human_tokens(tokens: float) -> str:
    """200e9 -> "200B", 122880 -> "123K": short, stable budget labels for run names."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if tokens >= scale:
            return f"{tokens / scale:.4g}{unit}"
    return f"{tokens:.4g}"


def run_name(stages: Sequence[Stage], seed: int = 0) -> str:
    """The chain's stage slugs; seeds other than 0 add `__seed<N>` (seed 0 keeps
    the plain name, so single-seed experiments keep their run names)."""
    return "__".join(s.slug for s in stages) + (f"__seed{seed}" if seed else "")


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("Experiment.seeds is empty; give at least one seed, e.g. Experiment.seeds = [0, 1].")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"Experiment.seeds {list(seeds)} repeats a seed; list each seed once.")
    if any(s < 0 for s in seeds):
        raise ValueError(f"Experiment.seeds {list(seeds)} has a negative seed; seeds are integers >= 0.")
    return seeds


def expand(variants: Iterable[Variant], seeds: Sequence[int] = (0,)) -> list[Run]:
    """Unique runs of all variants for every seed, parents before children.

    A seed sets both the initialisation and the data order of every stage of
    a chain; each seed's chain is its own set of runs (a seed-1 continue stage
    starts from the seed-1 init run)."""
    variants = list(variants)
    seeds = check_seeds(seeds)
    runs: dict[str, Run] = {}
    order: list[str] = []
    seen_variants: set[str] = set()
    for v in variants:
        if v.name in seen_variants:
            raise ValueError(f"variant name {v.name!r} appears twice in the experiment.")
        seen_variants.add(v.name)
    every = list(dict.fromkeys([*seeds, *(s for v in variants for s in (v.seeds or ()))]))
    for seed in every:
        for v in variants:
            if seed not in (check_seeds(v.seeds) if v.seeds is not None else seeds):
                continue
            parent = None
            for i in range(len(v.stages)):
                name = run_name(v.stages[: i + 1], seed)
                if name in runs:
                    r = runs[name]
                    runs[name] = dataclasses.replace(r, variants=r.variants + (v.name,))
                else:
                    runs[name] = Run(name=name, stage=v.stages[i], parent=parent, variants=(v.name,),
                                     depth=i, seed=seed)
                    order.append(name)
                parent = name
    index = {n: i for i, n in enumerate(order)}
    return sorted((runs[n] for n in order), key=lambda r: (r.depth, index[r.name]))


def variant_seeds(variant: Variant, seeds: Sequence[int]) -> tuple[int, ...]:
    """The seeds a variant runs: its own where it has them, else the experiment's."""
    return tuple(variant.seeds) if variant.seeds is not None else tuple(seeds)


def final_run(variant: Variant, seed: int = 0) -> str:
    return run_name(variant.stages, seed)


@gin.configurable
def study_matrix(
    init_tokens: float = gin.REQUIRED,
    cooldown_tokens: float = gin.REQUIRED,
    continue_tokens: float | None = None,
    groups: Sequence[str] = ("core", "sweep", "quality"),
) -> list[Variant]:
    """The paper's experiment matrix.

    Args:
      init_tokens: budget of an init stage (paper: 200B tokens).
      cooldown_tokens: budget of a cooldown (paper: 40B tokens).
      continue_tokens: budget of a continue stage (default: init_tokens).
      groups: which parts to build:
        "core": text_only, balanced_only, balanced->text, code->text (code_init
          then continue_text, as the paper's Table 2), each
          alone, +cooldown with code and +cooldown without code. text_only and
          balanced_only are one init stage of init+continue tokens, so every
          core variant sees the same number of pre-cooldown tokens.
        "sweep": init on code_p0/25/50/75/90/100 (share of code tokens).
        "quality": init on quality_web, quality_markup, quality_adjacent,
          quality_synthetic (web code, + markup, + code-adjacent, + synthetic).
    """
    cont = continue_tokens or init_tokens
    known = ("core", "sweep", "quality")
    for g in groups:
        if g not in known:
            raise ValueError(f"study_matrix group {g!r} is unknown; use some of {known}.")
    variants: list[Variant] = []
    if "core" in groups:
        core = {
            "text_only": (Stage("init", "text_only", init_tokens + cont),),
            "balanced_only": (Stage("init", "balanced", init_tokens + cont),),
            # Table 2 / §3.1 of the paper: the continued pre-training of both
            # staged variants is 90% text and 10% code (gin/mixtures/continue_text.gin),
            # and the code-initialised model is 80% code and 20% markup (code_init.gin).
            "balanced_text": (Stage("init", "balanced", init_tokens), Stage("continue", "continue_text", cont)),
            "code_text": (Stage("init", "code_init", init_tokens), Stage("continue", "continue_text", cont)),
        }
        for name, stages in core.items():
            variants.append(Variant(name, stages))
            variants.append(Variant(f"{name}+cooldown_code",
                                    stages + (Stage("cooldown", "cooldown_with_code", cooldown_tokens),)))
            variants.append(Variant(f"{name}+cooldown_nocode",
                                    stages + (Stage("cooldown", "cooldown_without_code", cooldown_tokens),)))
    if "sweep" in groups:
        for p in (0, 25, 50, 75, 90, 100):
            variants.append(Variant(f"code_p{p}", (Stage("init", f"code_p{p}", init_tokens),)))
    if "quality" in groups:
        for q in ("web", "markup", "adjacent", "synthetic"):
            variants.append(Variant(f"quality_{q}", (Stage("init", f"quality_{q}", init_tokens),)))
    return variants


@gin.configurable
def chain(name: str = gin.REQUIRED, stages: Sequence[Sequence] = gin.REQUIRED) -> Variant:
    """A variant written in gin as a list of (kind, mixture, tokens) triples:

        my_variant/chain.name = "balanced_text"
        my_variant/chain.stages = [("init", "balanced", 1e6), ("continue", "text_only", 1e6)]
        Experiment.variants = [@my_variant/chain()]
    """
    return Variant(name, tuple(Stage(str(k), str(m), float(t)) for k, m, t in stages))


@gin.configurable
def variant_list(groups: Sequence[Sequence[Variant]] = ()) -> list[Variant]:
    """Concatenate lists of variants (e.g. @study_matrix() and extra @chain()s)."""
    return [v for g in groups for v in (g if isinstance(g, (list, tuple)) else [g])]
