"""Cross-check with the anchor: sentence-transformers' ``mine_hard_negatives``.

Configured alike — the same packaged all-MiniLM-L6-v2, the same strings (queries; documents as ``doc_text``),
``relative_margin=0.05`` ≙ ``perc_pos=0.95`` (both: s < s⁺ − 0.05·|s⁺|, s⁺ = the query's smallest positive score),
``sampling_strategy="top"``, ``num_negatives`` — negmine must mine the same (query, negative) pairs.

Matching the semantics of ST 6.x (sentence_transformers/util/hard_negatives.py):
* ST scores the whole corpus (exact cosine) and keeps the top ``range_max + max_positives`` documents of each query,
  with ``max_positives`` the largest positive count of any query; negmine retrieves exactly that ``depth``
  (exact faiss inner product over the same normalised embeddings).
* ST masks the positives by corpus index (text), negmine by doc id (no two SciFact abstracts share a text).
* ST has no near-duplicate filter: ``select.dedup`` is off here.
* ST embeds in float32; negmine's embedding cache stores float16. The resulting ~1e-3 score differences can move a
  candidate across the margin or swap two near-tied candidates, which is why the agreement is not exactly 1.

Measured on this subset (60 SciFact train queries, 300 docs, k = 4, range_max = 30), 2026-11-23:
agreement = |negmine ∩ ST| / |negmine ∪ ST| = 1.000 — 228 of 228 (query, negative) pairs identical; the other
12 of the 240 slots stay empty in both (queries with fewer than 4 candidates below the margin).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

NUM_NEGATIVES = 4
RANGE_MAX = 30
MIN_AGREEMENT = 0.95


def test_negmine_mines_what_mine_hard_negatives_mines(scifact_small, tmp_path):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from negmine.cache import cache_dir
    from negmine.config import load_config
    from negmine.io.store import Artifact
    from negmine.models import doc_text, resolve_model
    from negmine.pipeline import run_stage

    run = tmp_path / "run"
    # negmine: ingest → retrieve (depth = range_max + max_positives, as ST searches) → score → select
    cfg0 = load_config(None, [f"input.path={scifact_small}", "input.split=train"])
    run_stage(cfg0, "ingest", run)
    ing = Artifact.open(run / "ingest")
    pos = ing.read("positives").to_pylist()
    counts: dict[str, int] = {}
    for p in pos:
        counts[p["query_id"]] = counts.get(p["query_id"], 0) + 1
    depth = RANGE_MAX + max(counts.values())
    cfg = load_config(None, [f"input.path={scifact_small}", "input.split=train", "retrieve.method=dense",
                             f"retrieve.depth={depth}", "score.teacher=bi-encoder", "select.filter=perc-pos",
                             "select.perc_pos=0.95", "select.max_pos_sim=null", "select.pos_ref=min",
                             "select.sampling=top",
                             f"select.num_negatives={NUM_NEGATIVES}", "select.dedup=false"])
    for stage in ("retrieve", "score", "select"):
        run_stage(cfg, stage, run)
    negs = Artifact.open(run / "negatives", stage="select").read(columns=["query_id", "doc_id"]).to_pylist()

    queries = {q["query_id"]: q["text"] for q in ing.read("queries").to_pylist()}
    docs = {d["doc_id"]: doc_text(d["title"], d["text"]) for d in ing.read("corpus").to_pylist()}
    ours = {(queries[r["query_id"]], docs[r["doc_id"]]) for r in negs}

    # sentence-transformers on the same strings
    ds = Dataset.from_dict({"query": [queries[p["query_id"]] for p in pos],
                            "positive": [docs[p["doc_id"]] for p in pos]})
    model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    st = mine_hard_negatives(ds, model, corpus=list(docs.values()), range_max=RANGE_MAX, relative_margin=0.05,
                             num_negatives=NUM_NEGATIVES, sampling_strategy="top", output_format="triplet",
                             batch_size=64, verbose=False, cache_folder=str(cache_dir("st-anchor")))
    theirs = set(zip(st["query"], st["negative"], strict=True))

    assert theirs and ours
    agreement = len(ours & theirs) / len(ours | theirs)
    print(f"anchor agreement: {agreement:.3f} ({len(ours & theirs)} shared, {len(ours - theirs)} only negmine, "
          f"{len(theirs - ours)} only ST)")
    assert agreement >= MIN_AGREEMENT
