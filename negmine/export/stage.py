"""`negmine export`: ``RUN/negatives`` (+ ``RUN/relabel`` when present) → one training file.

The output is written to a temporary name beside the target and renamed when complete, then a hidden sidecar
``.<out>.negmine.json`` (a dot-file: ``datasets.load_dataset(EXPORT_DIR)`` skips it) records the fingerprint
(select + ingest [+ relabel] fingerprints and the export parameters), rows and sha256: an export whose inputs,
parameters and file are unchanged is skipped. ``split: eval=0.05`` writes ``<name>-train`` and ``<name>-eval``
files instead (queries assigned by a seeded hash, each file with its sidecar), and a dataset card ``README.md``
(``negmine/export/card.py``) is rewritten beside the export, so the directory loads and uploads as a dataset.
JSON lines go to ``.jsonl``, ``.jsonl.gz`` or ``.jsonl.zst`` (compressed accordingly); other suffixes are refused.

Relabel overlay: when ``RUN/relabel`` exists (stage ``relabel``) and was made from the current select artifact,
its ``negatives`` table replaces each query's negatives (the survivors, plus any candidates relabel took to
refill, in relabel's order) and the documents of its ``positives`` table are added to their query's positives
(with the teacher score they had as negatives). A query relabel dropped has no negatives left and is not exported.
A relabel artifact made from an older select run is stale: it is ignored with a warning (re-run
``negmine relabel``).

A query without any negative left is not exported (counted in the result as ``queries_without_negatives``, and
named in a warning line with the number of queries left out).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from negmine.errors import InputError
from negmine.export import card
from negmine.export.params import ExportParams
from negmine.export.writers import WRITERS, Columns, Doc, Example, Options, Side, negative_spans, score_column
from negmine.io.corpus import CorpusRows
from negmine.io.store import (
    Artifact,
    acquire_lock,
    check_inputs,
    hash_json,
    release_lock,
    sha256_file,
    write_json_atomic,
)
from negmine.progress import tqdm
from negmine.select.params import SelectParams
from negmine.select.stage import read_parquet

log = logging.getLogger("negmine")

SIDECAR_SUFFIX = card.SIDECAR_SUFFIX  # the sidecar of FILE is .FILE.negmine.json (card.sidecar_path)
EXPORT_VERSION = 1


def default_out(run_dir: Path, fmt: str) -> Path:
    ext = "jsonl" if WRITERS[fmt].kind == "jsonl" else "parquet"
    return run_dir / "export" / f"{fmt}.{ext}"


def _container(path: Path, fmt: str) -> str:
    """``parquet``, ``jsonl``, ``jsonl.gz`` or ``jsonl.zst`` from the output's suffix (JSON lines formats cannot be
    Parquet; any other suffix is an InputError)."""
    return card.container(path, WRITERS[fmt].kind == "jsonl", fmt)


def _split_files(out: Path, split: tuple[str, float] | None) -> dict[str, Path]:
    """Split name → the file it is written to."""
    if split is None:
        return {"train": out}
    return {"train": card.split_path(out, "train"), split[0]: card.split_path(out, split[0])}


def _up_to_date(files: dict[str, Path], fp: str) -> dict[str, Any] | None:
    """The sidecar of the train file when every file exists with a sidecar of this fingerprint and its sha256."""
    infos = []
    for path in files.values():
        try:
            info = json.loads(card.sidecar_path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not path.is_file() or info.get("fingerprint") != fp or info.get("sha256") != sha256_file(path):
            return None
        infos.append(info)
    return infos[0]


def _remove_replaced(out_dir: Path, name: str, files: dict[str, Path]) -> None:
    """Remove the files (and sidecars) an earlier export named ``name`` wrote into ``out_dir`` that this one does
    not write (e.g. ``name.parquet`` after switching to ``--split``)."""
    keep = {p.name for p in files.values()}
    for info in card.read_sidecars(out_dir):
        if info.get("export") == name and info["file"] not in keep:
            stale = out_dir / info["file"]
            stale.unlink(missing_ok=True)
            card.sidecar_path(stale).unlink(missing_ok=True)


def _relabel(run_dir: Path, select: Artifact, use: bool) -> Artifact | None:
    path = run_dir / "relabel"
    if not use or not (path / "_manifest.json").is_file():
        return None
    art = Artifact.open(path, stage="relabel")
    if select.fingerprint not in art.manifest.get("inputs", {}).values():
        log.warning("export: RUN/relabel was made from an older select run and is ignored "
                    "(re-run `negmine relabel` to apply it)")
        return None
    return art


_NEG_COLS = ["query_id", "doc_id", "teacher_score", "filled"]


def _read_some(art: Artifact, table: str, columns: list[str]) -> pa.Table:
    """The ``columns`` of ``table`` that the artifact has (a missing table reads as empty)."""
    if not art.has_table(table):
        return pa.table({c: pa.array([], pa.string()) for c in columns[:2]})
    have = set(art.manifest["tables"][table].get("columns", columns))
    return read_parquet(art.shard_paths(table), [c for c in columns if c in have])


class _Relabel:
    """The relabel overlay: per query, the final negatives (survivors + refills, in relabel's order) and the
    promoted positives."""

    def __init__(self, art: Artifact) -> None:
        t = _read_some(art, "negatives", _NEG_COLS)
        n = t.num_rows
        cols = {c: (t[c].to_pylist() if c in t.column_names else [None] * n) for c in _NEG_COLS}
        self.negatives: dict[str, list[tuple[str, float | None, bool]]] = {}
        for q, d, s, f in zip(cols["query_id"], cols["doc_id"], cols["teacher_score"], cols["filled"],
                              strict=True):
            self.negatives.setdefault(q, []).append((d, s, bool(f)))
        p = _read_some(art, "positives", ["query_id", "doc_id"])
        self.promoted: dict[str, list[str]] = {}
        for q, d in zip(p["query_id"].to_pylist(), p["doc_id"].to_pylist(), strict=True):
            if d not in self.promoted.setdefault(q, []):
                self.promoted[q].append(d)

    def doc_ids(self) -> set[str]:
        return {d for v in self.negatives.values() for d, _s, _f in v} | \
            {d for v in self.promoted.values() for d in v}


def rendered(title: pa.ChunkedArray, text: pa.ChunkedArray) -> tuple[Any, Any, Any]:
    """Titles and texts (nulls as "") and :func:`negmine.models.doc_text` of each pair, by Arrow."""
    title, text = pc.fill_null(title, ""), pc.fill_null(text, "")
    return title, text, pc.if_else(pc.not_equal(title, ""), pc.binary_join_element_wise(title, text, " "), text)


def _corpus_rows(ingest: Artifact, doc_ids: pa.Array) -> tuple[CorpusRows, np.ndarray]:
    """The corpus and the row of each of the export's documents; a document not in it is bad input (a select
    artifact from another corpus)."""
    corpus = CorpusRows.read(ingest)
    rows = corpus.rows(doc_ids)
    if len(rows) and rows.min() < 0:
        missing = doc_ids.filter(pa.array(rows < 0))
        raise InputError(f"{len(missing)} selected document(s) are not in the corpus (e.g. "
                         f"'{missing[0].as_py()}'); re-run the pipeline from ingest", ingest.path)
    return corpus, rows


class _Texts:
    """Query texts and the texts of the documents the export needs (one corpus scan). ``parts``: keep each
    document's title and text apart too (a writer that reads them); otherwise only the rendered string."""

    def __init__(self, ingest: Artifact, doc_ids: set[str], parts: bool = True) -> None:
        stats = ingest.stats or {}
        self.query_meta: dict[str, list[str]] = stats.get("query_prompt_type") or {}
        prompts, types = stats.get("prompts") or [], stats.get("types") or []
        # one prompt / type for every row of the input: every query has it
        self.prompt = prompts[0]["prompt"] if len(prompts) == 1 and not self.query_meta else None
        self.type = types[0]["type"] if len(types) == 1 and not self.query_meta else None
        q = read_parquet(ingest.shard_paths("queries"), ["query_id", "text"])
        self.queries = dict(zip(q["query_id"].to_pylist(), q["text"].to_pylist(), strict=True))
        want = sorted(doc_ids)
        corpus, rows = _corpus_rows(ingest, pa.array(want, pa.string()))
        # (title, text, doc_text(title, text)) of each wanted document: its shard's rows taken, the model string
        # made once per document by Arrow, not once per row of the export (title and text "" without ``parts``)
        self.docs: dict[str, tuple[str, str, str]] = {}
        for pos, t in corpus.read_rows(rows, ["title", "text"]):
            title, text, full = rendered(t["title"], t["text"])
            ids = [want[i] for i in pos.tolist()]
            if parts:
                for d, ti, tx, fu in zip(ids, title.to_pylist(), text.to_pylist(), full.to_pylist(), strict=True):
                    self.docs[d] = (ti, tx, fu)
            else:
                for d, fu in zip(ids, full.to_pylist(), strict=True):
                    self.docs[d] = ("", "", fu)

    def meta(self, query_id: str) -> tuple[str | None, str | None]:
        """The query's FlagEmbedding prompt and type from the input (ingest stats), or Nones."""
        own = self.query_meta.get(query_id)
        if own is not None:
            return own[0] or None, own[1] or None
        return self.prompt, self.type

    def doc(self, doc_id: str, score: float | None) -> Doc:
        title, text, full = self.docs[doc_id]
        return Doc(doc_id, title, text, score, full)


STRING_BYTES = 2**31 - 2**24  # the columnar export's texts past this many bytes are held as a large_string array


class _DocColumns:
    """The columnar path's texts: every select shard's doc ids, dictionary-encoded once (so a shard's rows find
    their documents by code, with no hash lookup per shard), the rendered string of each distinct document (one
    Arrow array, in the order the corpus shards gave them: ``at`` maps a code to its row) and the query texts."""

    def __init__(self, ingest: Artifact, doc_ids: dict[tuple[str, int], pa.ChunkedArray]) -> None:
        q = read_parquet(ingest.shard_paths("queries"), ["query_id", "text"])
        self.query_ids, self.query_texts = q["query_id"].combine_chunks(), q["text"].combine_chunks()
        chunks = [c for col in doc_ids.values() for c in col.chunks]
        enc = pc.dictionary_encode(pa.chunked_array(chunks, pa.string()).combine_chunks())
        codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        ends = np.cumsum([len(col) for col in doc_ids.values()])
        self.codes = dict(zip(doc_ids, np.split(codes, ends[:-1]) if len(ends) else [], strict=True))
        self.ids: pa.Array = enc.dictionary
        corpus, rows = _corpus_rows(ingest, self.ids)
        at, parts = [], []
        for pos, t in corpus.read_rows(rows, ["title", "text"]):
            at.append(pos)
            parts.extend(rendered(t["title"], t["text"])[2].chunks)
        # one array of every string (concat_arrays: pa.chunked_array of ChunkedArrays goes through Python, 1.5 s
        # for 550k strings); past 2 GiB of text a string array's 32-bit offsets overflow: large_string then, and a
        # shard's own rows are cast back (a shard's text is far below that)
        if sum(a.nbytes for a in parts) >= STRING_BYTES:
            parts = [a.cast(pa.large_string()) for a in parts]
        self.full = pa.concat_arrays(parts) if parts else pa.array([], pa.string())
        self.at = np.empty(len(rows), dtype=np.int64)  # dictionary code -> row of ``full`` (read order)
        if at:
            self.at[np.concatenate(at)] = np.arange(len(rows))

    def side(self, t: pa.Table, key: tuple[str, int], owner: np.ndarray, rows: np.ndarray) -> Side:
        """The ``rows`` of the select shard ``key`` (its table ``t``: teacher_score) as a :class:`Side`."""
        codes = self.codes[key][rows]
        return Side(owner, self.ids.take(pa.array(codes)), self.full.take(pa.array(self.at[codes])).cast(pa.string()),
                    score_column(t["teacher_score"].take(pa.array(rows))))


def _columns(select: Artifact, texts: _DocColumns, include_filled: bool, counts: dict[str, int]):
    """:func:`_examples` as :class:`Columns` batches (no relabel overlay): the same queries in the same order, the
    same documents, the same counts."""
    shards = zip(select.shard_paths("negatives"), select.shard_paths("positives"), strict=True)
    for i, (npath, ppath) in enumerate(shards):
        negs = read_parquet([npath], ["query_id", "teacher_score", "filled"])
        poss = read_parquet([ppath], ["query_id", "teacher_score"])
        enc = pc.dictionary_encode(pa.chunked_array([*negs["query_id"].chunks, *poss["query_id"].chunks],
                                                    pa.string()).combine_chunks())
        codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)  # queries by first appearance
        nq = len(enc.dictionary)
        neg_q, pos_q = codes[:negs.num_rows], codes[negs.num_rows:]
        keep = np.ones(negs.num_rows, dtype=bool)
        if not include_filled:
            filled = negs["filled"].to_numpy(zero_copy_only=False).astype(bool)
            counts["filled_left_out"] += int(filled.sum())
            keep = ~filled
        has_neg = np.bincount(neg_q[keep], minlength=nq) > 0
        has_pos = np.bincount(pos_q, minlength=nq) > 0
        counts["queries_without_negatives"] += int((~has_neg).sum())
        counts["queries_without_positives"] += int((has_neg & ~has_pos).sum())
        exported = has_neg & has_pos
        ordinal = np.cumsum(exported) - 1  # code -> exported query (queries keep their first-appearance order)
        qids = enc.dictionary.filter(pa.array(exported))
        sides = []
        for key, t, q, ok in ((("positives", i), poss, pos_q, exported[pos_q]),
                              (("negatives", i), negs, neg_q, keep & exported[neg_q])):
            rows = np.flatnonzero(ok)
            rows = rows[np.argsort(q[rows], kind="stable")]  # grouped by query, select order within
            sides.append(texts.side(t, key, ordinal[q[rows]], rows))
        qtext = pc.fill_null(texts.query_texts.take(pc.index_in(qids, value_set=texts.query_ids)), "")
        yield Columns(qids, qtext, *sides)


def _examples(select: Artifact, texts: _Texts, relabel: _Relabel | None, include_filled: bool,
              counts: dict[str, int]):
    """Yield lists of Examples, one list per select shard (query order of the select artifact)."""
    for npath, ppath in zip(select.shard_paths("negatives"), select.shard_paths("positives"), strict=True):
        negs = read_parquet([npath], _NEG_COLS)
        poss = read_parquet([ppath], ["query_id", "doc_id", "teacher_score"])
        selected: dict[str, list[tuple[str, float | None, bool]]] = {}
        for q, d, s, f in zip(*(negs[c].to_pylist() for c in _NEG_COLS), strict=True):
            selected.setdefault(q, []).append((d, s, f))
        pos_by_q: dict[str, list[Doc]] = {}
        for q, d, s in zip(*(poss[c].to_pylist() for c in ("query_id", "doc_id", "teacher_score")), strict=True):
            pos_by_q.setdefault(q, []).append(texts.doc(d, s))
        batch = []
        for q in dict.fromkeys([*selected, *pos_by_q]):
            mined = selected.get(q, [])
            pos = pos_by_q.get(q, [])
            if relabel is not None:
                score = {d: s for d, s, _f in mined}
                final = [(d, score.get(d) if s is None else s, f) for d, s, f in relabel.negatives.get(q, [])]
                promoted = relabel.promoted.get(q, [])
                before, after = {d for d, _s, _f in mined}, {d for d, _s, _f in final}
                counts["negatives_removed_by_relabel"] += len(before - after - set(promoted))
                counts["negatives_added_by_relabel"] += len(after - before)
                have = {p.doc_id for p in pos}
                for d in promoted:
                    if d not in have:
                        pos.append(texts.doc(d, score.get(d)))
                        counts["positives_promoted_by_relabel"] += 1
                mined = [x for x in final if x[0] not in promoted]
            negatives = []
            for d, s, f in mined:
                if f and not include_filled:
                    counts["filled_left_out"] += 1
                    continue
                negatives.append(texts.doc(d, s))
            if not negatives:
                counts["queries_without_negatives"] += 1
                continue
            if not pos:
                counts["queries_without_positives"] += 1
                continue
            prompt, kind = texts.meta(q)
            batch.append(Example(q, texts.queries.get(q, ""), pos, negatives, prompt, kind))
        yield batch


@dataclass
class ExportResult:
    path: Path
    skipped: bool
    rows: int
    info: dict[str, Any]  # the sidecar: fingerprint, format, rows, sha256, inputs, params, counts
    paths: dict[str, Path] = field(default_factory=dict)  # split name -> file (train only without --split)


def run_export(run_dir: str | Path, params: ExportParams | None = None) -> ExportResult:
    """Write the training file (skipped when inputs, parameters and the file are unchanged)."""
    params = params or ExportParams()
    run_dir = Path(run_dir)
    t0 = time.time()
    writer = WRITERS[params.format]
    select = Artifact.open(run_dir / "negatives", stage="select", hint="run `negmine select` first")
    ingest = Artifact.open(run_dir / "ingest", stage="ingest", hint="run `negmine ingest` first")
    check_inputs(select, ingest)
    relabel = _relabel(run_dir, select, params.use_relabel)
    out = Path(params.out) if params.out else default_out(run_dir, params.format)
    if out.is_dir():
        raise InputError("names a directory: give the path of the file to write", "--out")
    container = _container(out, params.format)
    split = card.parse_split(params.split) if params.split else None
    files = _split_files(out, split)
    k = params.num_negatives or int(select.params.get("num_negatives", SelectParams().num_negatives))
    opts = Options(with_ids=params.with_ids, with_scores=params.with_scores, num_negatives=k, prompt=params.prompt)
    inputs = {"select": select.fingerprint, "ingest": ingest.fingerprint,
              **({"relabel": relabel.fingerprint} if relabel is not None else {})}
    fp = hash_json({"version": EXPORT_VERSION, "inputs": inputs, "params": params.fingerprint_dict(),
                    "container": container, "num_negatives": k})
    info = _up_to_date(files, fp)
    if info is not None:
        log.info("export: %s is up to date, skipped", out)
        _remove_stale_temps(out, locked=False)
        return ExportResult(files["train"], True, int(info.get("rows_total", info.get("rows", 0))), info, files)

    overlay = _Relabel(relabel) if relabel is not None else None
    columnar = writer.columns is not None and overlay is None  # no Example / Doc objects: Arrow all the way
    texts: Any
    if columnar:
        texts = _DocColumns(ingest, {(table, i): read_parquet([path], ["doc_id"])["doc_id"]
                                     for table in ("negatives", "positives")
                                     for i, path in enumerate(select.shard_paths(table))})
    else:
        need: set[str] = overlay.doc_ids() if overlay is not None else set()
        for table in ("negatives", "positives"):
            for path in select.shard_paths(table):
                need.update(pc.unique(read_parquet([path], ["doc_id"])["doc_id"]).to_pylist())
        texts = _Texts(ingest, need, parts=writer.parts)

    counts = dict.fromkeys(("queries", "queries_without_negatives", "queries_without_positives",
                            "queries_short_for_n_tuple", "filled_left_out", "negatives_removed_by_relabel",
                            "negatives_added_by_relabel", "positives_promoted_by_relabel"), 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.with_name(f".{out.name}.lock")
    acquire_lock(lock, "export")  # one export of a file at a time; then a temporary file left by a kill is stale
    _remove_stale_temps(out, locked=True)
    held: set[str] = set()
    if split is not None:
        qids = read_parquet(select.shard_paths("queries"), ["query_id"])["query_id"].to_pylist()
        held = card.held_out(qids, split[1], int(select.params.get("seed", 0) or 0))
    tmps = {s: f.with_name(f".{f.name}.tmp-{uuid.uuid4().hex[:8]}") for s, f in files.items()}
    rows_by = dict.fromkeys(files, 0)
    queries_by = dict.fromkeys(files, 0)
    schema = writer.schema(opts) if writer.schema else None
    seen_schema = schema
    exported_queries: list[str] = []
    try:
        with tqdm(total=select.num_rows("queries"), desc="export", unit="q", disable=None) as bar:
            sinks = {s: _Sink(tmps[s], container, schema) for s in files}
            batches = _columns(select, texts, params.include_filled, counts) if columnar else \
                _examples(select, texts, overlay, params.include_filled, counts)
            for batch in batches:
                counts["queries"] += len(batch)
                parts: dict[str, Any] = {}
                if isinstance(batch, Columns):
                    if params.format == "n-tuple":
                        counts["queries_short_for_n_tuple"] += int((negative_spans(batch)[0] < k).sum())
                    qids = batch.query_id.to_pylist()
                    exported_queries.extend(qids)
                    out_held = np.array([q in held for q in qids], dtype=bool)
                    parts = {"train": batch} if split is None else \
                        {name: batch.subset(m) for name, m in (("train", ~out_held), (split[0], out_held)) if m.any()}
                else:
                    if params.format == "n-tuple":
                        counts["queries_short_for_n_tuple"] += sum(len(ex.negatives) < k for ex in batch)
                    for ex in batch:
                        exported_queries.append(ex.query_id)
                        parts.setdefault(split[0] if split is not None and ex.query_id in held else "train",
                                         []).append(ex)
                for s, part in parts.items():
                    if isinstance(part, Columns):
                        assert writer.columns is not None
                        data = writer.columns(part, opts)
                    else:
                        data = writer.rows(part, opts)
                    if seen_schema is None and len(data):
                        seen_schema = data.schema if isinstance(data, pa.Table) else pa.Table.from_pylist(data).schema
                    rows_by[s] += sinks[s].write(data)
                    queries_by[s] += len(part)
                bar.update(len(batch))
            for sink in sinks.values():
                sink.close()
        for s, f in files.items():
            os.replace(tmps[s], f)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        release_lock(lock)
    rows = sum(rows_by.values())
    _warn_left_out(out, counts, params.format, k)
    if rows == 0:
        log.warning("export: %s has no rows (no query has both a positive and enough negatives)", out)
    name = card.export_name(out)
    features = card.features_yaml(seen_schema) if seen_schema is not None else None
    info = {}
    for s, f in files.items():
        info_s = {"fingerprint": fp, "format": params.format, "container": container, "rows": rows_by[s],
                  "sha256": sha256_file(f), "inputs": inputs, "params": params.model_dump(mode="json"),
                  "counts": counts, "relabel_applied": relabel is not None, "seconds": round(time.time() - t0, 3),
                  "export": name, "file": f.name, "split": s, "split_queries": queries_by[s],
                  "features": features, "rows_total": rows}
        write_json_atomic(card.sidecar_path(f), info_s)
        info = info or info_s
    _remove_replaced(out.parent, name, files)
    if params.format == "ids":
        _write_id_tables(out, name, texts, exported_queries, fp, inputs)
    card.write_card(out.parent, run_dir, default=name, license=params.license)
    log.info("export: %s → %s (%d rows, %d queries%s)", params.format,
             out if split is None else ", ".join(str(f) for f in files.values()), rows,
             counts["queries"] - counts["queries_short_for_n_tuple"],
             "" if split is None else f"; {split[0]}: {queries_by[split[0]]} queries")
    return ExportResult(files["train"], False, rows, info, files)


def _write_id_tables(out: Path, name: str, texts: _Texts, query_ids: list[str], fp: str,
                     inputs: dict[str, str]) -> None:
    """The texts of an ids export: NAME-queries (query_id, text) of its queries and NAME-corpus (docid, title,
    text) of every document it names, Parquet beside it, each with its sidecar (configs of the card)."""
    from negmine.export.writers import IDS_CORPUS, IDS_QUERIES
    from negmine.io.store import write_parquet_atomic

    docs = sorted(texts.docs)
    tables = {
        "queries": pa.table([query_ids, [texts.queries.get(q, "") for q in query_ids]], schema=IDS_QUERIES),
        "corpus": pa.table([docs, [texts.docs[d][0] for d in docs], [texts.docs[d][1] for d in docs]],
                           schema=IDS_CORPUS),
    }
    for kind, table in tables.items():
        path = out.with_name(f"{name}-{kind}.parquet")
        write_parquet_atomic(table, path)
        write_json_atomic(card.sidecar_path(path), {
            "fingerprint": fp, "format": f"ids-{kind}", "container": "parquet", "rows": table.num_rows,
            "sha256": sha256_file(path), "inputs": inputs, "export": f"{name}-{kind}", "file": path.name,
            "split": "train", "features": card.features_yaml(table.schema)})


def _warn_left_out(out: Path, counts: dict[str, int], fmt: str, k: int) -> None:
    """One warning line with the number of queries the export leaves out, and why."""
    why = [(counts["queries_without_negatives"], "no negative left"),
           (counts["queries_without_positives"], "no positive"),
           (counts["queries_short_for_n_tuple"] if fmt == "n-tuple" else 0,
            f"fewer than {k} negatives for n-tuple: select with short_policy fill or drop, or export "
            "--num-negatives smaller")]
    total = sum(n for n, _ in why)
    if total:
        log.warning("export: %d queries left out of %s (%s)", total, out,
                    "; ".join(f"{n} with {reason}" for n, reason in why if n))


def _remove_stale_temps(out: Path, locked: bool) -> None:
    """Remove the temporary files a killed export of ``out`` left (``locked``: this process holds the file's export
    lock; otherwise it is taken for the moment, and nothing is removed while another export of the file runs)."""
    lock = out.with_name(f".{out.name}.lock")
    if not locked:
        try:
            acquire_lock(lock, "export")
        except InputError:
            return
    try:
        for stale in out.parent.glob(f".{out.name}.tmp-*"):
            stale.unlink(missing_ok=True)
    finally:
        if not locked:
            release_lock(lock)


class _Sink:
    """Appends row batches to a Parquet or JSON lines file (fsynced on close)."""

    def __init__(self, path: Path, container: str, schema: pa.Schema | None) -> None:
        self.path = path
        self.pw: Any = None  # pyarrow.parquet.ParquetWriter
        self.fh: IO[bytes] | Any = None
        if container == "parquet":
            import pyarrow.parquet as pq

            self.pw = pq.ParquetWriter(str(path), schema, compression="zstd")
        elif container == "jsonl.gz":
            import gzip

            self.fh = gzip.open(path, "wb")
        elif container == "jsonl.zst":
            import zstandard

            self.fh = zstandard.open(path, "wb")
        else:
            self.fh = open(path, "wb")

    def write(self, data: pa.Table | list[dict[str, Any]]) -> int:
        if self.pw is not None:
            assert not isinstance(data, list), "a Parquet sink takes tables"
            if data.num_rows:  # a 0-row row group makes `datasets` fail to read the file
                self.pw.write_table(data)
            return data.num_rows
        rows = data.to_pylist() if isinstance(data, pa.Table) else data
        assert self.fh is not None
        self.fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
        return len(rows)

    def close(self) -> None:
        if self.pw is not None:
            self.pw.close()
        elif self.fh is not None:
            self.fh.close()
        with open(self.path, "rb") as f:
            os.fsync(f.fileno())
