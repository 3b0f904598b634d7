"""(query, positive) pairs in JSONL, Parquet or CSV/TSV.

Columns (all configurable, config section ``input``):

* ``query_column`` (``query``): the query text. Without ``query_id_column`` the query id is a content hash of
  the text, so identical query texts are one query with several positives.
* ``positive_column`` (``positive``): the positive's text (in JSONL also a list of texts). Without
  ``positive_id_column`` its id is that of the ``--corpus`` document with the same text, else a content hash
  (and the document is added to the corpus).
* ``positive_id_column``: the positive's doc id. A row may then omit the text when ``--corpus`` has the doc.
* ``positive_title_column``, ``grade_column`` (default grade 1; rows below ``min_grade`` are not positives),
  ``negative_column`` (text, or list of texts, of given negatives, e.g. ``negative`` in (anchor, positive,
  negative) triplets; they go to ``given_negatives`` and the corpus).

With the default column names, sentence-transformers' usual columns are found without flags: ``anchor`` for the
query when there is no ``query`` column, ``answer`` for the positive when there is no ``positive`` column, and a
``negative`` column as given negatives. ``src`` may be a Hugging Face dataset folder (sharded Parquet,
``save_to_disk`` output, ``.arrow``; ``negmine/io/readers/hf.py``): its split's files are read in order.

Errors name the file and the line (JSONL) or the data row (Parquet, Arrow, CSV: the header is not counted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from negmine.errors import InputError
from negmine.io.ingest import text_id
from negmine.io.params import IngestParams
from negmine.io.readers.corpus import corpus_file, read_extra_corpus, text_doc
from negmine.io.readers.fields import get_grade, get_id, get_text
from negmine.io.textio import columns_of, iter_records, record_kind, require_columns
from negmine.progress import tqdm


def _sources(src: Path, params: IngestParams) -> list[Path]:
    if src.is_dir():
        from negmine.io.readers.hf import data_files

        files = data_files(src, params.split)
        if not files:
            raise InputError("no data files (.parquet, .arrow, .jsonl, .csv) in the folder", src)
        return files
    return [src]


def input_files(src: Path, params: IngestParams) -> list[Path]:
    files = _sources(src, params)
    for f in files:
        record_kind(f)
    return [*files, *corpus_file(params)]


def _first_columns(src: Path) -> list[str]:
    cols = columns_of(src)
    if cols is not None:
        return cols
    for _loc, rec in iter_records(src):
        return list(rec)
    return []


def auto_columns(src: Path, params: IngestParams) -> IngestParams:
    """``params`` with sentence-transformers' column names when the defaults are absent from ``src``."""
    defaults = IngestParams()
    cols = set(_first_columns(src))
    changes: dict[str, str] = {}
    if params.query_column == defaults.query_column and "query" not in cols and "anchor" in cols:
        changes["query_column"] = "anchor"
    if params.positive_column == defaults.positive_column and not params.positive_id_column \
            and "positive" not in cols and "answer" in cols:
        changes["positive_column"] = "answer"
    if params.negative_column is None and "negative" in cols:
        changes["negative_column"] = "negative"
    return params.model_copy(update=changes) if changes else params


def _columns(params: IngestParams) -> dict[str, str]:
    """Configured column → the option that names it (for 'no column' errors)."""
    cols = {params.query_column: "--query-column"}
    if params.positive_id_column:
        cols[params.positive_id_column] = "--positive-id-column"
    else:
        cols[params.positive_column] = "--positive-column"
    for name, opt in ((params.query_id_column, "--query-id-column"),
                      (params.positive_title_column, "--positive-title-column"),
                      (params.negative_column, "--negative-column"),
                      (params.grade_column, "--grade-column")):
        if name:
            cols[name] = opt
    return cols


def _texts(rec: dict, key: str, where: Any, loc: dict[str, int]) -> list[str]:
    """A text field that may hold one text or (JSONL) a list of texts."""
    v = rec.get(key)
    if isinstance(v, list):
        for x in v:
            if type(x) is not str:
                raise InputError(f"field '{key}' must hold strings, got {type(x).__name__} in the list", where,
                                 **loc)
        return v
    return [get_text(rec, key, where, loc)]


def read(src: Path, params: IngestParams, canon: Any) -> None:
    by_text = read_extra_corpus(params, canon)
    files = _sources(src, params)
    params = auto_columns(files[0], params)
    for path in files:
        _read_file(path, params, canon, by_text)


def _read_file(src: Path, params: IngestParams, canon: Any, by_text: Any) -> None:
    needed = _columns(params)
    require_columns(src, needed)
    kind = record_kind(src)
    typed = kind in ("parquet", "arrow")
    want = list(needed) + ([params.positive_column] if params.positive_id_column else [])
    if typed:
        have = set(columns_of(src) or [])
        want = [c for c in dict.fromkeys(want) if c in have]
    q_col, p_col, pid_col = params.query_column, params.positive_column, params.positive_id_column
    for loc, rec in tqdm(iter_records(src, columns=want), desc="pairs", unit=" rows", unit_scale=True,
                         disable=None, leave=False):
        text = get_text(rec, q_col, src, loc)
        qid = (get_id(rec, params.query_id_column, src, loc, typed_ints=typed) if params.query_id_column
               else text_id("q", text))
        canon.add_query(qid, text, src, **loc)
        grade = get_grade(rec, params.grade_column, src, loc) if params.grade_column else 1.0
        if grade < params.min_grade:
            canon.counts["positives_below_min_grade"] += 1
            continue
        title = get_text(rec, params.positive_title_column, src, loc, required=False) \
            if params.positive_title_column else ""
        if pid_col:
            did = get_id(rec, pid_col, src, loc, typed_ints=typed)
            ptext = rec.get(p_col)
            if ptext not in (None, ""):
                canon.add_doc(did, title, get_text(rec, p_col, src, loc), src, **loc)
            dids = [did]
        else:
            dids = [text_doc(canon, by_text, title, t, src, loc) for t in _texts(rec, p_col, src, loc)]
        for did in dids:
            canon.add_positive(qid, did, grade, src, **loc)
        if params.negative_column and rec.get(params.negative_column) not in (None, ""):  # optional per row
            for t in _texts(rec, params.negative_column, src, loc):
                canon.add_given_negative(qid, text_doc(canon, by_text, "", t, src, loc), src, **loc)
