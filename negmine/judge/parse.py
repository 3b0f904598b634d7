"""Strict parsing of judge answers (pure functions, no I/O).

A label is applied only when it is unambiguous: ids outside 1..m are rejected, an id given twice is rejected (both
entries, whatever they say), an unknown label is rejected; a candidate without a usable entry is *unjudged* with the
reason. A truncated answer (``finish_reason == "length"``) is never applied, even when a prefix happens to parse.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from negmine.judge.prompts import LABELS

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


@dataclass
class Parsed:
    """The usable part of one answer. ``error`` set ⇒ nothing in it is usable."""

    labels: dict[int, str] = field(default_factory=dict)
    probs: dict[int, float] = field(default_factory=dict)
    problems: dict[int, str] = field(default_factory=dict)  # id → why it has no label
    error: str | None = None

    def complete(self, m: int) -> bool:
        return self.error is None and all(i in self.labels for i in range(1, m + 1))

    def reason(self, m: int) -> str:
        if self.error:
            return self.error
        bad = [f"{i}: {self.problems.get(i, 'no entry')}" for i in range(1, m + 1) if i not in self.labels]
        return "; ".join(bad[:4]) + (f"; … ({len(bad)} ids)" if len(bad) > 4 else "")


def normalize_label(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    s = raw.strip().lower().replace("-", "_").replace(" ", "_")
    return s if s in LABELS else None


def _as_id(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    return None


def _load_json(content: str) -> Any:
    """The JSON value of an answer: the whole text, or a fenced block, or the outermost {...} / [...] span."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for open_, close in (("{", "}"), ("[", "]")):
        a, b = text.find(open_), text.rfind(close)
        if a != -1 and b > a:
            try:
                return json.loads(text[a:b + 1])
            except json.JSONDecodeError:
                continue
    raise ValueError("malformed JSON")


def parse_listwise(content: str | None, m: int, finish_reason: str | None = None) -> Parsed:
    if finish_reason == "length":
        return Parsed(error="truncated answer (finish_reason=length)")
    if finish_reason == "content_filter":
        return Parsed(error="answer withheld (finish_reason=content_filter)")
    if not content or not content.strip():
        return Parsed(error="empty answer")
    try:
        value = _load_json(content)
    except ValueError:
        return Parsed(error="malformed JSON")
    entries = value.get("judgments") if isinstance(value, dict) else value
    if not isinstance(entries, list):
        return Parsed(error="no 'judgments' list in the answer")
    seen: dict[int, list[str | None]] = {}
    out = Parsed()
    for e in entries:
        if not isinstance(e, dict):
            continue
        i = _as_id(e.get("id"))
        if i is None:
            continue
        if not 1 <= i <= m:
            continue  # outside 1..m: rejected, never applied to anything
        seen.setdefault(i, []).append(normalize_label(e.get("label")))
    for i, labels in seen.items():
        if len(labels) > 1:
            out.problems[i] = f"duplicate id {i} in the answer"
        elif labels[0] is None:
            out.problems[i] = "invalid label"
        else:
            out.labels[i] = labels[0]
    for i in range(1, m + 1):
        if i not in out.labels and i not in out.problems:
            out.problems[i] = "no label for this id"
    if not out.labels:
        out.error = "no usable label in the answer (" + out.reason(m) + ")"
        out.problems = {}
    return out


def merge(first: Parsed, second: Parsed) -> Parsed:
    """Labels of a re-ask win; a candidate the re-ask left out keeps a valid label from the first answer."""
    out = Parsed()
    for p in (first, second):
        if p.error is None:
            for i, lab in p.labels.items():
                out.labels[i] = lab
                out.probs.pop(i, None)
                if i in p.probs:
                    out.probs[i] = p.probs[i]
    out.problems = {i: why for p in (first, second) for i, why in p.problems.items() if i not in out.labels}
    if not out.labels:
        out.error = second.error or first.error
    return out


def parse_pointwise(content: str | None, finish_reason: str | None = None) -> Parsed:
    """``yes`` → relevant, ``no`` → not_relevant (local id 1)."""
    if finish_reason == "content_filter":
        return Parsed(error="answer withheld (finish_reason=content_filter)")
    if not content or not content.strip():
        return Parsed(error="empty answer")
    word = re.sub(r"[^a-z]", "", content.strip().split()[0].lower())
    if word == "yes":
        return Parsed(labels={1: "relevant"})
    if word == "no":
        return Parsed(labels={1: "not_relevant"})
    return Parsed(error=f"answer is not yes/no: {content.strip()[:40]!r}")


# ---- probabilities from logprobs ------------------------------------------------------------------------------

def _label_of_token(token: str) -> str | None:
    t = token.strip().strip('"').strip().lower()
    if not t:
        return None
    hits = [lab for lab in LABELS if lab.startswith(t)]
    return hits[0] if len(hits) == 1 else None


def _dist(alternatives: list[tuple[str, float]], classify) -> dict[str, float]:
    mass: dict[str, float] = {}
    for tok, lp in alternatives:
        c = classify(tok)
        if c is not None and lp is not None and lp > -1e9:
            mass[c] = mass.get(c, 0.0) + math.exp(lp)
    return mass


def listwise_probs(content: str, tokens: list[tuple[str, float, list[tuple[str, float]]]],
                   labels: dict[int, str]) -> dict[int, float]:
    """P(relevant or partial) per id from the top logprobs of each label's first token.

    ``tokens`` = [(token, logprob, [(alt_token, alt_logprob), ...]), ...] as returned with ``logprobs=true``.
    Only ids with a usable label get a probability; an id whose label token cannot be located gets none.
    """
    starts = []
    pos = 0
    for tok, _lp, _alts in tokens:
        starts.append(pos)
        pos += len(tok)
    if "".join(t for t, _, _ in tokens) != content:
        return {}
    out: dict[int, float] = {}
    for mt in re.finditer(r'"id"\s*:\s*"?(\d+)"?\s*,\s*"label"\s*:\s*"', content):
        i = int(mt.group(1))
        if i not in labels:
            continue
        at = mt.end()
        k = max((j for j, s in enumerate(starts) if s <= at), default=None)
        if k is None:
            continue
        tok, lp, alts = tokens[k]
        if starts[k] < at:  # the token also covers the opening quote: classify what follows it
            alts = [(a[at - starts[k]:] if len(a) > at - starts[k] else "", lpa) for a, lpa in alts] or [
                (tok[at - starts[k]:], lp)]
        mass = _dist(alts or [(tok, lp)], _label_of_token)
        total = sum(mass.values())
        if total <= 0:
            continue
        out[i] = (mass.get("relevant", 0.0) + mass.get("partial", 0.0)) / total
    return out


def pointwise_prob(tokens: list[tuple[str, float, list[tuple[str, float]]]]) -> float | None:
    """P(yes) / (P(yes) + P(no)) from the first answer token's top logprobs."""
    if not tokens:
        return None
    tok, lp, alts = tokens[0]

    def yn(t: str) -> str | None:
        w = re.sub(r"[^a-z]", "", t.lower())
        return w if w in ("yes", "no") else None

    mass = _dist(alts or [(tok, lp)], yn)
    total = sum(mass.values())
    return None if total <= 0 else mass.get("yes", 0.0) / total
