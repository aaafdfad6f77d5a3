"""Generated Python problems for the embedded code_synthetic family.

Each template draws parameters from a seeded `random.Random` and returns a
`Problem`: a statement, a reference solution (source text) and asserts whose
expected values come from an independent Python computation in the template,
not from the solution. `verify()` executes every solution with its asserts in
a child interpreter (per-problem time limit) and reports which pass; the
corpus keeps only those.
"""
from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable

NAMES = ("alpha", "beta", "gamma", "delta", "kappa", "sigma", "omega", "zeta", "theta", "lambda_")
WORDS = ("apple", "river", "stone", "cloud", "tiger", "maple", "ocean", "piano", "lemon", "forest",
         "candle", "silver", "garden", "window", "rocket", "yellow")


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str  # function name
    template: str
    statement: str
    solution: str
    tests: tuple[str, ...]

    def render(self) -> str:
        """The document text: statement as a docstring, solution, then tests."""
        doc = textwrap.fill(self.statement, 88)
        return f'"""{doc}\n"""\n\n{self.solution.strip()}\n\n\n' + "\n".join(self.tests) + "\n"


def _fname(rng: random.Random, base: str) -> str:
    return f"{base}_{rng.choice(NAMES)}" if rng.random() < 0.5 else base


def _rand_list(rng, n=None, lo=-20, hi=50):
    return [rng.randint(lo, hi) for _ in range(n if n is not None else rng.randint(0, 8))]


def t_multiples(rng):
    a, b = rng.randint(2, 9), rng.randint(2, 13)
    f = _fname(rng, "sum_of_multiples")
    sol = f"def {f}(n):\n    return sum(i for i in range(n) if i % {a} == 0 or i % {b} == 0)\n"
    ns = [rng.randint(0, 200) for _ in range(4)]
    tests = [f"assert {f}({n}) == {sum(i for i in range(n) if i % a == 0 or i % b == 0)}" for n in ns]
    return f, f"Return the sum of all non-negative integers below n that are multiples of {a} or {b}.", sol, tests


def t_count_chars(rng):
    chars = "".join(sorted(rng.sample("aeiourstln", rng.randint(2, 4))))
    f = _fname(rng, "count_letters")
    sol = f"def {f}(s):\n    return sum(1 for c in s.lower() if c in {chars!r})\n"
    words = [" ".join(rng.sample(WORDS, 3)).title() for _ in range(3)]
    tests = [f"assert {f}({w!r}) == {sum(c in chars for c in w.lower())}" for w in words]
    return f, f"Count how many characters of the string s are one of {list(chars)}, ignoring case.", sol, tests


def t_reverse_words(rng):
    sep = rng.choice([" ", ",", "-"])
    f = _fname(rng, "reverse_words")
    sol = f"def {f}(s):\n    return {sep!r}.join(reversed(s.split({sep!r})))\n"
    cases = [sep.join(rng.sample(WORDS, rng.randint(1, 4))) for _ in range(3)]
    tests = [f"assert {f}({c!r}) == {sep.join(reversed(c.split(sep)))!r}" for c in cases]
    return f, f"Split s on {sep!r}, reverse the order of the parts and join them with {sep!r} again.", sol, tests


def t_sequence(rng):
    a, b, k = rng.randint(0, 5), rng.randint(1, 5), rng.randint(1, 3)
    f = _fname(rng, "sequence_term")
    sol = (f"def {f}(n):\n    x, y = {a}, {b}\n    for _ in range(n):\n"
           f"        x, y = y, {k} * y + x\n    return x\n")

    def ref(n):
        seq = [a, b]
        while len(seq) <= n:
            seq.append(k * seq[-1] + seq[-2])
        return seq[n]

    ns = rng.sample(range(20), 4)
    tests = [f"assert {f}({n}) == {ref(n)}" for n in ns]
    stmt = (f"A sequence starts with {a}, {b} and each next term is {k} times the previous term plus "
            f"the one before it. Return term n (term 0 is {a}).")
    return f, stmt, sol, tests


def t_palindrome(rng):
    f = _fname(rng, "is_palindrome")
    sol = f"def {f}(s):\n    kept = [c.lower() for c in s if c.isalnum()]\n    return kept == kept[::-1]\n"
    cases = ["A man, a plan, a canal: Panama", rng.choice(WORDS), "No lemon, no melon", "Was it a car?",
             rng.choice(WORDS) + rng.choice(WORDS)[::-1]]
    tests = []
    for c in rng.sample(cases, 3):
        kept = [ch.lower() for ch in c if ch.isalnum()]
        tests.append(f"assert {f}({c!r}) is {kept == list(reversed(kept))}")
    return f, "Return True when s reads the same forwards and backwards, ignoring case and non-alphanumeric characters.", sol, tests


def t_running_max(rng):
    f = _fname(rng, "running_max")
    sol = (f"def {f}(xs):\n    out = []\n    for x in xs:\n"
           f"        out.append(x if not out else max(out[-1], x))\n    return out\n")
    tests = []
    for _ in range(3):
        xs = _rand_list(rng)
        exp = [max(xs[: i + 1]) for i in range(len(xs))]
        tests.append(f"assert {f}({xs}) == {exp}")
    return f, "Return the list whose i-th element is the largest of the first i+1 elements of xs.", sol, tests


def t_clamp(rng):
    lo = rng.randint(-10, 5)
    hi = lo + rng.randint(1, 30)
    f = _fname(rng, "clamp_all")
    sol = f"def {f}(xs):\n    return [min(max(x, {lo}), {hi}) for x in xs]\n"
    tests = []
    for _ in range(3):
        xs = _rand_list(rng)
        tests.append(f"assert {f}({xs}) == {[lo if x < lo else min(x, hi) for x in xs]}")
    return f, f"Return a copy of xs with every value limited to the range [{lo}, {hi}].", sol, tests


def t_caesar(rng):
    k = rng.randint(1, 25)
    f = _fname(rng, "shift_letters")
    sol = (f"def {f}(s):\n    out = []\n    for c in s:\n        if c.islower():\n"
           f"            out.append(chr((ord(c) - 97 + {k}) % 26 + 97))\n        elif c.isupper():\n"
           f"            out.append(chr((ord(c) - 65 + {k}) % 26 + 65))\n        else:\n"
           f"            out.append(c)\n    return ''.join(out)\n")
    lower = "abcdefghijklmnopqrstuvwxyz"
    table = str.maketrans(lower + lower.upper(), lower[k:] + lower[:k] + (lower[k:] + lower[:k]).upper())
    cases = [" ".join(rng.sample(WORDS, 2)).capitalize() + "!" for _ in range(3)]
    tests = [f"assert {f}({c!r}) == {c.translate(table)!r}" for c in cases]
    return f, f"Shift every ASCII letter of s forward by {k} places in the alphabet, wrapping around and keeping case; other characters stay.", sol, tests


def t_divisible(rng):
    k = rng.randint(2, 9)
    f = _fname(rng, "count_divisible")
    sol = f"def {f}(xs):\n    return len([x for x in xs if x % {k} == 0])\n"
    tests = []
    for _ in range(3):
        xs = _rand_list(rng)
        tests.append(f"assert {f}({xs}) == {sum(1 for x in xs if x % k == 0)}")
    return f, f"Return how many numbers in xs are divisible by {k}.", sol, tests


def t_digit_power(rng):
    p = rng.randint(1, 4)
    f = _fname(rng, "digit_power_sum")
    sol = f"def {f}(n):\n    return sum(int(d) ** {p} for d in str(abs(n)))\n"
    ns = [rng.randint(-9999, 99999) for _ in range(4)]
    tests = [f"assert {f}({n}) == {sum(int(d) ** p for d in str(abs(n)))}" for n in ns]
    return f, f"Return the sum of the decimal digits of the integer n, each raised to the power {p} (the sign is ignored).", sol, tests


def t_rotate(rng):
    f = _fname(rng, "rotate")
    sol = f"def {f}(xs, k):\n    if not xs:\n        return []\n    k %= len(xs)\n    return xs[-k:] + xs[:-k] if k else list(xs)\n"
    tests = []
    for _ in range(3):
        xs, k = _rand_list(rng), rng.randint(0, 10)
        exp = [xs[(i - k) % len(xs)] for i in range(len(xs))] if xs else []
        tests.append(f"assert {f}({xs}, {k}) == {exp}")
    return f, "Rotate the list xs to the right by k positions and return the new list.", sol, tests


def t_dedup(rng):
    f = _fname(rng, "unique_in_order")
    sol = f"def {f}(xs):\n    seen = set()\n    out = []\n    for x in xs:\n        if x not in seen:\n            seen.add(x)\n            out.append(x)\n    return out\n"
    tests = []
    for _ in range(3):
        xs = _rand_list(rng, lo=0, hi=6)
        exp = list(dict.fromkeys(xs))
        tests.append(f"assert {f}({xs}) == {exp}")
    return f, "Return the elements of xs without repeats, keeping the order of first appearance.", sol, tests


def t_word_lengths(rng):
    m = rng.randint(3, 6)
    f = _fname(rng, "long_words")
    sol = f"def {f}(text):\n    return [w for w in text.split() if len(w) >= {m}]\n"
    cases = [" ".join(rng.choice(WORDS)[: rng.randint(1, 6)] for _ in range(5)) for _ in range(3)]
    tests = [f"assert {f}({c!r}) == {[w for w in c.split() if len(w) >= m]}" for c in cases]
    return f, f"Return the words of text (split on whitespace) that have at least {m} characters, in order.", sol, tests


def t_primes(rng):
    f = _fname(rng, "primes_between")
    sol = (f"def {f}(a, b):\n    def is_prime(n):\n        if n < 2:\n            return False\n"
           f"        i = 2\n        while i * i <= n:\n            if n % i == 0:\n                return False\n"
           f"            i += 1\n        return True\n    return [n for n in range(a, b + 1) if is_prime(n)]\n")
    tests = []
    for _ in range(3):
        a = rng.randint(-5, 60)
        b = a + rng.randint(0, 40)
        exp = [n for n in range(a, b + 1) if n > 1 and all(n % d for d in range(2, n))]
        tests.append(f"assert {f}({a}, {b}) == {exp}")
    return f, "Return the prime numbers p with a <= p <= b, in increasing order.", sol, tests


def t_pair_sums(rng):
    t = rng.randint(0, 20)
    f = _fname(rng, "count_pairs")
    sol = f"def {f}(xs):\n    n = 0\n    for i in range(len(xs)):\n        for j in range(i + 1, len(xs)):\n            if xs[i] + xs[j] == {t}:\n                n += 1\n    return n\n"
    tests = []
    for _ in range(3):
        xs = _rand_list(rng, lo=-5, hi=20)
        exp = sum(1 for i, x in enumerate(xs) for y in xs[i + 1:] if x + y == t)
        tests.append(f"assert {f}({xs}) == {exp}")
    return f, f"Count the pairs of positions i < j with xs[i] + xs[j] == {t}.", sol, tests


def t_transpose(rng):
    f = _fname(rng, "transpose")
    sol = f"def {f}(rows):\n    return [list(col) for col in zip(*rows)]\n"
    tests = []
    for _ in range(3):
        r, c = rng.randint(1, 4), rng.randint(1, 4)
        m = [[rng.randint(0, 9) for _ in range(c)] for _ in range(r)]
        tests.append(f"assert {f}({m}) == {[[m[i][j] for i in range(r)] for j in range(c)]}")
    return f, "Return the transpose of a rectangular matrix given as a list of rows.", sol, tests


TEMPLATES: dict[str, Callable] = {
    fn.__name__[2:]: fn
    for fn in (t_multiples, t_count_chars, t_reverse_words, t_sequence, t_palindrome, t_running_max, t_clamp,
               t_caesar, t_divisible, t_digit_power, t_rotate, t_dedup, t_word_lengths, t_primes,
               t_pair_sums, t_transpose)
}


def generate(count: int, seed: int = 0) -> list[Problem]:
    """`count` problems, cycling through the templates; deterministic for a seed."""
    rng = random.Random(seed)
    names = sorted(TEMPLATES)
    out = []
    for i in range(count):
        template = names[i % len(names)]
        name, statement, solution, tests = TEMPLATES[template](rng)
        out.append(Problem(name, template, statement, solution, tuple(tests)))
    return out


_RUNNER = r"""
import json, signal, sys
def _alarm(*_):
    raise TimeoutError("time limit")
signal.signal(signal.SIGALRM, _alarm)
results = []
for src in json.load(sys.stdin):
    try:
        signal.alarm(2)
        exec(compile(src, "<problem>", "exec"), {"__name__": "__problem__"})
        results.append(True)
    except BaseException:
        results.append(False)
    finally:
        signal.alarm(0)
json.dump(results, sys.stdout)
"""


def verify(problems: list[Problem], timeout_s: float = 300.0) -> list[bool]:
    """Run each solution with its asserts in a child interpreter; True = passes."""
    sources = [p.solution + "\n" + "\n".join(p.tests) + "\n" for p in problems]
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _RUNNER], input=json.dumps(sources), capture_output=True,
        text=True, timeout=timeout_s, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"problem runner failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)
