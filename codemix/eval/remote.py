"""The two programs of one code check, each run in a sandbox of its own.

This file is sent, as source text, to both sandboxes (`code_harness` appends
one call line); it imports only the standard library. Nothing the host
trusts is produced by the process that runs model code:

  candidate  `serve(solution)`: executes the model's solution, then answers
             requests from the checker, one JSON line each, read on fd 4,
             answered on fd 5. It never sees the tests, the prompt's helpers
             or any expected value: only the arguments of the calls made to it.
  checker    `check(prefix, tests, remote_names, module_names)`: executes the
             benchmark's trusted code (the prompt's helpers in `prefix`, then
             the tests) with every name in `remote_names` (the function under
             test and whatever else of the solution the tests use) bound to a
             `Remote` that forwards calls to the candidate. It writes the
             verdict on fd 3, the only thing the host reads.

Protocol (checker -> candidate), one request per line:
  ["call", ref, [args], {kwargs}]   ref is ["n", name] or ["h", id]
  ["get", ref, attribute]
  ["set", ref, attribute, value]
and one reply per request: ["v", value] or ["x", exception class name].

Values cross as JSON by exact type (never isinstance, so a subclass of int is
not an int): None, bool, int, float, str as themselves; tagged lists for
list "l", tuple "t", set "s", frozenset "f", dict "d" (Counter, OrderedDict
and defaultdict as dicts), deque "q", bytes "y", complex "c", non-finite
float "F", range "r", and an iterator "g" (its items; the checker gets an
iterator back, so a generator still differs from a list). Any other object
stays in the candidate's process and crosses as a handle "h": the checker
gets a `Remote` whose equality is identity, whose truth value is refused and
whose attributes and calls are forwarded. So an always-equal object, an int
subclass or a patched builtin in the candidate is, to the checker, an opaque
handle that equals nothing the tests expect.

The checker reads each reply with a size bound (`MAX_REPLY` bytes) and
decodes it strictly (`MAX_ITEMS` values, depth 100); a reply it cannot read
(too large, malformed, the candidate gone) marks the candidate failed for the
rest of the run, whatever the tests do with the exception. Its own CPU and
wall clock are the sandbox's, so a reply that is slow to decode (a set of
hash-colliding ints) costs the checker's time limit, never the host's.

Verdict (fd 3): one line ["verdict", passed, reason].
"""
from __future__ import annotations

import builtins
import collections
import json
import os

IN_FD, OUT_FD, VERDICT_FD = 4, 5, 3
MAX_REPLY = 8 << 20  # bytes of one reply or request line
MAX_ITEMS = 100_000  # values in one reply
MAX_DEPTH = 100


class Channel:
    """Newline-delimited JSON over two pipe fds, each line bounded in size."""

    def __init__(self, in_fd: int, out_fd: int):
        self.in_fd, self.out_fd, self.buffer = in_fd, out_fd, bytearray()

    def send(self, message) -> None:
        data = memoryview((json.dumps(message, separators=(",", ":")) + "\n").encode())
        while data:
            data = data[os.write(self.out_fd, data):]

    def receive(self) -> bytes | None:
        """The next line, or None at end of input; ValueError when a line is
        longer than MAX_REPLY."""
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > MAX_REPLY:
                raise ValueError(f"a line longer than {MAX_REPLY} bytes")
            start = len(self.buffer)
            chunk = os.read(self.in_fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk


# ------------------------------------------------------------------ encoding
def _generator():
    yield


_ITERATORS = tuple(type(x) for x in (
    iter([]), iter(()), iter(""), iter(b""), iter(range(0)), iter(set()), iter({}),
    _generator(), map(id, []), filter(None, []), zip(), enumerate([]), reversed([]),
    {}.keys(), {}.values(), {}.items(), iter({}.values()), iter({}.items())))
_DICTS = (dict, collections.Counter, collections.OrderedDict, collections.defaultdict)
_SEQUENCES = {list: "l", tuple: "t", set: "s", frozenset: "f", collections.deque: "q"}


def encode(value, handle, depth: int = 0):
    """JSON-able form of `value`; `handle(obj)` gives the tag of anything that
    is not a plain value (the candidate keeps it, the checker refuses it)."""
    t = type(value)
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        return value if value - value == 0 else ["F", repr(value)]
    if t in _SEQUENCES:
        return [_SEQUENCES[t], [encode(x, handle, depth + 1) for x in value]]
    if t in _DICTS:
        return ["d", [[encode(k, handle, depth + 1), encode(x, handle, depth + 1)]
                      for k, x in value.items()]]
    if t in _ITERATORS:
        return ["g", [encode(x, handle, depth + 1) for x in value]]
    if t is bytes:
        return ["y", value.hex()]
    if t is complex:
        return ["c", encode(value.real, handle), encode(value.imag, handle)]
    if t is range:
        return ["r", value.start, value.stop, value.step]
    return handle(value)


def decode(value, remote, budget: list[int], depth: int = 0):
    """The value a reply encodes, checked strictly; ValueError for anything
    that is not exactly the encoding. `remote(ref)` turns a handle into the
    checker's stand-in for it."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise ValueError("reply too large or too deeply nested")
    t = type(value)
    if value is None or t is bool or t is int or t is str or t is float:
        return value
    if t is not list or not value or type(value[0]) is not str:
        raise ValueError("malformed value")
    tag, rest = value[0], value[1:]
    if tag in ("l", "t", "s", "f", "q", "g") and len(rest) == 1 and type(rest[0]) is list:
        items = [decode(x, remote, budget, depth + 1) for x in rest[0]]
        if tag == "g":
            return iter(items)
        return {"l": list, "t": tuple, "s": set, "f": frozenset, "q": collections.deque}[tag](items)
    if tag == "d" and len(rest) == 1 and type(rest[0]) is list:
        out = {}
        for pair in rest[0]:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("malformed dict")
            out[decode(pair[0], remote, budget, depth + 1)] = decode(pair[1], remote, budget, depth + 1)
        return out
    if tag == "F" and len(rest) == 1 and rest[0] in ("nan", "inf", "-inf"):
        return float(rest[0])
    if tag == "y" and len(rest) == 1 and type(rest[0]) is str:
        return bytes.fromhex(rest[0])
    if tag == "c" and len(rest) == 2:
        parts = [decode(x, remote, budget, depth + 1) for x in rest]
        if all(type(x) in (int, float) for x in parts):
            return complex(*parts)
    if tag == "r" and len(rest) == 3 and all(type(x) is int for x in rest) and rest[2]:
        r = range(*rest)
        if len(r) > MAX_ITEMS:  # the tests may materialise it
            raise ValueError("range too long")
        return r
    if tag in ("h", "n") and len(rest) == 1 and type(rest[0]) is (int if tag == "h" else str):
        return remote([tag, rest[0]])
    raise ValueError(f"malformed value with tag {tag!r}")


# ----------------------------------------------------------------- candidate
def serve(solution: str) -> None:
    """Run the model's solution, then answer the checker until it hangs up.
    (Untrusted: whatever this process says is only data to the checker.)"""
    g = {"__name__": "__main__", "__builtins__": builtins}
    exec(compile(solution, "<solution>", "exec"), g)  # noqa: S102  (sandboxed; an error ends the run)
    objects: list = []
    ids: dict[int, int] = {}

    def handle(obj):
        if id(obj) not in ids:
            ids[id(obj)] = len(objects)
            objects.append(obj)
        return ["h", ids[id(obj)]]

    def resolve(ref):
        if ref[0] == "n":
            return g[ref[1]] if ref[1] in g else getattr(builtins, ref[1])
        return objects[ref[1]]

    def arg(v):
        return decode(v, resolve, [1 << 62])

    channel = Channel(IN_FD, OUT_FD)
    while (line := channel.receive()) is not None:
        request = json.loads(line)
        try:
            kind, target = request[0], resolve(request[1])
            if kind == "call":
                result = target(*[arg(a) for a in request[2]], **{k: arg(v) for k, v in request[3].items()})
            elif kind == "get":
                result = getattr(target, request[2])
            else:
                setattr(target, request[2], arg(request[3]))
                result = None
            reply = ["v", encode(result, handle)]
        except Exception as e:  # noqa: BLE001  (the tests may expect it)
            reply = ["x", type(e).__name__]
        channel.send(reply)


# ------------------------------------------------------------------- checker
class CandidateFailed(BaseException):
    """The candidate broke the protocol; the run fails whatever the tests do."""


def check(prefix: str, tests: str, remote_names: list[str], module_names: list[str]) -> None:
    """Run the benchmark's trusted code against the candidate; write the verdict."""
    channel = Channel(IN_FD, OUT_FD)
    failure: list[str] = []
    remotes: dict[tuple, Remote] = {}

    def fail(reason: str):
        if not failure:
            failure.append(reason)
        raise CandidateFailed(reason)

    def remote(ref: list) -> Remote:
        key = tuple(ref)
        if key not in remotes:
            remotes[key] = Remote(ref)
        return remotes[key]

    def outgoing(obj):
        if type(obj) is Remote:
            return list(obj._ref)
        raise TypeError(f"the tests pass a {type(obj).__name__} to the candidate; only plain "
                        "values and the candidate's own objects cross between the processes")

    def to_candidate(value):
        return encode(value, outgoing)

    def ask(request):
        if failure:
            raise CandidateFailed(failure[0])
        try:
            channel.send(request)
            line = channel.receive()
        except (OSError, ValueError) as e:
            fail(f"candidate: {type(e).__name__} on the channel")
        if line is None:
            fail("candidate process ended")
        try:
            reply = json.loads(line)
            if type(reply) is not list or len(reply) != 2 or reply[0] not in ("v", "x"):
                raise ValueError("malformed reply")
            if reply[0] == "x":
                if type(reply[1]) is not str:
                    raise ValueError("malformed reply")
                cls = getattr(builtins, reply[1], None)
                error = cls if isinstance(cls, type) and issubclass(cls, Exception) else Exception
            else:
                value = decode(reply[1], remote, [MAX_ITEMS])
        except (ValueError, TypeError, RecursionError, MemoryError) as e:
            fail(f"candidate: unreadable reply ({type(e).__name__})")
        if reply[0] == "x":
            try:
                exception = error(f"raised in the candidate ({reply[1][:80]})")
            except TypeError:  # a class that wants other arguments
                exception = Exception(f"raised in the candidate ({reply[1][:80]})")
            raise exception
        return value

    class Remote:
        """An object that lives in the candidate's process (a function of the
        solution or a value it returned that is not plain data)."""

        __slots__ = ("_ref",)

        def __init__(self, ref):
            object.__setattr__(self, "_ref", ref)

        def __call__(self, *args, **kwargs):
            return ask(["call", self._ref, [to_candidate(a) for a in args],
                        {k: to_candidate(v) for k, v in kwargs.items()}])

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return ask(["get", self._ref, name])

        def __setattr__(self, name, value):
            ask(["set", self._ref, name, to_candidate(value)])

        def __bool__(self) -> bool:
            fail("candidate: an object that is not plain data was used as a truth value")
            return False

        def __copy__(self):
            return self

        def __deepcopy__(self, memo):
            return self

        def __repr__(self):
            return "<candidate object>"

    g = {"__name__": "__main__", "__builtins__": builtins}
    reason = "passed"
    try:
        exec(compile(prefix, "<prompt>", "exec"), g)  # noqa: S102  (the benchmark's own code)
        for name in module_names:
            g[name] = __import__(name)
        for name in remote_names:
            g[name] = remote(["n", name])
        exec(compile(tests, "<tests>", "exec"), g)  # noqa: S102  (the benchmark's own code)
    except CandidateFailed:
        pass
    except AssertionError as e:
        reason = f"assertion failed (tests line {_tests_line(e)})"
    except BaseException as e:  # noqa: BLE001  (whatever the tests raise is a failure)
        reason = f"tests raised {type(e).__name__} (tests line {_tests_line(e)})"
    if failure:
        reason = failure[0]
    os.write(VERDICT_FD, (json.dumps(["verdict", reason == "passed", reason]) + "\n").encode())


def _tests_line(error: BaseException) -> int | str:
    tb, line = error.__traceback__, "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<tests>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
