"""`negmine ingest`: any supported input → canonical artifacts in ``RUN/ingest/``.

Tables: ``corpus (doc_id, title, text)``, ``queries (query_id, text)``, ``positives (query_id, doc_id, grade)``
and ``given_negatives (query_id, doc_id)`` (empty unless the input has them).

Readers (one per format, in ``negmine/io/readers/``) push records into a :class:`Canon` builder, which validates,
de-duplicates, counts, and streams corpus shards to the stage writer so memory stays bounded for large corpora.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from negmine.errors import InputError, RuntimeFailure
from negmine.io import schemas
from negmine.io.params import IngestParams
from negmine.io.store import StageResult, StageWriter

log = logging.getLogger("negmine")

STAGE = "ingest"
TABLES = {"corpus": schemas.CORPUS, "queries": schemas.QUERIES, "positives": schemas.POSITIVES,
          "given_negatives": schemas.GIVEN_NEGATIVES}


def text_id(prefix: str, text: str) -> str:
    """Stable id for a text-only record: a content hash (same text → same id, across runs and machines)."""
    return prefix + hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _blank(s: str) -> bool:
    return not s or s.isspace()


@dataclass
class Canon:
    """Accumulates canonical records with validation and counting.

    Documents stream out through ``flush_docs`` in shards of exactly ``shard_rows`` documents (so shard
    boundaries depend only on the input, which makes a killed run resumable shard by shard); queries,
    positives and given negatives are kept in memory (they are small next to the corpus) and written by
    :meth:`finish`. Duplicate documents are detected by id; one with identical title and text is kept once and
    counted, one with different text is an error (compared by a 64-bit hash of title and text).
    """

    flush_docs: Callable[[int, pa.Table], None]
    shard_rows: int = 100_000
    strict: bool = False
    skip_unknown: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {
        "docs": 0, "duplicate_docs_identical": 0, "empty_docs_skipped": 0,
        "queries": 0, "duplicate_queries_identical": 0, "empty_queries_skipped": 0,
        "positives": 0, "duplicate_positives": 0, "positives_below_min_grade": 0,
        "unknown_skipped": 0, "positives_to_empty_docs_skipped": 0, "given_negatives": 0,
    })
    info: dict[str, Any] = field(default_factory=dict)  # non-count facts for the manifest's stats
    source: str = "input"  # named by errors about the input as a whole
    _doc_hash: dict[str, int] = field(default_factory=dict)
    _empty_docs: set[str] = field(default_factory=set)
    _ids: list[str] = field(default_factory=list)
    _titles: list[str] = field(default_factory=list)
    _texts: list[str] = field(default_factory=list)
    _shard: int = 0
    queries: dict[str, str] = field(default_factory=dict)
    _empty_queries: set[str] = field(default_factory=set)
    positives: dict[tuple[str, str], float] = field(default_factory=dict)
    given_negatives: dict[tuple[str, str], None] = field(default_factory=dict)

    # -- documents ----------------------------------------------------------------------------------------------
    def add_doc(self, doc_id: str, title: str, text: str, where: Any, line: int | None = None,
                row: int | None = None) -> bool:
        """Add a document; returns False when it was skipped (empty) or already present (identical)."""
        if (not text or text.isspace()) and (not title or title.isspace()):  # inlined _blank: hot path
            if self.strict:
                raise InputError(f"document '{doc_id}' has empty text (--strict)", where, line=line, row=row)
            self.counts["empty_docs_skipped"] += 1
            if doc_id not in self._doc_hash:
                self._empty_docs.add(doc_id)
            return False
        h = hash((title, text))
        seen = self._doc_hash
        n = len(seen)
        prev = seen.setdefault(doc_id, h)
        if len(seen) == n:  # the id was there before
            if prev != h:
                raise InputError(f"duplicate doc id '{doc_id}' with different text", where, line=line, row=row)
            self.counts["duplicate_docs_identical"] += 1
            return False
        if self._empty_docs:
            self._empty_docs.discard(doc_id)
        self._ids.append(doc_id)
        self._titles.append(title)
        self._texts.append(text)
        if len(self._ids) >= self.shard_rows:
            self._flush()
        return True

    def has_doc(self, doc_id: str) -> bool:
        return doc_id in self._doc_hash

    @property
    def num_docs(self) -> int:
        return len(self._doc_hash)

    def _flush(self) -> None:
        if not self._ids:
            return
        t = pa.table([pa.array(self._ids, pa.string()), pa.array(self._titles, pa.string()),
                      pa.array(self._texts, pa.string())], schema=schemas.CORPUS)
        self._ids, self._titles, self._texts = [], [], []
        self.flush_docs(self._shard, t)
        self._shard += 1

    # -- queries and labels -------------------------------------------------------------------------------------
    def add_query(self, query_id: str, text: str, where: Any, line: int | None = None,
                  row: int | None = None) -> bool:
        """Add a query; returns False when it was skipped (empty) or already present (identical)."""
        if _blank(text):
            if self.strict:
                raise InputError(f"query '{query_id}' has empty text (--strict)", where, line=line, row=row)
            self.counts["empty_queries_skipped"] += 1
            self._empty_queries.add(query_id)
            return False
        prev = self.queries.get(query_id)
        if prev is not None:
            if prev != text:
                raise InputError(f"duplicate query id '{query_id}' with different text", where, line=line, row=row)
            self.counts["duplicate_queries_identical"] += 1
            return False
        self.queries[query_id] = text
        return True

    def _known(self, query_id: str, doc_id: str, where: Any, line: int | None, row: int | None) -> bool:
        if doc_id in self._empty_docs:
            self.counts["positives_to_empty_docs_skipped"] += 1
            return False
        if query_id in self._empty_queries and query_id not in self.queries:
            self.counts["unknown_skipped"] += 1
            return False
        for kind, ok, ident in (("query", query_id in self.queries, query_id),
                                ("doc", doc_id in self._doc_hash, doc_id)):
            if not ok:
                if self.skip_unknown:
                    self.counts["unknown_skipped"] += 1
                    return False
                raise InputError(f"unknown {kind} id '{ident}' (use --skip-unknown to skip such rows)", where,
                                 line=line, row=row)
        return True

    def add_positive(self, query_id: str, doc_id: str, grade: float, where: Any, line: int | None = None,
                     row: int | None = None) -> None:
        if not self._known(query_id, doc_id, where, line, row):
            return
        key = (query_id, doc_id)
        if key in self.positives:
            self.counts["duplicate_positives"] += 1
            self.positives[key] = max(self.positives[key], grade)
            return
        self.positives[key] = grade

    def add_given_negative(self, query_id: str, doc_id: str, where: Any, line: int | None = None,
                           row: int | None = None) -> None:
        if not self._known(query_id, doc_id, where, line, row):
            return
        self.given_negatives[(query_id, doc_id)] = None

    # -- output -------------------------------------------------------------------------------------------------
    def finish(self, write: Callable[[str, int, pa.Table], None], keep_all_queries: bool = False) -> None:
        """Flush the corpus and write queries (those with a positive, unless ``keep_all_queries``),
        positives and given negatives."""
        self._flush()
        if not self._doc_hash:
            raise InputError("the corpus has no documents", self.source)
        self.counts["docs"] = len(self._doc_hash)
        with_pos = {q for q, _ in self.positives}
        # a positive (q, d) that is also a given negative is a positive
        conflicts = [k for k in self.given_negatives if k in self.positives]
        for key in conflicts:
            del self.given_negatives[key]
        if conflicts:
            self.counts["given_negatives_that_are_positives_dropped"] = len(conflicts)
        qids = [q for q in self.queries if keep_all_queries or q in with_pos]
        if not qids:
            raise InputError("no query has a positive: nothing to mine", self.source)
        self.counts["queries"] = len(qids)
        self.counts["positives"] = len(self.positives)
        self.counts["given_negatives"] = len(self.given_negatives)
        self.counts["queries_without_positive_dropped"] = len(self.queries) - len(qids)
        tables = {
            "queries": {"query_id": qids, "text": [self.queries[q] for q in qids]},
            "positives": {"query_id": [q for q, _ in self.positives], "doc_id": [d for _, d in self.positives],
                          "grade": list(self.positives.values())},
            "given_negatives": {"query_id": [q for q, _ in self.given_negatives],
                                "doc_id": [d for _, d in self.given_negatives]},
        }
        for name, cols in tables.items():
            t = pa.table(cols, schema=TABLES[name])
            n = t.num_rows
            for i, start in enumerate(range(0, max(n, 1), self.shard_rows)):
                write(name, i, t.slice(start, self.shard_rows))


# ----------------------------------------------------------------------------------------------------------------


def detect_format(path: Path, split: str = "train") -> str:
    if path.is_dir():
        if any(path.glob("corpus.jsonl*")) or (path / "qrels").is_dir() or any(path.glob("queries.jsonl*")):
            return "beir"
        from negmine.io.readers.hf import data_files

        files = data_files(path, split)
        if files is not None:  # a Hugging Face dataset folder: pairs (or Tevatron) in Parquet / Arrow / JSONL
            from negmine.io.readers import sniff_file_format

            return "tevatron" if sniff_file_format(files[0]) == "tevatron" else "pairs"
        raise InputError("directory is neither in BEIR layout (missing corpus.jsonl) nor a Hugging Face dataset "
                         "folder (no .parquet, .arrow or .jsonl files)", path / "corpus.jsonl")
    from negmine.io.readers import sniff_file_format

    return sniff_file_format(path)


def _check_out_dir(run_dir: Path) -> None:
    for p in (run_dir, run_dir / "ingest"):
        if p.exists() and not p.is_dir():
            raise InputError("output path exists and is not a directory", p)


class _ShardSink:
    """Writes shards through the stage writer; corpus shards are written by a background thread (Parquet
    encoding and zstd release the GIL), so encoding overlaps with parsing. At most one shard is in flight."""

    def __init__(self, writer: StageWriter):
        from concurrent.futures import ThreadPoolExecutor

        self.writer = writer
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="negmine-shard")
        self.pending: Future[None] | None = None

    def _wait(self) -> None:
        if self.pending is not None:
            fut, self.pending = self.pending, None
            fut.result()

    def __call__(self, table: str, index: int, data: pa.Table) -> None:
        if table == "corpus" and self.writer.has_shard(table, index):
            return  # resumed: this corpus shard was finished before the interruption
        self._wait()
        if table == "corpus":
            self.pending = self.pool.submit(self.writer.write_shard, table, index, data)
        else:
            self.writer.write_shard(table, index, data)

    def close(self, wait: bool = True) -> None:
        try:
            if wait:
                self._wait()
        finally:
            self.pool.shutdown(wait=True)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while reading: millions of short-lived, acyclic record dicts would
    otherwise trigger thousands of collections (about 10% of ingest CPU). Reference counting still frees them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run_ingest(run_dir: str | Path, params: IngestParams) -> StageResult:
    """Read ``params.path`` in its format and write ``RUN/ingest``; skipped when inputs and params are unchanged."""
    from negmine.io.readers import get_reader
    from negmine.io.store import input_fingerprint

    if not params.path:
        raise InputError("no input given (INPUT argument or input.path in the config)", "input")
    src = Path(params.path)
    if not src.exists():
        from negmine.io.readers.hf import hub_snapshot

        hub = hub_snapshot(params.path)  # a Hugging Face dataset name (when online)
        if hub is None:
            raise InputError("input not found", src)
        src = hub
    run_dir = Path(run_dir)
    _check_out_dir(run_dir)
    fmt = params.format if params.format != "auto" else detect_format(src, params.split)
    reader = get_reader(fmt)
    files = reader.input_files(src, params)

    t0 = time.time()
    inputs = {"files": input_fingerprint(files)}
    t_fp = time.time() - t0
    # paths do not change the output (the files' content is fingerprinted), shard_rows does not change content
    fp_params = params.fingerprint_dict() | {"format": fmt, "path": None, "corpus": None}
    writer = StageWriter(run_dir / "ingest", STAGE, params.model_dump(mode="json") | {"format": fmt},
                         inputs, TABLES, fingerprint_params=fp_params,
                         resume_params={"shard_rows": params.shard_rows})
    done = writer.up_to_date()
    if done is not None:
        log.info("ingest: up to date (fingerprint %s), skipped", done.fingerprint[:12])
        return StageResult(done, True, time.time() - t0)
    try:
        writer.begin()
    except OSError as e:
        raise RuntimeFailure(f"cannot create the output directory: {e}") from None
    sink = _ShardSink(writer)
    canon = Canon(lambda i, t: sink("corpus", i, t), shard_rows=params.shard_rows, strict=params.strict,
                  skip_unknown=params.skip_unknown, source=str(src))
    t1 = time.time()
    try:
        with _gc_paused():
            reader.read(src, params, canon)
            canon.finish(sink, keep_all_queries=False)
        sink.close()
    except InputError:
        sink.close(wait=False)
        writer.discard()  # bad input: nothing worth resuming
        raise
    except OSError as e:
        sink.close(wait=False)
        raise RuntimeFailure(f"I/O error during ingest: {e} (finished shards are kept: re-run to resume)") from None
    except BaseException:
        sink.close(wait=False)
        raise
    stats = dict(canon.counts) | canon.info | {"format": fmt}
    timings = {"fingerprint_inputs": round(t_fp, 3), "read_and_write": round(time.time() - t1, 3)}
    try:
        art = writer.finish(stats=stats, timings=timings)
    except OSError as e:
        raise RuntimeFailure(f"cannot publish {writer.out_dir}: {e}") from None
    log.info("ingest: %s → %d docs, %d queries, %d positives%s", fmt, stats["docs"], stats["queries"],
             stats["positives"], _extra_counts(stats))
    return StageResult(art, False, time.time() - t0)


def _extra_counts(stats: dict[str, Any]) -> str:
    notes = [f"{k.replace('_', ' ')}: {v}" for k, v in stats.items()
             if isinstance(v, int) and v and k not in ("docs", "queries", "positives")]
    return f" ({'; '.join(notes)})" if notes else ""
