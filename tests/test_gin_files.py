"""The shipped gin files: required macros fail at parse time naming themselves,
the `_all.gin` share table equals the mixture files, and every file under gin/
parses together with the files it is documented to be loaded with."""
import re
from pathlib import Path

import pytest

import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
import gin
from codemix import config
from codemix.data import mixtures
from codemix.experiments import matrix, runner

GIN = Path(__file__).resolve().parents[1] / "gin"
MODELS = sorted(p.name for p in (GIN / "models").glob("*.gin"))
RUNTIMES = sorted(p.name for p in (GIN / "runtime").glob("*.gin"))
STAGES = ["init", "continue", "cooldown"]
RUNS = sorted(p.name for p in (GIN / "runs").glob("*.gin"))
EXPERIMENTS = sorted(p.name for p in (GIN / "experiments").glob("*.gin"))
INCLUDED_ONLY = ["stages/common.gin"]  # never loaded on its own

# What each stage needs, as the experiment runner binds it (runner.run_bindings).
STAGE_BINDINGS = {
    "MIXTURE": "'balanced'",
    "TOKEN_BUDGET": "65536.0",
    "BATCH_SIZE": "8",
    "SEQ_LEN": "256",
    "PARENT": "'/tmp/parent_run'",
}
STAGE_REQUIRED = {
    "init": ["MIXTURE", "TOKEN_BUDGET", "BATCH_SIZE", "SEQ_LEN"],
    "continue": ["MIXTURE", "TOKEN_BUDGET", "BATCH_SIZE", "SEQ_LEN", "PARENT"],
    "cooldown": ["MIXTURE", "TOKEN_BUDGET", "BATCH_SIZE", "SEQ_LEN", "PARENT"],
}
# What each experiment must be given (README, launch/README.md).
EXPERIMENT_PARAMS = {"paper.gin": ['Experiment.runtime_gin = "gin/runtime/tpu_v4.gin"'],
                     "paper_ladder.gin": ['Experiment.runtime_gin = "gin/runtime/tpu_v4.gin"']}
# Written by `codemix law propose` (step 2 of law_loop.gin), not shipped.
GENERATED_MIXTURES = {"law_loop_opt"}


def _stage_files(stage: str, model="tiny.gin", runtime="cpu.gin") -> list[str]:
    return [f"gin/models/{model}", f"gin/runtime/{runtime}", f"gin/stages/{stage}.gin"]


def _bindings(names) -> list[str]:
    return [f"{n} = {STAGE_BINDINGS[n]}" for n in names]


# -- required macros -------------------------------------------------------------

@pytest.mark.parametrize("finalize", [True, False], ids=["finalize", "no_finalize"])
@pytest.mark.parametrize("stage,missing", [(s, m) for s in STAGES for m in STAGE_REQUIRED[s]])
def test_stage_missing_a_required_macro_fails_at_parse_naming_it(stage, missing, finalize):
    given = [n for n in STAGE_REQUIRED[stage] if n != missing]
    with pytest.raises(config.ConfigError) as err:
        config.parse(_stage_files(stage), _bindings(given), finalize=finalize)
    msg = str(err.value)
    assert f"required gin setting not set: {missing} " in msg
    assert f'--gin_param "{missing} = ..."' in msg


def test_stage_names_every_missing_macro_at_once():
    with pytest.raises(config.ConfigError, match=r"not set: BATCH_SIZE, MIXTURE, PARENT, SEQ_LEN, TOKEN_BUDGET "):
        config.parse(_stage_files("continue"))


@pytest.mark.parametrize("stage", STAGES)
def test_stage_with_its_required_macros_binds_them(stage):
    config.parse(_stage_files(stage), _bindings(STAGE_REQUIRED[stage]))
    assert config.query("make_train_iterator.mixture") == "balanced"
    assert config.query("make_train_iterator.batch_size") == 8
    assert config.query("make_train_iterator.sequence_length") == 256
    assert config.query("train.token_budget") == 65536.0
    assert config.query("train.init_from") == ("/tmp/parent_run" if stage != "init" else None)


def test_paper_experiment_without_a_runtime_fails_at_parse_naming_it():
    with pytest.raises(config.ConfigError, match=r"not set: Experiment\.runtime_gin \(") as err:
        runner.load_experiment("gin/experiments/paper.gin")
    assert "--gin_param \"Experiment.runtime_gin = ...\"" in str(err.value)
    exp = runner.load_experiment("gin/experiments/paper.gin", EXPERIMENT_PARAMS["paper.gin"])
    assert exp.runtime_gin == "gin/runtime/tpu_v4.gin"


def test_required_binding_overridden_later_in_the_same_parse_is_not_reported(tmp_path):
    # gin's REQUIRED is a placeholder: a later file or --gin_param replaces it.
    mine = tmp_path / "mine.gin"
    mine.write_text("include 'gin/stages/init.gin'\nMIXTURE = 'text_only'\n")
    config.parse(["gin/models/tiny.gin", "gin/runtime/cpu.gin", str(mine)],
                 _bindings(["TOKEN_BUDGET", "BATCH_SIZE", "SEQ_LEN"]))
    assert config.query("make_train_iterator.mixture") == "text_only"


# -- the _all.gin share table ----------------------------------------------------

_COLUMNS = {"text": "text", "text_hq": "text_hq", "code_web": "code_web", "markup": "markup",
            "code_adj": "code_adjacent", "code_syn": "code_synthetic"}


def _all_gin_table() -> dict[str, dict[str, float]]:
    """{mixture: {column: share}} from the comment table of gin/mixtures/_all.gin."""
    lines = (GIN / "mixtures" / "_all.gin").read_text().splitlines()
    head = next(i for i, line in enumerate(lines) if re.match(r"#\s+mixture\s", line))
    columns = lines[head].lstrip("#").split()[1:]
    table = {}
    for line in lines[head + 1:]:
        cells = line.lstrip("#").split()
        if not line.startswith("#") or len(cells) != len(columns) + 1:
            break
        table[cells[0]] = dict(zip(columns, map(float, cells[1:])))
    return table


def _hand_written_mixtures() -> set[str]:
    return {p.stem for p in (GIN / "mixtures").glob("*.gin")
            if not p.stem.startswith("_") and p.stem not in GENERATED_MIXTURES
            and "proposed by `codemix law propose`" not in p.read_text().splitlines()[0]}


def test_all_gin_lists_every_mixture_file_once():
    table = _all_gin_table()
    includes = re.findall(r"^include 'gin/mixtures/(\w+)\.gin'$",
                          (GIN / "mixtures" / "_all.gin").read_text(), flags=re.MULTILINE)
    assert len(table) == len(includes) == len(set(includes))
    assert set(table) == set(includes) == _hand_written_mixtures()


def test_all_gin_table_equals_the_mixture_files():
    table = _all_gin_table()
    assert len(table) >= 16
    for name, row in table.items():
        gin.clear_config()
        shares = mixtures.get_spec(name).shares  # step-0 shares, as training reads them
        from_file = {col: shares.get(task, 0.0) for col, task in _COLUMNS.items()}
        assert {c: row[c] for c in _COLUMNS} == from_file, f"_all.gin row {name!r} differs from {name}.gin"
        assert set(shares) <= set(_COLUMNS.values()), f"{name}.gin has a task _all.gin has no column for"
        code = sum(s for t, s in shares.items() if t not in ("text", "text_hq"))
        assert row["code"] == pytest.approx(code, abs=1e-9), f"_all.gin code column of {name!r}"


def test_all_gin_parses_with_every_mixture_bound():
    config.parse(["gin/mixtures/_all.gin"])
    for name in _all_gin_table():
        assert mixtures._bound(name), name


# -- every shipped file loads with its companions --------------------------------

def test_every_gin_file_is_covered_here():
    shipped = {p.relative_to(GIN).as_posix() for p in GIN.rglob("*.gin")}
    covered = ({f"models/{m}" for m in MODELS} | {f"runtime/{r}" for r in RUNTIMES}
               | {f"stages/{s}.gin" for s in STAGES} | {f"runs/{r}" for r in RUNS}
               | {f"experiments/{e}" for e in EXPERIMENTS} | set(INCLUDED_ONLY)
               | {f"mixtures/{m}.gin" for m in _hand_written_mixtures()} | {"mixtures/_all.gin"})
    generated = {f"mixtures/{m}.gin" for m in GENERATED_MIXTURES}
    assert shipped - generated == covered
    for stage in STAGES:
        assert "include 'gin/stages/common.gin'" in (GIN / "stages" / f"{stage}.gin").read_text()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_model_runtime_and_each_stage_parse_together(model, runtime):
    """The files a stage run is made of (as runner._train_one and the README's `codemix plan`)."""
    from codemix.model.config import ModelConfig

    for stage in STAGES:
        gin.clear_config()
        config.parse(_stage_files(stage, model, runtime), _bindings(STAGE_REQUIRED[stage]))
        cfg = ModelConfig()
        assert cfg.vocab_size == config.query("ModelConfig.vocab_size") and cfg.num_layers > 0
        assert config.query("make_schedule.kind") == ("linear" if stage == "cooldown" else "cosine")


@pytest.mark.parametrize("run", RUNS)
def test_single_run_parses_alone(run):
    config.parse([f"gin/runs/{run}"])
    assert config.query("make_train_iterator.mixture") is not None
    assert config.query("train.train_steps") or config.query("train.token_budget")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_and_every_stage_of_its_runs_parse(experiment, tmp_path):
    """What `codemix experiment run` parses: the experiment, then per run the
    model, runtime and stage gin with the run's bindings (runner._train_one)."""
    exp = runner.load_experiment(f"gin/experiments/{experiment}", EXPERIMENT_PARAMS.get(experiment, ()))
    runs = matrix.expand(exp.variants)
    assert runs
    for name in {r.stage.mixture for r in runs} - GENERATED_MIXTURES:
        assert mixtures.is_mixture(name), f"{experiment} names unknown mixture {name!r}"
    one_per_kind = {(r.stage.kind, r.parent is None): r for r in runs}
    for run in one_per_kind.values():
        gin.clear_config()
        files = [exp.model_gin, exp.runtime_gin, f"gin/stages/{run.stage.kind}.gin"]
        config.parse(files, runner.run_bindings(exp, run, tmp_path))
        assert config.query("make_train_iterator.mixture") == run.stage.mixture
        assert config.query("train.token_budget") == float(run.stage.tokens)
