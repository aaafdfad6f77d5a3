"""Benchmarks are SeqIO tasks with well-formed examples; names resolve clearly."""
import pytest
import seqio

from codemix.eval import tasks

EXPECTED = {
    "reasoning": ["arc_easy", "arc_challenge", "boolq", "hellaswag", "openbookqa", "piqa", "siqa",
                  "commonsense_qa", "winogrande", "copa", "sciq", "cb"],
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


def test_reference_solutions_continue_the_prompt_as_the_model_would_write_them():
    # HumanEval: prompt + solution is the original prompt + canonical solution
    # (the whitespace cut off the prompt starts the solution).
    from codemix.eval import sources

    for row, ex in zip(sources.read_human_eval(), tasks.load_examples("humaneval")):
        assert ex["prompt"] + ex["solution"] == row["prompt"] + row["canonical_solution"]
        assert ex["solution"].startswith("\n")
    # MBPP: the reference code at column 0 after the prompt's "```python\n",
    # Unix line ends, and it passes the benchmark's tests as the program.
    examples = tasks.load_examples("mbpp")
    assert len(examples) == 500
    for ex in examples:
        assert ex["prompt"].endswith("```python\n") and "\r" not in ex["solution"]
        assert not ex["solution"][0].isspace()
    for ex in examples[:10]:
        exec(compile(ex["program_prefix"] + ex["solution"] + "\n" + ex["tests"], ex["id"], "exec"), {})  # noqa: S102


def test_cb_has_56_three_way_examples_with_true_false_neither_answers():
    examples = tasks.load_examples("cb")
    assert len(examples) == 56
    for ex in examples:
        assert ex["continuations"] == [" True", " False", " Neither"]
        assert ex["label"] in (0, 1, 2)
        assert ex["contexts"][0].endswith(" True, False, or Neither?\nAnswer:")
        assert "\nQuestion: " in ex["contexts"][0]
    counts = [sum(ex["label"] == k for ex in examples) for k in range(3)]
    assert sum(counts) == 56 and min(counts) > 0  # every class occurs


def test_study_reasoning_group_resolves_to_the_nine_shipped_tasks():
    names = tasks.resolve_names(["study_reasoning"])
    assert names == ["boolq", "piqa", "sciq", "siqa", "cb", "copa", "hellaswag", "winogrande", "arc_easy"]
    assert tasks.GROUP_UNAVAILABLE["study_reasoning"] == tasks.STUDY_REASONING_UNAVAILABLE == ("quac", "storycloze")
    assert set(tasks.UNAVAILABLE_REASON) == {"quac", "storycloze"}
    # 9 shipped + 2 missing = the study's 11; groups mix with names without repeats.
    assert len(names) + len(tasks.STUDY_REASONING_UNAVAILABLE) == 11
    assert tasks.resolve_names(["copa", "study_reasoning", "mbpp"]) == ["copa"] + [
        n for n in names if n != "copa"] + ["mbpp"]


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
