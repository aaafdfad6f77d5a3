"""A run's length in steps, from either steps or a token budget: the one
definition the trainer and the experiment runner (its plan and lineage) share."""
from __future__ import annotations

import math


def steps_for(train_steps: int | None, token_budget: float | None, tokens_per_step: int) -> int:
    """Steps of a run given either steps or a token budget (not both):
    ceil(token_budget / tokens_per_step) for a budget in tokens."""
    if (train_steps is None) == (token_budget is None):
        raise ValueError(
            "set exactly one of train.train_steps (macro TRAIN_STEPS) and train.token_budget "
            f"(tokens); got train_steps={train_steps}, token_budget={token_budget}."
        )
    if train_steps is not None:
        if train_steps <= 0:
            raise ValueError(f"train.train_steps must be positive, got {train_steps}.")
        return int(train_steps)
    if token_budget <= 0:
        raise ValueError(f"train.token_budget must be positive, got {token_budget}.")
    return math.ceil(token_budget / tokens_per_step)
