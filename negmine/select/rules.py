"""The selection rules, declared in one place and in the order in which they explain a drop.

A candidate is kept only if it passes every rule that is on; the first rule it fails is its drop reason. Each
:class:`Rule` declares its reason, the rule values it reads (keys of :meth:`SelectParams.rules`, i.e. config keys of
section ``select``; a rule with keys is off while they are all None), the per-row signal it needs besides the
teacher's scores (a field of :class:`Batch`), and whether its candidates may fill a short query.

============================  =======================  ==========  ==================================================
reason                        keys                     signal      keep
============================  =======================  ==========  ==================================================
``positive``                  –                        –           not a labelled positive of the query
``duplicate_of_positive``     – (``dedup``: stage)     –           not a near-duplicate of a positive
``out_of_window``             min_rank, max_rank       –           ``min_rank <= rank <= max_rank``
``above_abs``                 max_score                –           TopK-Abs: ``s < max_score``
``below_abs``                 min_score                –           ``s >= min_score`` (too easy otherwise)
``above_margin``              margin                   –           TopK-MarginPos: ``s < s+ - margin``
``above_perc``                perc_pos                 –           TopK-PercPos: ``s < s+ - |s+| * (1 - perc)``
``similar_to_positive``       max_pos_sim              pos_sim     document cosine with every positive below
``lexical_agreement``         max_lexical_rank         lex_rank    BM25 does not rank it in its top N
``predicted_false_negative``  fn_threshold             fn_prob     calibrated p(false negative) below threshold
============================  =======================  ==========  ==================================================

then ``not_sampled`` (eligible, but not among the k sampled). The keep masks are the pure functions of
:mod:`negmine.select.filters` (scores and ranks) and :mod:`negmine.select.signals` (the other signals). A new rule is
an entry of :data:`RULES` (and, when it reads a new config key, a field of ``SelectParams`` returned by its
``rules()``); a new signal is also a field of :class:`Batch`, computed by the select stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from negmine.select import filters as F
from negmine.select import signals as S

NOT_SAMPLED = "not_sampled"


@dataclass
class Batch:
    """Candidate rows of one or more queries (the arrays a rule needs). ``rank`` uses 0 for a missing rank."""

    scores: np.ndarray        # teacher scores (float)
    ranks: np.ndarray         # int, 0 = not retrieved
    pos_score: np.ndarray     # per-row reference positive score s+
    is_positive: np.ndarray   # bool
    is_duplicate: np.ndarray  # bool: near-duplicate of one of the query's positives
    pos_sim: np.ndarray | None = None  # candidate-positive document similarity (signals.block_pos_sim)
    lex_rank: np.ndarray | None = None  # BM25 rank of the candidate for its query, 0 = not in its top-N
    fn_prob: np.ndarray | None = None  # calibrated p(false negative) (negmine.calibrate)

    def need(self, signal: str) -> np.ndarray:
        """The signal's per-row array (a rule that reads it is on, so the select stage computed it)."""
        values = getattr(self, signal)
        if values is None:
            raise ValueError(f"a select rule needs the per-row signal {signal} for the batch")
        return values


Keep = Callable[[Batch, Mapping[str, Any]], np.ndarray]


@dataclass(frozen=True)
class Rule:
    reason: str                   # the drop reason it names
    keep: Keep                    # keep mask of a batch, given the rule values
    keys: tuple[str, ...] = ()    # rule values it reads; off while all are None (no keys: always on)
    signal: str | None = None     # the Batch field it needs besides scores and ranks
    fillable: bool = True         # its candidates may fill a short query (short_policy fill)

    def mask(self, batch: Batch, values: Mapping[str, Any]) -> np.ndarray | None:
        """Keep mask, or None when the rule is off."""
        if self.keys and all(values.get(k) is None for k in self.keys):
            return None
        if self.signal is not None and getattr(batch, self.signal) is None:
            raise ValueError(f"select rule {self.reason} ({', '.join(self.keys)}) needs the per-row signal "
                             f"{self.signal} for the batch")
        return self.keep(batch, values)


RULES: tuple[Rule, ...] = (
    Rule("positive", lambda b, v: ~b.is_positive, fillable=False),
    Rule("duplicate_of_positive", lambda b, v: ~b.is_duplicate, fillable=False),
    Rule("out_of_window", lambda b, v: F.rank_window(b.ranks, v.get("min_rank"), v.get("max_rank")),
         keys=("min_rank", "max_rank")),
    Rule("above_abs", lambda b, v: F.abs_max(b.scores, v["max_score"]), keys=("max_score",)),
    Rule("below_abs", lambda b, v: F.abs_min(b.scores, v["min_score"]), keys=("min_score",)),
    Rule("above_margin", lambda b, v: F.margin_pos(b.scores, b.pos_score, v["margin"]), keys=("margin",)),
    Rule("above_perc", lambda b, v: F.perc_pos(b.scores, b.pos_score, v["perc_pos"]), keys=("perc_pos",)),
    Rule("similar_to_positive", lambda b, v: S.similar_to_positive(b.need("pos_sim"), v["max_pos_sim"]),
         keys=("max_pos_sim",), signal="pos_sim"),
    Rule("lexical_agreement", lambda b, v: S.lexical_agreement(b.need("lex_rank"), v["max_lexical_rank"]),
         keys=("max_lexical_rank",), signal="lex_rank"),
    Rule("predicted_false_negative", lambda b, v: S.predicted_false_negative(b.need("fn_prob"), v["fn_threshold"]),
         keys=("fn_threshold",), signal="fn_prob"),
)


def reasons() -> tuple[str, ...]:
    """Every drop reason a rule index can name: the rules in order, then ``not_sampled``."""
    return (*(r.reason for r in RULES), NOT_SAMPLED)


def fillable() -> tuple[str, ...]:
    """Reasons whose candidates may fill a short query (never positives or their duplicates)."""
    return tuple(r.reason for r in RULES if r.fillable)


def apply_rules(batch: Batch, values: Mapping[str, Any]) -> np.ndarray:
    """Index into :func:`reasons` of each row's first failing rule, or -1 when the row passes every rule."""
    reason = np.full(len(batch.scores), -1, dtype=np.int8)
    for i, rule in enumerate(RULES):
        keep = rule.mask(batch, values)
        if keep is not None:
            reason[(reason < 0) & ~keep] = i
    return reason
