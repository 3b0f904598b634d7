"""Hand-made run directories for the select and export tests: a tiny BEIR input ingested for real, and a
``scores`` artifact written by hand with StageWriter (no model needed)."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from negmine.io.ingest import run_ingest
from negmine.io.params import IngestParams
from negmine.io.schemas import SCORES
from negmine.io.store import Artifact, StageWriter, hash_json
from negmine.select.params import SelectParams

LONG = ("Hard negative mining selects documents that look relevant to a query but are not, so that a retrieval "
        "model learns fine distinctions between passages. ")

# doc id -> (title, text). d_dup is a near-duplicate of q1's positive p1 (one word changed), d_same equals p2
# up to case and punctuation.
DOCS = {
    "p1": ("Mining", LONG * 3),
    "p1b": ("Mining two", "A second relevant passage for the first query about negatives."),
    "p2": ("Cats", "Cats sleep most of the day, and they purr when happy."),
    "p3": ("Rivers", "The Nile is one of the longest rivers of the world."),
    "d_dup": ("Mining", (LONG * 3).replace("distinctions", "differences", 1)),
    "d_same": ("cats", "CATS sleep most of the day and they purr when happy!!"),
    **{f"n{i}": (f"Doc {i}", f"Unrelated passage number {i} about topic {i * 7 % 11}.") for i in range(1, 13)},
}
QUERIES = {"q1": "what is hard negative mining", "q2": "do cats sleep a lot", "q3": "longest river",
           "q4": "a query that the retriever found nothing for"}
QRELS = [("q1", "p1"), ("q1", "p1b"), ("q2", "p2"), ("q3", "p3"), ("q4", "p3")]


def write_beir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    with open(root / "corpus.jsonl", "w") as f:
        for d, (title, text) in DOCS.items():
            f.write(json.dumps({"_id": d, "title": title, "text": text}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for q, text in QUERIES.items():
            f.write(json.dumps({"_id": q, "text": text}) + "\n")
    with open(root / "qrels" / "train.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d in QRELS:
            f.write(f"{q}\t{d}\t1\n")
    return root


# (query, doc, rank or None, teacher score, is_positive)
SCORE_ROWS = [
    # q1: positives 0.80 (retrieved at rank 2) and 0.70 (not retrieved) -> s+ = min = 0.70
    ("q1", "d_dup", 1, 0.82, False),
    ("q1", "p1", 2, 0.80, True),
    ("q1", "n1", 3, 0.69, False),     # above_perc: threshold 0.70 * 0.95 = 0.665
    ("q1", "n2", 4, 0.66, False),
    ("q1", "n3", 5, 0.60, False),
    ("q1", "n4", 6, 0.60, False),     # tie with n3: rank decides
    ("q1", "n5", 7, 0.30, False),
    ("q1", "n6", 8, 0.20, False),
    ("q1", "p1b", None, 0.70, True),
    # q2: negative scores (logits): s+ = -1.0; perc 0.95 threshold = -1.05
    ("q2", "d_same", 1, -0.50, False),
    ("q2", "n7", 2, -0.90, False),    # above the positive itself: above_perc
    ("q2", "n8", 3, -1.02, False),    # -1.02 >= -1.05: above_perc (naive s+ * 0.95 = -0.95 would keep it)
    ("q2", "p2", 4, -1.00, True),
    ("q2", "n9", 5, -1.20, False),
    ("q2", "n10", 6, -3.00, False),
    # q3: few candidates
    ("q3", "n11", 1, 0.10, False),
    ("q3", "n12", 2, 0.05, False),
    ("q3", "p3", None, 0.90, True),
]


def scores_table(rows=SCORE_ROWS) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(5)]
    return pa.table({"query_id": list(cols[0]), "doc_id": list(cols[1]), "rank": list(cols[2]),
                     "retriever_score": [None if r is None else 1.0 / r for r in cols[2]],
                     "teacher_score": list(cols[3]), "is_positive": list(cols[4]),
                     "corpus_row": [None] * len(cols[0])}, schema=SCORES)  # unknown: select looks the ids up


def write_scores(run: Path, table: pa.Table, shards: int = 1) -> Artifact:
    """A finished ``scores`` artifact with the queries split over ``shards`` shards (queries never span)."""
    ingest = Artifact.open(run / "ingest", stage="ingest")
    content = hash_json(table.to_pylist())  # the fingerprint of a real score stage changes with its output
    w = StageWriter(run / "scores", "score", {"hand_made": content, "shards": shards},
                    {"ingest": ingest.fingerprint}, {"scores": SCORES}, main_table="scores")
    w.begin()
    qids = list(dict.fromkeys(table["query_id"].to_pylist()))
    per = max(1, -(-len(qids) // shards))
    import pyarrow.compute as pc

    for i in range(0, len(qids), per):
        part = table.filter(pc.is_in(table["query_id"], value_set=pa.array(qids[i:i + per])))
        w.write_shard("scores", i // per, part)
    return w.finish()


def rule_params(**kw) -> SelectParams:
    """SelectParams for tests of the score rules on hand-made runs: TopK-PercPos (0.95) as the main rule and the
    document-similarity signal off (the product default, ``max_pos_sim``, needs real embeddings; it is tested on
    real data in test_eval_signals.py)."""
    return SelectParams(**{"filter": "perc-pos", "max_pos_sim": None, **kw})


def build_run(tmp: Path, rows=SCORE_ROWS, shards: int = 1) -> Path:
    run = tmp / "run"
    run_ingest(run, IngestParams(path=str(write_beir(tmp / "beir")), split="train"))
    write_scores(run, scores_table(rows), shards)
    return run


@contextmanager
def negmine_log(caplog, level=logging.INFO):
    """Capture the "negmine" logger even after the CLI set it not to propagate (cli fixture)."""
    logger = logging.getLogger("negmine")
    old = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(level)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(old)


def test_helpers_build_a_readable_run(tmp_path):
    run = build_run(tmp_path)
    assert Artifact.open(run / "scores", stage="score").num_rows() == len(SCORE_ROWS)
    assert Artifact.open(run / "ingest", stage="ingest").num_rows("queries") == 4
