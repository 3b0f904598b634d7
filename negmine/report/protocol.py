"""The hidden-positives protocol: measure false negatives on a dataset with several relevant documents per query.

From a BEIR dataset with graded, multi-relevant qrels (Cranfield: ~7 relevant docs per query, grades 1–4), each
query keeps ONE given positive – its best-graded relevant document – and every other relevant document is
*hidden*: the miner never sees it, and a hidden document that comes back as a "negative" is a false negative
that a real user's data (one labelled positive per query) would have contained.

Tie-break among equally graded documents: the smallest doc id, compared **numerically when both ids are
integers** (Cranfield ids are "1".."1400", so "9" < "12" as a reader expects) and as strings otherwise (an
integer id sorts before a non-integer one). Relevant documents that have no text in the corpus are never chosen
(ingest skips empty documents, which would leave the query without a positive).

:func:`split_hidden` is the pure rule; :func:`hidden_positives` writes a BEIR directory with the reduced qrels
(corpus and queries are linked, not copied) that `negmine ingest` / `negmine mine` read like any other;
:func:`mine_hidden_positives` does both and mines it (`negmine eval --protocol hidden-positives`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Container
from pathlib import Path
from typing import Any

import pyarrow as pa

from negmine.errors import InputError
from negmine.io import schemas


def id_sort_key(doc_id: str) -> tuple[int, int, str]:
    """Numeric order for integer ids, string order otherwise; integers first."""
    s = doc_id.strip()
    if s.isdigit():
        return (0, int(s), s)
    return (1, 0, s)


def split_hidden(qrels: pa.Table, min_grade: float = 1.0,
                 usable_docs: Container[str] | None = None) -> tuple[pa.Table, pa.Table]:
    """Split relevant qrels into ``(given, hidden)``: per query, the best-graded relevant doc (ties: smallest id,
    see :func:`id_sort_key`) is given; the other relevant docs are hidden. Docs not in ``usable_docs`` (when given)
    are never chosen as the given positive but stay hidden. Queries without a usable relevant doc are left out of
    ``given`` (and all their relevant docs are hidden)."""
    q = qrels["query_id"].to_pylist()
    d = qrels["doc_id"].to_pylist()
    g = qrels["grade"].to_pylist()
    by_q: dict[str, list[tuple[str, float]]] = {}
    for qi, di, gi in zip(q, d, g, strict=False):
        if gi is not None and gi >= min_grade:
            by_q.setdefault(qi, []).append((di, float(gi)))
    given_rows: list[tuple[str, str, float]] = []
    hidden_rows: list[tuple[str, str, float]] = []
    for qi, docs in by_q.items():
        usable = [x for x in docs if usable_docs is None or x[0] in usable_docs]
        best = min(usable, key=lambda x: (-x[1], id_sort_key(x[0])))[0] if usable else None
        for di, gi in docs:
            (given_rows if di == best else hidden_rows).append((qi, di, gi))

    def table(rows: list[tuple[str, str, float]]) -> pa.Table:
        cols: list = list(zip(*rows, strict=False)) if rows else [[], [], []]
        return pa.table({"query_id": list(cols[0]), "doc_id": list(cols[1]), "grade": list(cols[2])},
                        schema=schemas.POSITIVES)

    return table(given_rows), table(hidden_rows)


# ----------------------------------------------------------------------------------------------------------------
# files


class _QrelsCollector:
    """Receives rows from the BEIR qrels reader (the same parser ingest uses: header detection, line errors)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {"positives_below_min_grade": 0}
        self.rows: dict[tuple[str, str], float] = {}

    def add_positive(self, query_id: str, doc_id: str, grade: float, where, line=None, row=None) -> None:
        key = (query_id, doc_id)
        self.rows[key] = max(grade, self.rows.get(key, grade))


def read_qrels(path: str | os.PathLike, min_grade: float = 0.0) -> pa.Table:
    """A BEIR qrels TSV (``query-id  corpus-id  score``, header optional, .gz/.zst accepted) as a
    ``(query_id, doc_id, grade)`` table; rows below ``min_grade`` are left out. Bad rows raise InputError with
    the line number."""
    from negmine.io.params import IngestParams
    from negmine.io.readers.beir import read_qrels as _read

    p = Path(path)
    if not p.is_file():
        raise InputError("qrels file not found", p)
    c = _QrelsCollector()
    _read(p, IngestParams(min_grade=min_grade), c)
    if not c.rows:
        raise InputError("no qrels rows", p)
    keys = list(c.rows)
    return pa.table({"query_id": [k[0] for k in keys], "doc_id": [k[1] for k in keys],
                     "grade": list(c.rows.values())}, schema=schemas.POSITIVES)


def _corpus_docs_with_text(path: Path) -> set[str]:
    from negmine.io.textio import iter_jsonl

    out = set()
    for _n, obj in iter_jsonl(path):
        if str(obj.get("text") or "").strip() or str(obj.get("title") or "").strip():
            out.add(str(obj.get("_id")))
    return out


def _find(src: Path, stem: str) -> Path:
    for suffix in ("", ".gz", ".zst", ".zstd"):
        p = src / f"{stem}{suffix}"
        if p.is_file():
            return p
    raise InputError(f"missing file (BEIR layout needs {stem})", src / stem)


def _link(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        dst.symlink_to(src.resolve())
    except OSError:
        shutil.copyfile(src, dst)


def hidden_positives(beir_dir: str | os.PathLike, split: str, out_dir: str | os.PathLike,
                     min_grade: float = 1.0) -> dict:
    """Write ``out_dir`` as a BEIR directory whose ``qrels/<split>.tsv`` holds only the given positive of each
    query (corpus.jsonl and queries.jsonl are symlinks to the source). Also writes ``hidden.tsv`` (the hidden
    relevant docs, for reference) and ``protocol.json``. Returns the protocol summary. Scoring must use the FULL
    qrels of the source (``beir_dir/qrels/<split>.tsv``)."""
    src, out = Path(beir_dir), Path(out_dir)
    qrels_path = src / "qrels" / f"{split}.tsv"
    full = read_qrels(qrels_path)
    corpus = _find(src, "corpus.jsonl")
    queries = _find(src, "queries.jsonl")
    given, hidden = split_hidden(full, min_grade, _corpus_docs_with_text(corpus))
    if not len(given):
        raise InputError(f"no query has a relevant document with grade >= {min_grade}", qrels_path)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    _link(corpus, out / corpus.name)
    _link(queries, out / queries.name)
    _write_tsv(out / "qrels" / f"{split}.tsv", given)
    _write_tsv(out / "hidden.tsv", hidden)
    summary = {
        "protocol": "hidden-positives",
        "source": str(src.resolve()),
        "split": split,
        "min_grade": min_grade,
        "tie_break": "best grade, then smallest doc id (numeric when both ids are integers)",
        "queries": len(given),
        "given_positives": len(given),
        "hidden_positives": len(hidden),
        "queries_with_hidden": len(set(hidden["query_id"].to_pylist()) & set(given["query_id"].to_pylist())),
    }
    with open(out / "protocol.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return summary



def mine_hidden_positives(run_dir: str | os.PathLike, qrels_path: str | os.PathLike, cfg: Any,
                          data: str | os.PathLike | None = None, min_grade: float = 1.0) -> dict:
    """`negmine eval --protocol hidden-positives`: write the hidden-positives input of the BEIR dataset that holds
    ``qrels_path`` (``DATA/qrels/SPLIT.tsv``, or ``data``) into ``RUN/protocol``, mine it into ``run_dir`` with the
    config ``cfg`` (its ``input`` section pointed at that input) and return ``{"protocol": summary}``."""
    from negmine.pipeline import run_mine

    qrels_path = Path(qrels_path)
    src = Path(data) if data is not None else qrels_path.resolve().parent.parent
    split = qrels_path.name.split(".")[0]
    if not (src / "qrels" / qrels_path.name).is_file() and data is None:
        raise InputError("hidden-positives needs the qrels inside a BEIR directory (DATA/qrels/SPLIT.tsv), "
                         "or --data DIR", qrels_path)
    proto_dir = Path(run_dir) / "protocol"
    summary = hidden_positives(src, split, proto_dir, min_grade=min_grade)
    source = cfg.input.model_copy(update={"path": str(proto_dir), "format": "beir", "split": split})
    run_mine(cfg.model_copy(update={"input": source}), Path(run_dir))
    return {"protocol": summary}

def _write_tsv(path: Path, t: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, g in zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), t["grade"].to_pylist(), strict=False):
            f.write(f"{q}\t{d}\t{int(g) if float(g).is_integer() else g}\n")
    os.replace(tmp, path)
