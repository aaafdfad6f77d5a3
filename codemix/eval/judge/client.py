"""A pairwise LLM judge behind an OpenAI-compatible chat-completions endpoint.

One request asks the judge which of two answers to a question is better. The
prompt tells it to reply with ONE letter first: "A", "B", or "C" (a tie), so
the verdict is the first token of the reply.

Reading the verdict, in this order:
  1. log-probabilities: when the server returns `logprobs.content`, the verdict
     position is the first generated token that is more than whitespace or
     opening brackets. Among that position's `top_logprobs` (plus the sampled
     token itself), the tokens that read as A, B or C compete; the most
     probable one is the verdict (source "logprobs"). The three probabilities
     are kept with the judgment.
  2. text: when there are no log-probabilities, or none of A/B/C is among the
     top candidates at the verdict position, the reply text is parsed: a single
     "[[A]]"-style tag anywhere, else a reply that starts with a lone A, B, C
     or "tie", or with "A is ..." (source "text"); "A good ..." is an article.
  3. otherwise the verdict is None (source "invalid"). It is counted and
     reported, never guessed.

Transport: `httpx`, one request per judgment, `max_concurrency` in flight (a
thread pool). Connection errors, timeouts, 429 and 5xx responses are retried
`max_retries` times with exponential backoff (`backoff_s * 2**attempt`); then
a `JudgeError` names the endpoint and the last failure. Other 4xx responses
fail at once (a wrong model name or key is not transient).

Cache: every parsed judgment is written to `cache_dir/<sha256>.json`, keyed by
the judge model, the messages and the sampling settings (not the URL or key).
A rerun reads them back and only asks for the missing ones, so an interrupted
job resumes without paying twice. Files are written atomically (tmp + rename).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from typing import Self

import httpx

from codemix.errors import JudgeError

log = logging.getLogger(__name__)

VERDICTS = ("A", "B", "C")  # C = tie

SYSTEM_PROMPT = (
    "You are an impartial judge. Compare two AI assistants' answers to the user's question "
    "for helpfulness, relevance, accuracy and detail. Do not let the order or the length of the "
    "answers influence you. Reply with exactly one letter and nothing else: "
    "A if answer A is better, B if answer B is better, C if they are equally good."
)

USER_TEMPLATE = (
    "[Question]\n{question}\n\n"
    "[Answer A]\n{answer_a}\n\n"
    "[Answer B]\n{answer_b}\n\n"
    "Which answer is better? Reply with one letter: A, B or C (tie)."
)


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    """Where the judge is and how to talk to it.

    Attributes:
      base_url: OpenAI-compatible API root, e.g. "http://127.0.0.1:8000/v1"
        ("/chat/completions" is appended).
      model: model name sent in each request.
      api_key_env: environment variable holding the API key; when it is unset
        no Authorization header is sent (local servers need none).
      timeout_s: seconds per HTTP request (connect + read).
      max_retries: retries after the first attempt for transient failures.
      backoff_s: first retry delay in seconds; doubles on each retry.
      max_concurrency: requests in flight at once.
      max_tokens: reply budget in tokens; the verdict is the first token, a few
        more let the text fallback see a "[[A]]" tag.
      top_logprobs: alternatives returned per position (OpenAI allows <= 20).
      use_logprobs: ask for log-probabilities (servers that reject the field:
        set False and the text is parsed).
      temperature: 0 = deterministic judge.
      cache_dir: directory of cached judgments; None disables the cache.
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    max_concurrency: int = 4
    max_tokens: int = 8
    top_logprobs: int = 20
    use_logprobs: bool = True
    temperature: float = 0.0
    cache_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class Judgment:
    """One judge call: verdict "A" | "B" | "C" (tie) | None (unreadable)."""

    verdict: str | None
    source: str  # "logprobs" | "text" | "invalid"
    text: str
    probs: dict[str, float] | None = None  # A/B/C probabilities at the verdict position
    cached: bool = False

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "source": self.source, "text": self.text, "probs": self.probs}


def build_messages(question: str, answer_a: str, answer_b: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(question=question, answer_a=answer_a,
                                                           answer_b=answer_b)}]


def _letter(token: str) -> str | None:
    t = token.strip().strip("[]*\"'`:.()").strip()
    if t.upper() == "TIE":
        return "C"
    return t if t in VERDICTS else None


def verdict_from_logprobs(logprobs: dict | None) -> tuple[str | None, dict[str, float] | None]:
    """(verdict, {letter: probability}) from an OpenAI `choice.logprobs`, or (None, None)."""
    content = (logprobs or {}).get("content") or []
    for position in content:
        token = position.get("token") or ""
        if not token.strip().lstrip("[").strip():
            continue  # whitespace or an opening bracket before the verdict
        candidates = list(position.get("top_logprobs") or []) + [position]
        probs: dict[str, float] = {}
        for cand in candidates:
            letter = _letter(cand.get("token") or "")
            lp = cand.get("logprob")
            if letter is None or not isinstance(lp, (int, float)) or math.isnan(lp):
                continue
            probs[letter] = max(probs.get(letter, 0.0), math.exp(lp))
        if not probs:
            return None, None
        return max(probs, key=probs.get), probs
    return None, None


_TAG = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
# The letter must stand alone ("A", "A.", "B)\n...", "Tie") or be the subject
# of "is/was/wins" ("A is better."): "A good answer ..." is an article.
_FIRST_WORD = re.compile(r"^[\s\[(*\"']*(A|B|C|[Tt]ie|TIE)(?=\s*$|[.:;,!)\]*\"'\n]|\s+(?:is|was|wins)\b)")


def verdict_from_text(text: str) -> str | None:
    """A single "[[X]]" tag, else a reply that starts with a lone A, B, C or "tie"; else None."""
    tags = {_letter(m) for m in _TAG.findall(text)}
    if len(tags) == 1:
        return tags.pop()
    if len(tags) > 1:
        return None  # contradictory tags: unreadable
    m = _FIRST_WORD.match(text)
    return _letter(m.group(1)) if m else None


def parse_response(body: dict) -> Judgment:
    """Judgment from a chat-completions response body (malformed -> invalid)."""
    try:
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        return Judgment(None, "invalid", json.dumps(body)[:500])
    verdict, probs = verdict_from_logprobs(choice.get("logprobs"))
    if verdict is not None:
        return Judgment(verdict, "logprobs", text, probs)
    verdict = verdict_from_text(text)
    return Judgment(verdict, "text" if verdict else "invalid", text)


class JudgeClient:
    """Ask an OpenAI-compatible judge for pairwise verdicts, cached on disk."""

    def __init__(self, config: JudgeConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        headers = {}
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(timeout=config.timeout_s, headers=headers, transport=transport)
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.requests_sent = 0  # HTTP attempts, including retries
        self._lock = threading.Lock()
        if config.cache_dir:  # a local folder or a gs:// URL (codemix/storage.py)
            from codemix import storage

            storage.path(config.cache_dir).mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- cache
    def _payload(self, messages: list[dict]) -> dict:
        c = self.config
        payload = {"model": c.model, "messages": messages, "max_tokens": c.max_tokens,
                   "temperature": c.temperature}
        if c.use_logprobs:
            payload.update(logprobs=True, top_logprobs=c.top_logprobs)
        return payload

    def _cache_path(self, payload: dict) -> str | None:
        if not self.config.cache_dir:
            return None
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"{self.config.cache_dir.rstrip('/')}/{key}.json"

    # ------------------------------------------------------------ transport
    def _post(self, payload: dict) -> dict:
        c = self.config
        last = ""
        for attempt in range(c.max_retries + 1):
            if attempt:
                delay = c.backoff_s * 2 ** (attempt - 1)
                log.warning("judge request failed (%s); retry %d/%d in %.1fs", last, attempt, c.max_retries, delay)
                time.sleep(delay)
            with self._lock:
                self.requests_sent += 1
            try:
                response = self._http.post(self.url, json=payload)
            except httpx.TimeoutException as e:
                last = f"timed out after {c.timeout_s}s ({type(e).__name__})"
                continue
            except httpx.TransportError as e:
                last = f"connection failed: {type(e).__name__}: {e}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code >= 400:
                raise JudgeError(f"judge at {self.url} rejected the request with HTTP {response.status_code}: "
                                 f"{response.text[:500]} (check --judge-model and the API key in "
                                 f"${c.api_key_env}).")
            try:
                return response.json()
            except ValueError:
                return {"malformed": response.text[:500]}
        raise JudgeError(f"judge at {self.url} failed after {c.max_retries + 1} attempts; last error: {last}. "
                         f"Is the server running and reachable (--judge-url)?")

    # ------------------------------------------------------------------ api
    def judge(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        payload = self._payload(build_messages(question, answer_a, answer_b))
        path = self._cache_path(payload)
        from codemix import storage

        if path and storage.path(path).is_file():
            try:
                d = json.loads(storage.path(path).read_text())
                return Judgment(d["verdict"], d["source"], d["text"], d.get("probs"), cached=True)
            except (ValueError, KeyError):
                log.warning("ignoring unreadable cache entry %s", path)
        judgment = parse_response(self._post(payload))
        if path:
            storage.write_text(path, json.dumps(judgment.to_json()))
        return judgment

    def judge_many(self, triples: Sequence[tuple[str, str, str]], progress: bool = False) -> list[Judgment]:
        """Judgments for (question, answer_a, answer_b) triples, in order;
        at most `max_concurrency` requests in flight."""
        results: list[Judgment | None] = [None] * len(triples)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(triples), desc="judge", unit="call")
        with concurrent.futures.ThreadPoolExecutor(max(1, self.config.max_concurrency)) as pool:
            futures = {pool.submit(self.judge, *t): i for i, t in enumerate(triples)}
            try:
                for fut in concurrent.futures.as_completed(futures):
                    results[futures[fut]] = fut.result()
                    if bar:
                        bar.update(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
            finally:
                if bar:
                    bar.close()
        return results  # type: ignore[return-value]
