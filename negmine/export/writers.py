"""One writer per output format: pure functions from a batch of :class:`Example` to rows (and, for the table formats,
from a :class:`Columns` batch to the same table). No I/O.

Sentence-transformers formats (Parquet; the column *order* is what the trainer uses: every column that is not a
label column is an input, in order):

=============  ==============================================  =================================================
format         columns                                         rows
=============  ==============================================  =================================================
triplet        anchor, positive, negative                      one per (positive, negative) of a query
n-tuple        anchor, positive, negative_1 .. negative_k      one per positive; queries with < k negatives are
                                                               left out (counted) — use short_policy fill/drop
labeled-pair   query, passage, label (1 / 0)                   one per positive and one per negative
labeled-list   query, docs (list), labels (list of 1 / 0)      one per query: positives first, then negatives
=============  ==============================================  =================================================

``with_scores`` adds the teacher scores the way sentence-transformers consumes them as labels: triplet / n-tuple
get a ``scores`` list column ``[s(positive), s(negative_1), ...]`` (MarginMSE distillation), labeled-pair gets
``score`` *instead of* ``label`` and labeled-list ``scores`` instead of ``labels`` (as ``mine_hard_negatives``
does). ``with_ids`` appends id columns (``query_id``, ``positive_id``, ``negative_id`` / ``negative_1_id``...,
``doc_id``, ``doc_ids``): useful for inspection, but the trainer would treat them as text inputs, so drop them
(``dataset.remove_columns``) before training.

Several positives per query: triplet and n-tuple repeat the query's negatives for each positive (one row per
positive), so no positive is lost; rows of one query are adjacent — use ``BatchSamplers.NO_DUPLICATES`` with
MultipleNegativesRankingLoss so that a query's own rows are not in-batch negatives of each other.

JSON lines formats:

* ``flagembedding``: ``{"query", "pos": [...], "neg": [...], "pos_scores": [...], "neg_scores": [...]}`` plus
  ``"prompt"`` when given (FlagEmbedding fine-tuning data; scores are the teacher's, null when unscored);
* ``tevatron``: ``{"query_id", "query", "positive_passages": [{"docid", "title", "text"}],
  "negative_passages": [...]}`` (Tevatron train data); ``with_scores`` adds ``"score"`` to each passage.

Documents are rendered with :func:`negmine.models.doc_text` (``title + " " + text``), the string the models saw;
Tevatron keeps title and text apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from negmine.export.params import FORMATS
from negmine.models import doc_text


@dataclass(slots=True)
class Doc:
    doc_id: str
    title: str
    text: str
    score: float | None = None
    rendered: str | None = field(default=None, repr=False, compare=False)  # doc_text(title, text), when known

    @property
    def full(self) -> str:
        """The string the models saw: :func:`negmine.models.doc_text` of title and text."""
        return doc_text(self.title, self.text) if self.rendered is None else self.rendered


@dataclass
class Example:
    """One query with its (final) positives and negatives, negatives in export order (hardest first)."""

    query_id: str
    query: str
    positives: list[Doc]
    negatives: list[Doc]
    prompt: str | None = None  # the input's query instruction (FlagEmbedding "prompt"), written back by flagembedding
    type: str | None = None    # the input's FlagEmbedding "type"


@dataclass
class Options:
    num_negatives: int            # n-tuple width: ExportParams.num_negatives, else the select stage's
    with_ids: bool = False
    with_scores: bool = False
    prompt: str | None = None


@dataclass
class Side:
    """The positives or the negatives of a :class:`Columns` batch: one entry per document row, grouped by query in
    export order (each query's rows in their select order)."""

    owner: np.ndarray  # int64: the exported query (index into Columns.query) the row belongs to
    doc_id: pa.Array
    text: pa.Array     # the rendered document string (``Doc.full``)
    score: pa.Array    # float32, null where the teacher gave none (None or NaN)


@dataclass
class Columns:
    """A batch of examples as Arrow / numpy columns (what :class:`Example` lists hold, without a Python object per
    document): the columnar path of a table writer, for exports without a relabel overlay."""

    query_id: pa.Array  # per exported query, in export order
    query: pa.Array     # its text
    positives: Side
    negatives: Side

    def __len__(self) -> int:
        return len(self.query_id)

    def subset(self, keep: np.ndarray) -> Columns:
        """The queries where ``keep`` (bool per query) is true, with their documents."""
        new = np.cumsum(keep) - 1

        def side(s: Side) -> Side:
            rows = np.flatnonzero(keep[s.owner])
            return Side(new[s.owner[rows]], _take(s.doc_id, rows), _take(s.text, rows), _take(s.score, rows))

        mask = pa.array(keep)
        return Columns(self.query_id.filter(mask), self.query.filter(mask), side(self.positives),
                       side(self.negatives))


def negative_spans(c: Columns) -> tuple[np.ndarray, np.ndarray]:
    """Per query: how many negatives it has and the row of its first (negatives are grouped by query)."""
    nn = np.bincount(c.negatives.owner, minlength=len(c))
    return nn, np.cumsum(nn) - nn


def pairs(c: Columns) -> tuple[np.ndarray, np.ndarray]:
    """(positive row, negative row) of every (positive, negative) pair of each query: query by query, positives
    in order, each with the query's negatives in order (the rows :func:`triplet_rows` makes)."""
    nn, first_neg = negative_spans(c)
    block = nn[c.positives.owner]  # rows made by each positive
    pos = np.repeat(np.arange(len(block), dtype=np.int64), block)
    within = np.arange(int(block.sum()), dtype=np.int64) - np.repeat(np.cumsum(block) - block, block)
    return pos, np.repeat(first_neg[c.positives.owner], block) + within


def _take(a: pa.Array, rows: np.ndarray) -> pa.Array:
    return a.take(pa.array(rows, pa.int64()))


def _row_lists(columns: list[pa.Array], type: pa.DataType) -> pa.Array:
    """``[columns[0][i], columns[1][i], ...]`` per row ``i``, as a list column."""
    n, w = len(columns[0]), len(columns)
    values = pa.concat_arrays(columns).take(pa.array(np.arange(w * n).reshape(w, n).T.ravel()))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, w * n + 1, w, dtype=np.int32)), values,
                                    type=pa.list_(type))


def _by_query(c: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every document row of ``c``, query by query, positives before negatives, each in order: (position in the
    positives-then-negatives concatenation, its query, 1 for a positive / 0 for a negative)."""
    owner = np.concatenate([c.positives.owner, c.negatives.owner])
    label = np.concatenate([np.ones(len(c.positives.owner), np.int64), np.zeros(len(c.negatives.owner), np.int64)])
    order = np.lexsort((np.arange(len(owner)), -label, owner))
    return order, owner[order], label[order]


def _both(c: Columns, field: str, rows: np.ndarray) -> pa.Array:
    """The ``field`` of the positives-then-negatives concatenation at ``rows``."""
    return _take(pa.concat_arrays([getattr(c.positives, field), getattr(c.negatives, field)]), rows)


@dataclass
class Writer:
    name: str
    kind: str  # "table" (Parquet / JSONL rows with a fixed schema) | "jsonl"
    rows: Callable[[list[Example], Options], Any]  # table: pa.Table; jsonl: list[dict]
    schema: Callable[[Options], pa.Schema] | None = None
    parts: bool = True  # reads a Doc's title and text apart; False: only ``full``, ``doc_id`` and ``score``
    columns: Callable[[Columns, Options], pa.Table] | None = None  # the same table from a Columns batch


WRITERS: dict[str, Writer] = {}


def register_writer(name: str, kind: str, schema: Callable[[Options], pa.Schema] | None = None, *,
                    parts: bool = True):
    """Register the writer of format ``name`` (declared in ``negmine.export.params.FORMATS``, which the config and
    the CLI validate against). ``parts=False``: the writer reads only a Doc's ``full`` string (and ``doc_id``,
    ``score``), so the export holds each document's rendered string alone and gives its Docs empty ``title`` and
    ``text``."""
    if name not in FORMATS:
        raise ValueError(f"export format {name!r} is not declared in negmine.export.params.FORMATS")

    def deco(fn):
        WRITERS[name] = Writer(name, kind, fn, schema, parts)
        return fn

    return deco


_F = pa.float32()
_S = pa.string()


def columnar(name: str):
    """Register ``fn(Columns, Options) -> pa.Table`` as the columnar path of the (registered) writer ``name``: it
    must make the very table its ``rows`` makes from the same examples (tests/unit/test_export.py checks)."""

    def deco(fn):
        WRITERS[name].columns = fn
        return fn

    return deco


def score_column(scores: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Teacher scores as float32 with NaN as null (what :func:`_score` makes of a Doc's score)."""
    s = scores.cast(_F)
    if isinstance(s, pa.ChunkedArray):
        s = s.combine_chunks()
    return pc.if_else(pc.is_nan(s), pa.scalar(None, _F), s)


def _score(d: Doc) -> float | None:
    return None if d.score is None or d.score != d.score else float(d.score)


# ----------------------------------------------------------------------------------------------------------------
# triplet


def _triplet_schema(o: Options) -> pa.Schema:
    f = [("anchor", _S), ("positive", _S), ("negative", _S)]
    if o.with_scores:
        f.append(("scores", pa.list_(_F)))
    if o.with_ids:
        f += [("query_id", _S), ("positive_id", _S), ("negative_id", _S)]
    return pa.schema(f)


@register_writer("triplet", "table", _triplet_schema, parts=False)
def triplet_rows(examples: list[Example], o: Options) -> pa.Table:
    cols: dict[str, list] = {n: [] for n in _triplet_schema(o).names}
    for ex in examples:
        for p in ex.positives:
            for n in ex.negatives:
                cols["anchor"].append(ex.query)
                cols["positive"].append(p.full)
                cols["negative"].append(n.full)
                if o.with_scores:
                    cols["scores"].append([_score(p), _score(n)])
                if o.with_ids:
                    cols["query_id"].append(ex.query_id)
                    cols["positive_id"].append(p.doc_id)
                    cols["negative_id"].append(n.doc_id)
    return pa.table(cols, schema=_triplet_schema(o))


@columnar("triplet")
def triplet_columns(c: Columns, o: Options) -> pa.Table:
    pos, neg = pairs(c)
    p, n = c.positives, c.negatives
    owner = p.owner[pos]
    cols = [_take(c.query, owner), _take(p.text, pos), _take(n.text, neg)]
    if o.with_scores:
        cols.append(_row_lists([_take(p.score, pos), _take(n.score, neg)], _F))
    if o.with_ids:
        cols += [_take(c.query_id, owner), _take(p.doc_id, pos), _take(n.doc_id, neg)]
    return pa.Table.from_arrays(cols, schema=_triplet_schema(o))


# ----------------------------------------------------------------------------------------------------------------
# n-tuple


def _ntuple_schema(o: Options) -> pa.Schema:
    k = o.num_negatives
    f = [("anchor", _S), ("positive", _S)] + [(f"negative_{i}", _S) for i in range(1, k + 1)]
    if o.with_scores:
        f.append(("scores", pa.list_(_F)))
    if o.with_ids:
        f += [("query_id", _S), ("positive_id", _S)] + [(f"negative_{i}_id", _S) for i in range(1, k + 1)]
    return pa.schema(f)


@register_writer("n-tuple", "table", _ntuple_schema, parts=False)
def ntuple_rows(examples: list[Example], o: Options) -> pa.Table:
    k = o.num_negatives
    cols: dict[str, list] = {n: [] for n in _ntuple_schema(o).names}
    for ex in examples:
        if len(ex.negatives) < k:
            continue
        negs = ex.negatives[:k]
        for p in ex.positives:
            cols["anchor"].append(ex.query)
            cols["positive"].append(p.full)
            for i, n in enumerate(negs, 1):
                cols[f"negative_{i}"].append(n.full)
            if o.with_scores:
                cols["scores"].append([_score(p)] + [_score(n) for n in negs])
            if o.with_ids:
                cols["query_id"].append(ex.query_id)
                cols["positive_id"].append(p.doc_id)
                for i, n in enumerate(negs, 1):
                    cols[f"negative_{i}_id"].append(n.doc_id)
    return pa.table(cols, schema=_ntuple_schema(o))


@columnar("n-tuple")
def ntuple_columns(c: Columns, o: Options) -> pa.Table:
    k = o.num_negatives
    p, n = c.positives, c.negatives
    nn, first = negative_spans(c)
    pos = np.flatnonzero(nn[p.owner] >= k)  # queries with fewer than k negatives are left out (counted)
    owner = p.owner[pos]
    negs = [first[owner] + i for i in range(k)]
    cols = [_take(c.query, owner), _take(p.text, pos), *(_take(n.text, r) for r in negs)]
    if o.with_scores:
        cols.append(_row_lists([_take(p.score, pos), *(_take(n.score, r) for r in negs)], _F))
    if o.with_ids:
        cols += [_take(c.query_id, owner), _take(p.doc_id, pos), *(_take(n.doc_id, r) for r in negs)]
    return pa.Table.from_arrays(cols, schema=_ntuple_schema(o))


# ----------------------------------------------------------------------------------------------------------------
# labeled-pair / labeled-list


def _pair_schema(o: Options) -> pa.Schema:
    f = [("query", _S), ("passage", _S), ("score", _F) if o.with_scores else ("label", pa.int64())]
    if o.with_ids:
        f += [("query_id", _S), ("doc_id", _S)]
    return pa.schema(f)


@register_writer("labeled-pair", "table", _pair_schema, parts=False)
def labeled_pair_rows(examples: list[Example], o: Options) -> pa.Table:
    cols: dict[str, list] = {n: [] for n in _pair_schema(o).names}
    for ex in examples:
        for label, docs in ((1, ex.positives), (0, ex.negatives)):
            for d in docs:
                cols["query"].append(ex.query)
                cols["passage"].append(d.full)
                if o.with_scores:
                    cols["score"].append(_score(d))
                else:
                    cols["label"].append(label)
                if o.with_ids:
                    cols["query_id"].append(ex.query_id)
                    cols["doc_id"].append(d.doc_id)
    return pa.table(cols, schema=_pair_schema(o))


@columnar("labeled-pair")
def labeled_pair_columns(c: Columns, o: Options) -> pa.Table:
    rows, owner, label = _by_query(c)
    cols = [_take(c.query, owner), _both(c, "text", rows),
            _both(c, "score", rows) if o.with_scores else pa.array(label, pa.int64())]
    if o.with_ids:
        cols += [_take(c.query_id, owner), _both(c, "doc_id", rows)]
    return pa.Table.from_arrays(cols, schema=_pair_schema(o))


def _list_schema(o: Options) -> pa.Schema:
    f = [("query", _S), ("docs", pa.list_(_S)),
         ("scores", pa.list_(_F)) if o.with_scores else ("labels", pa.list_(pa.int64()))]
    if o.with_ids:
        f += [("query_id", _S), ("doc_ids", pa.list_(_S))]
    return pa.schema(f)


@register_writer("labeled-list", "table", _list_schema, parts=False)
def labeled_list_rows(examples: list[Example], o: Options) -> pa.Table:
    cols: dict[str, list] = {n: [] for n in _list_schema(o).names}
    for ex in examples:
        docs = ex.positives + ex.negatives
        cols["query"].append(ex.query)
        cols["docs"].append([d.full for d in docs])
        if o.with_scores:
            cols["scores"].append([_score(d) for d in docs])
        else:
            cols["labels"].append([1] * len(ex.positives) + [0] * len(ex.negatives))
        if o.with_ids:
            cols["query_id"].append(ex.query_id)
            cols["doc_ids"].append([d.doc_id for d in docs])
    return pa.table(cols, schema=_list_schema(o))


@columnar("labeled-list")
def labeled_list_columns(c: Columns, o: Options) -> pa.Table:
    rows, owner, label = _by_query(c)
    offsets = pa.array(np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(c)))]).astype(np.int32))

    def lists(values: pa.Array, type: pa.DataType) -> pa.Array:
        return pa.ListArray.from_arrays(offsets, values, type=pa.list_(type))

    cols = [c.query, lists(_both(c, "text", rows), _S),
            lists(_both(c, "score", rows), _F) if o.with_scores else lists(pa.array(label, pa.int64()), pa.int64())]
    if o.with_ids:
        cols += [c.query_id, lists(_both(c, "doc_id", rows), _S)]
    return pa.Table.from_arrays(cols, schema=_list_schema(o))


# ----------------------------------------------------------------------------------------------------------------
# ids only: one row per query, the texts in the NAME-queries / NAME-corpus tables the export writes beside it
# (Tevatron's newer layout: query_id, positive_document_ids, negative_document_ids + a corpus)


def _ids_schema(o: Options) -> pa.Schema:
    f = [("query_id", _S), ("positive_document_ids", pa.list_(_S)), ("negative_document_ids", pa.list_(_S))]
    if o.with_scores:
        f += [("positive_scores", pa.list_(_F)), ("negative_scores", pa.list_(_F))]
    return pa.schema(f)


@register_writer("ids", "table", _ids_schema)
def ids_rows(examples: list[Example], o: Options) -> pa.Table:
    cols: dict[str, list] = {n: [] for n in _ids_schema(o).names}
    for ex in examples:
        cols["query_id"].append(ex.query_id)
        cols["positive_document_ids"].append([d.doc_id for d in ex.positives])
        cols["negative_document_ids"].append([d.doc_id for d in ex.negatives])
        if o.with_scores:
            cols["positive_scores"].append([_score(d) for d in ex.positives])
            cols["negative_scores"].append([_score(d) for d in ex.negatives])
    return pa.table(cols, schema=_ids_schema(o))


IDS_QUERIES = pa.schema([("query_id", _S), ("text", _S)])
IDS_CORPUS = pa.schema([("docid", _S), ("title", _S), ("text", _S)])


# ----------------------------------------------------------------------------------------------------------------
# JSON lines


@register_writer("flagembedding", "jsonl", parts=False)
def flagembedding_rows(examples: Iterable[Example], o: Options) -> list[dict[str, Any]]:
    out = []
    for ex in examples:
        row: dict[str, Any] = {"query": ex.query, "pos": [d.full for d in ex.positives],
                               "neg": [d.full for d in ex.negatives],
                               "pos_scores": [_score(d) for d in ex.positives],
                               "neg_scores": [_score(d) for d in ex.negatives]}
        prompt = o.prompt if o.prompt is not None else ex.prompt
        if prompt:
            row["prompt"] = prompt
        if ex.type:
            row["type"] = ex.type
        if o.with_ids:
            row["query_id"] = ex.query_id
            row["pos_ids"] = [d.doc_id for d in ex.positives]
            row["neg_ids"] = [d.doc_id for d in ex.negatives]
        out.append(row)
    return out


def _passage(d: Doc, o: Options) -> dict[str, Any]:
    p: dict[str, Any] = {"docid": d.doc_id, "title": d.title, "text": d.text}
    if o.with_scores:
        p["score"] = _score(d)
    return p


@register_writer("tevatron", "jsonl")
def tevatron_rows(examples: Iterable[Example], o: Options) -> list[dict[str, Any]]:
    return [{"query_id": ex.query_id, "query": ex.query,
             "positive_passages": [_passage(d, o) for d in ex.positives],
             "negative_passages": [_passage(d, o) for d in ex.negatives]} for ex in examples]
