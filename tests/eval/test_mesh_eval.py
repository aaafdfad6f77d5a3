"""Evaluation on the whole mesh equals single-device evaluation.

The test process has 8 CPU devices (tests/conftest.py). The same params are
scored once on one device and once sharded over a mesh (the training
partitioning rules); packed log-likelihoods agree up to float reassociation,
choices and accuracies exactly, greedy generations token for token, held-out
loss and bits per byte to float tolerance. The 2-process test runs
tests/eval/mesh_eval_worker.py in two processes joined by jax.distributed
(gloo) and compares what each process gets with the single-device numbers.
"""
import json
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import seqio

from codemix.eval import loading, perplexity, runner, scoring, tasks
from codemix.eval import mesh as eval_mesh
from codemix.model import decode, decoder
from codemix.train import partitioning
from tests.eval import mesh_eval_worker as worker
from tests.scale.helpers import free_port
from tests.train.helpers import REPO, env

CFG = worker.CFG
VOCAB = seqio.ByteVocabulary()
# Every mesh axis in use (fsdp over all 8 devices, the CPU runtime's default,
# is what test_codemix_eval_loads_onto_the_runs_mesh_or_one_device loads onto).
MESHES = {"data2_fsdp2_tensor2": {"data": 2, "fsdp": 2, "tensor": 2}}


@pytest.fixture(scope="module")
def single():
    params = decoder.init_params(CFG, seed=0)
    assert eval_mesh.mesh_of(params) is None
    return params


@pytest.fixture(scope="module", params=list(MESHES), ids=list(MESHES))
def sharded(request, single):
    mesh = partitioning.make_mesh(**MESHES[request.param])
    params = eval_mesh.place_params(CFG, single, mesh)
    assert eval_mesh.mesh_of(params) is mesh
    return params


def test_params_take_the_training_shardings(sharded):
    mesh = eval_mesh.mesh_of(sharded)
    _, axes = decoder.graphdef_and_axes(CFG)
    want = partitioning.tree_shardings(axes, decoder.abstract_params(CFG), mesh)
    for got, sh in zip(jax.tree.leaves(sharded), jax.tree.leaves(want)):
        assert got.sharding.is_equivalent_to(sh, got.ndim)
    # Something is really split: the embedding's width is over fsdp.
    assert any(len(x.sharding.device_set) > 1 and not x.sharding.is_fully_replicated
               for x in jax.tree.leaves(sharded))


def test_sharded_scores_equal_single_device_scores(single, sharded):
    requests = worker.requests()
    one = scoring.score_packed(CFG, single, requests, row_len=64, batch_size=3, max_row_len=128)
    many = scoring.score_packed(CFG, sharded, requests, row_len=64, batch_size=3, max_row_len=128)
    np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-5)
    assert worker.choices(many) == worker.choices(one)
    # Scores are real log-likelihoods (not all zero from padded rows).
    assert np.all(one < 0)


def test_sharded_greedy_generation_equals_single_device(single, sharded):
    prompts = worker.prompts()
    one = decode.generate(CFG, single, prompts, 12, batch_size=3, pad_multiple=16, eos_id=1)
    many = decode.generate(CFG, sharded, prompts, 12, batch_size=3, pad_multiple=16, eos_id=1,
                           placement=eval_mesh.placement(sharded))
    assert many == one
    assert all(len(o) > 0 for o in one)


def test_sharded_heldout_perplexity_equals_single_device(single, sharded):
    docs = worker.heldout_docs()
    one = perplexity.evaluate_model(CFG, single, VOCAB, docs, sequence_length=32, batch_size=3)
    many = perplexity.evaluate_model(CFG, sharded, VOCAB, docs, sequence_length=32, batch_size=3)
    for family in docs:
        a, b = one[family], many[family]
        assert (a.tokens, a.bytes) == (b.tokens, b.bytes)
        np.testing.assert_allclose([b.loss, b.bpb], [a.loss, a.bpb], rtol=1e-5)
        np.testing.assert_allclose(b.doc_nll, a.doc_nll, rtol=1e-5)


@pytest.fixture
def toy_benchmarks():
    mc = [{"id": str(i), "contexts": [f"Q{i} is"] * 3,
           "continuations": [" red", " a blue one", " green!"], "label": i % 3} for i in range(7)]
    qa = [{"id": str(i), "prompt": f"Q: {i}+{i}?\nA:", "answers": [str(2 * i)]} for i in range(5)]
    tasks.register_benchmark("mesh_mc", "reasoning", "multiple_choice", lambda: mc)
    tasks.register_benchmark("mesh_qa", "knowledge", "generation", lambda: qa, max_new_tokens=6,
                             stop_sequences=("\n\n",))
    names = ["mesh_mc", "mesh_qa"]
    yield names
    for n in names:
        tasks.BENCHMARKS.pop(n)
        seqio.TaskRegistry.remove(n)


def test_evaluator_records_on_a_mesh_equal_single_device(single, sharded, toy_benchmarks):
    def run(params):
        settings = runner.EvalSettings(row_len=64, batch_size=2, gen_batch_size=3, bootstrap_resamples=50)
        out = runner.Evaluator(CFG, params, VOCAB, settings).run_full(toy_benchmarks)
        return {(r["benchmark"], r["metric"]): r["value"] for r in out.records}, out.details

    (one, one_details), (many, many_details) = run(single), run(sharded)
    assert set(one) == set(many) and ("mesh_qa", "exact_match") in one
    for key, value in one.items():
        if key[1] in ("acc", "acc_norm", "exact_match"):
            assert many[key] == value, key
        else:
            assert many[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # The same predictions, example by example (generated answers included).
    assert many_details["mesh_qa"] == one_details["mesh_qa"]
    assert [d["pred"] for d in many_details["mesh_mc"]] == [d["pred"] for d in one_details["mesh_mc"]]
    np.testing.assert_allclose([d["loglikelihoods"] for d in many_details["mesh_mc"]],
                               [d["loglikelihoods"] for d in one_details["mesh_mc"]], rtol=1e-5, atol=1e-5)


def _model_dir(path, params, extra=""):
    path.mkdir()
    gin = "\n".join(f"ModelConfig.{k} = {v!r}" for k, v in CFG.to_dict().items())
    (path / "model.gin").write_text(gin + "\neval_vocabulary.vocabulary = @seqio.ByteVocabulary()\n" + extra)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path / "params", params)
    checkpointer.wait_until_finished()
    return str(path)


def test_codemix_eval_loads_onto_the_runs_mesh_or_one_device(tmp_path, single):
    _, params, _, _ = loading.load_model_for_eval(_model_dir(tmp_path / "all", single))
    mesh = eval_mesh.mesh_of(params)
    assert mesh is not None and mesh.size == jax.device_count() == 8
    assert dict(mesh.shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    _, params, _, _ = loading.load_model_for_eval(
        _model_dir(tmp_path / "mesh", single, "make_mesh.data = 2\nmake_mesh.tensor = 2\n"))
    assert dict(eval_mesh.mesh_of(params).shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    # A run bound to one device evaluates exactly as before: params on device 0.
    _, params, _, _ = loading.load_model_for_eval(
        _model_dir(tmp_path / "one", single, "make_mesh.num_devices = 1\n"))
    assert eval_mesh.mesh_of(params) is None
    assert all(x.sharding.device_set == {jax.devices()[0]} for x in jax.tree.leaves(params))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(single)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_batch_that_does_not_split_over_the_row_shards_is_refused():
    mesh = partitioning.make_mesh(fsdp=-1)
    assert eval_mesh.row_multiple(mesh) == 8 and eval_mesh.round_rows(3, mesh) == 8
    with pytest.raises(ValueError, match="does not split over 8 row shards"):
        eval_mesh.put_rows(mesh, np.zeros((3, 4), np.int32))


@pytest.mark.slow
def test_two_processes_evaluate_like_one_device(tmp_path, single):
    """2 processes x 4 devices (gloo): every process gets the single-device numbers."""
    port = free_port()
    procs, logs = [], []
    for pid in range(2):
        log = tmp_path / f"process_{pid}.log"
        cmd = [sys.executable, "-m", "tests.eval.mesh_eval_worker", f"127.0.0.1:{port}", "2", str(pid),
               str(tmp_path / f"out_{pid}.json")]
        with open(log, "w") as out:
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env(devices=4), stdout=out,
                                          stderr=subprocess.STDOUT))
        logs.append(log)
    try:
        for p, log in zip(procs, logs):
            p.wait(timeout=600)
            assert p.returncode == 0, log.read_text()[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    want = worker.evaluate(single)
    for pid in range(2):
        got = json.loads((tmp_path / f"out_{pid}.json").read_text())
        assert got["processes"] == 2 and got["devices"] == 8 and got["row_multiple"] == 8
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-5, atol=1e-5)
        assert got["choices"] == want["choices"]
        assert got["generated"] == want["generated"]
        np.testing.assert_allclose(got["heldout"], want["heldout"], rtol=1e-5)
