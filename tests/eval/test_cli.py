"""`codemix eval` on a training workdir and on a model directory; the trainer hook."""
import argparse
import json

import gin
import jax
import orbax.checkpoint as ocp
import pytest

from codemix import main as codemix_main
from codemix.commands import eval as cli
from codemix.eval import loading
from codemix.eval.hook import EvalHook
from codemix.model import decoder
from codemix.model.config import ModelConfig

CFG = ModelConfig(vocab_size=384, d_model=32, num_layers=1, num_heads=2, num_kv_heads=2,
                  head_dim=16, d_ff=64)
MODEL_GIN = "\n".join(f"ModelConfig.{k} = {v!r}" for k, v in CFG.to_dict().items()) + "\n"
def run_cli(argv):
    """`codemix eval ARGV` through the eval module's own parser (the other
    subcommands' modules need not import for this test)."""
    assert codemix_main.COMMANDS["eval"][0] == "codemix.commands.eval"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


RECORD_KEYS = {"run", "step", "benchmark", "category", "metric", "value", "n", "ci"}


@pytest.fixture(scope="module")
def params():
    return decoder.init_params(CFG)


def _save(path, params):
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, params)
    checkpointer.wait_until_finished()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, params):
    d = tmp_path_factory.mktemp("run")
    (d / "operative_config.gin").write_text(MODEL_GIN + "make_train_iterator.mixture = 'local_text'\n")
    _save(d / "checkpoints" / "3" / "params", params)
    _save(d / "checkpoints" / "6" / "params", jax.tree.map(lambda x: x * 0.5, params))
    return d


def test_load_model_for_eval_reads_a_training_workdir(workdir, params):
    cfg, loaded, vocab, info = loading.load_model_for_eval(str(workdir))
    assert cfg == CFG and vocab.vocab_size == 259
    assert info.step == 6 and info.run == workdir.name
    leaf = jax.tree.leaves(loaded)[0]
    assert float(jax.numpy.abs(leaf - 0.5 * jax.tree.leaves(params)[0]).max()) == 0.0
    assert loading.load_model_for_eval(str(workdir), step=3)[3].step == 3
    assert not gin.config_str().strip()  # gin left clean


def test_load_model_for_eval_reads_an_imported_model_dir(tmp_path, params):
    (tmp_path / "model.gin").write_text(MODEL_GIN + "eval_vocabulary.vocabulary = @seqio.ByteVocabulary()\n")
    (tmp_path / "run_info.json").write_text(json.dumps({"run": "smol", "step": 0}))
    _save(tmp_path / "params", params)
    cfg, _, vocab, info = loading.load_model_for_eval(str(tmp_path))
    assert cfg == CFG and vocab.vocab_size == 259 and (info.run, info.step) == ("smol", 0)


def test_model_dir_without_vocabulary_binding_is_a_clear_error(tmp_path, params):
    (tmp_path / "model.gin").write_text(MODEL_GIN)
    _save(tmp_path / "params", params)
    with pytest.raises(Exception, match="eval_vocabulary.task"):
        loading.load_model_for_eval(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="neither a training workdir"):
        loading.load_model_for_eval(str(tmp_path / "missing"))


def test_cli_writes_one_record_schema_with_intervals_and_category_means(workdir, tmp_path, capsys):
    out = tmp_path / "results.json"
    rc = run_cli(["--checkpoint", str(workdir), "--benchmarks", "copa,nq_open",
                            "--limit", "4", "--output", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1 and doc["meta"]["limit"] == 4
    records = doc["records"]
    assert all(set(r) == RECORD_KEYS for r in records)
    metrics = {(r["benchmark"], r["metric"]) for r in records}
    assert metrics == {("copa", "acc"), ("copa", "acc_norm"), ("copa", "prob_correct"), ("copa", "bpb"),
                       ("nq_open", "exact_match"), ("nq_open", "bpb"),
                       ("category:reasoning", "mean"), ("category:knowledge", "mean")}
    assert doc["per_example"]["copa"]["ids"] == [str(i) for i in range(4)]
    for r in records:
        lo, hi = r["ci"]
        assert lo <= r["value"] <= hi and r["step"] == 6
        assert r["n"] == (4 if not r["benchmark"].startswith("category:") else 1)
    assert "copa" in capsys.readouterr().out


def test_cli_unknown_benchmark_lists_valid_names(workdir, tmp_path, capsys):
    rc = run_cli(["--checkpoint", str(workdir), "--benchmarks", "hellaswg",
                            "--output", str(tmp_path / "r.json")])
    assert rc == 2
    assert "valid names: arc_easy" in capsys.readouterr().out


def test_eval_hook_returns_metrics_and_writes_step_results(tmp_path, params):
    from codemix import config

    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    config.parse([], ["make_train_iterator.mixture = 'local_text'", "EvalHook.benchmarks = ['copa']",
                      "EvalHook.limit = 3", "EvalHook.every = 5"], finalize=False)
    hook = EvalHook()
    assert hook.every == 5
    out = hook(10, {"params": params}, CFG, str(tmp_path))
    assert set(out) == {"eval/copa/acc", "eval/copa/acc_norm", "eval/copa/prob_correct", "eval/copa/bpb",
                        "eval/category:reasoning/mean"}
    doc = json.loads((tmp_path / "eval" / "step_10.json").read_text())
    assert {r["step"] for r in doc["records"]} == {10}


def test_a_workdir_trained_on_a_gin_mixture_loads_without_registering_it_first(tmp_path, params):
    # Experiments train on mixtures declared only in gin (`<name>/mixture_spec`);
    # `codemix eval` runs in a fresh process where nothing registered them yet.
    d = tmp_path / "run"
    d.mkdir()
    (d / "operative_config.gin").write_text(
        MODEL_GIN + "make_train_iterator.mixture = 'eval_only_mix'\n"
        "eval_only_mix/mixture_spec.shares = {'local_text': 1.0}\n")
    _save(d / "checkpoints" / "2" / "params", params)
    cfg, _, vocab, info = loading.load_model_for_eval(str(d))
    assert cfg == CFG and vocab.vocab_size == 259 and info.step == 2
    assert not gin.config_str().strip()


def test_cli_categories_match_the_benchmark_registry():
    from codemix.commands import eval as cli
    from codemix.eval import tasks

    assert cli.CATEGORIES == tasks.CATEGORIES
