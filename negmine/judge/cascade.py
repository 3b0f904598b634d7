"""Cascade routing and the action policy: pure functions, no I/O.

* Routing decides which negatives tier i+1 sees after tier i. ``confidence`` (default) sends only the negatives
  tier i was unsure about: probability of relevance inside the band, whatever the label (a confident verdict is
  final either way), or flagged without a probability, or not judged; ``per_negative`` sends every negative tier i
  flagged (relevant/partial), was unsure about (a not_relevant label inside the band) or could not judge;
  ``rlhn_example`` reproduces RLHN's routing (arXiv 2505.16967): the whole example (every negative of the query)
  goes to the next tier when any of its negatives is flagged. Routers are registered by name.
* The final verdict of a negative is the one of the last tier that saw it; a tier that could not judge it leaves it
  ``unjudged`` (with the reason), which is never counted as a label.
* The policy maps final verdicts to actions: relevant → promote | remove, partial → remove | keep,
  not_relevant → keep, unjudged → keep | remove, and (``on_unsure="remove"``) a final verdict whose probability
  lies inside the band → remove: only a confident judge keeps a negative or promotes a positive. With
  ``max_false_negatives`` set (RLHN's rule; off by default), a query whose mined negatives hold more relevant ones
  than that is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass

FLAGGED = ("relevant", "partial")
DISTRUSTED = "distrusted"  # error prefix of verdicts relabel's canary check did not trust


def is_distrusted(error: str | None) -> bool:
    return error is not None and error.startswith(DISTRUSTED)


@dataclass(frozen=True)
class Verdict:
    label: str | None          # relevant | partial | not_relevant; None = unjudged
    prob: float | None = None  # probability of relevance (relevant or partial), when the judge gave logprobs
    error: str | None = None   # why it is unjudged


def needs_next_tier(v: Verdict, band: tuple[float, float], escalate_unjudged: bool = True) -> bool:
    if v.label is None:
        return escalate_unjudged
    if v.label in FLAGGED:
        return True
    return v.prob is not None and band[0] <= v.prob <= band[1]


Key = tuple[str, str]  # (query_id, doc_id)
Router = Callable[[Mapping[Key, Verdict], tuple[float, float], bool], list[Key]]
ROUTERS: dict[str, Router] = {}


def router(name: str) -> Callable[[Router], Router]:
    def deco(fn: Router) -> Router:
        ROUTERS[name] = fn
        return fn
    return deco


def get_router(name: str) -> Router:
    if name not in ROUTERS:
        raise KeyError(f"unknown routing {name!r} (known: {', '.join(sorted(ROUTERS))})")
    return ROUTERS[name]


@router("per_negative")
def route_per_negative(verdicts: Mapping[Key, Verdict], band: tuple[float, float],
                       escalate_unjudged: bool = True) -> list[Key]:
    """Only the negatives this tier flagged, was unsure about, or could not judge."""
    return [k for k, v in verdicts.items() if needs_next_tier(v, band, escalate_unjudged)]


def unsure(v: Verdict, band: tuple[float, float], escalate_unjudged: bool = True) -> bool:
    """The tier is unsure: probability of relevance inside the band whatever the label; without a probability,
    a flagged label counts as unsure (as in ``per_negative``); unjudged → ``escalate_unjudged``."""
    if v.label is None:
        return escalate_unjudged
    if v.prob is None:
        return v.label in FLAGGED
    return band[0] <= v.prob <= band[1]


@router("confidence")
def route_confidence(verdicts: Mapping[Key, Verdict], band: tuple[float, float],
                     escalate_unjudged: bool = True) -> list[Key]:
    """Only the negatives this tier was unsure about: a confident verdict (probability of relevance below or
    above the band) is final either way, so the next tier sees the doubtful ones, not every flag."""
    return [k for k, v in verdicts.items() if unsure(v, band, escalate_unjudged)]


@router("rlhn_example")
def route_rlhn_example(verdicts: Mapping[Key, Verdict], band: tuple[float, float],
                       escalate_unjudged: bool = True) -> list[Key]:
    """RLHN: every negative of a query goes on as soon as one of them is flagged."""
    flagged_q = {k[0] for k, v in verdicts.items() if needs_next_tier(v, band, escalate_unjudged)}
    return [k for k in verdicts if k[0] in flagged_q]


def final_verdicts(history: Mapping[Key, list[Verdict]]) -> dict[Key, Verdict]:
    """The verdict of the last tier that saw each negative."""
    return {k: hs[-1] for k, hs in history.items() if hs}


@dataclass(frozen=True)
class Policy:
    on_relevant: str = "promote"     # promote | remove
    on_partial: str = "remove"       # remove | keep
    on_unjudged: str = "keep"        # keep | remove
    max_false_negatives: int | None = None  # None: no query is dropped
    on_unsure: str = "keep"          # keep | remove: a final verdict whose probability lies inside ``band``
    band: tuple[float, float] = (0.2, 0.8)


def action_for(v: Verdict, policy: Policy) -> str:
    """keep | remove | promote for one negative (before the per-query drop rule). With ``on_unsure="remove"``, a
    final verdict the judge was unsure about (probability inside the band) is neither kept nor promoted."""
    if v.label is None:
        # a verdict the canary check distrusted (instructions injected into a passage?) is never kept as a sure
        # negative nor promoted: removed, so refill replaces it with a candidate judged in another request
        return "remove" if is_distrusted(v.error) else policy.on_unjudged
    if policy.on_unsure == "remove" and v.prob is not None and policy.band[0] <= v.prob <= policy.band[1]:
        return "remove"
    if v.label == "relevant":
        return policy.on_relevant
    if v.label == "partial":
        return policy.on_partial
    return "keep"


@dataclass
class QueryDecision:
    actions: dict[str, str]   # doc_id → keep | remove | promote | drop_query
    dropped: bool
    false_negatives: int


def decide_query(verdicts: Mapping[str, Verdict], policy: Policy,
                 counted: Collection[str] | None = None) -> QueryDecision:
    """Actions for one query's negatives (doc_id → final verdict). The drop rule counts the relevant verdicts of
    the documents in ``counted`` (the mined negatives, not refill candidates; default: all)."""
    fn = sum(1 for d, v in verdicts.items() if v.label == "relevant" and (counted is None or d in counted))
    if policy.max_false_negatives is not None and fn > policy.max_false_negatives:
        return QueryDecision({d: "drop_query" for d in verdicts}, True, fn)
    return QueryDecision({d: action_for(v, policy) for d, v in verdicts.items()}, False, fn)


def pick_refill(ranked_candidates: Iterable[str], used: set[str], excluded: set[str], need: int) -> list[str]:
    """The next ``need`` candidates in rank order that are neither used (judged or kept) nor excluded
    (positives, candidates a filter dropped as too close to the positive)."""
    out: list[str] = []
    if need <= 0:
        return out
    for d in ranked_candidates:
        if d in used or d in excluded:
            continue
        out.append(d)
        if len(out) >= need:
            break
    return out


def group(items: Iterable[Hashable], size: int) -> list[list]:
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]
