"""`negmine score`: teacher scores for every candidate and every positive, bi-encoder and cross-encoder teachers,
skip / resume, and reuse of the retriever's embeddings. Candidates are hand-made (real SciFact text, real models)
so each rule is checked on rows whose expected shape is known."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from negmine.io.ingest import run_ingest
from negmine.io.params import IngestParams
from negmine.io.schemas import CANDIDATES
from negmine.io.store import Artifact, StageWriter
from negmine.score.params import ScoreParams

pytestmark = pytest.mark.slow

N_QUERIES = 12


def write_candidates(run: Path, cands: dict[str, list[str]], params: dict | None = None) -> Artifact:
    """A hand-made retrieve artifact: ``cands`` maps query id → doc ids in rank order."""
    ingest = Artifact.open(run / "ingest")
    rows = [(q, d, r + 1) for q, ds in cands.items() for r, d in enumerate(ds)]
    t = pa.table({"query_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
                  "rank": pa.array([r[2] for r in rows], pa.int32()), "retriever": ["dense"] * len(rows),
                  "retriever_score": pa.array([1.0 / r[2] for r in rows], pa.float32()),
                  "retrievers": [["dense"]] * len(rows)}, schema=CANDIDATES)
    w = StageWriter(run / "candidates", "retrieve", params or {"method": "hand-made"},
                    {"ingest": ingest.fingerprint}, {"candidates": CANDIDATES}, main_table="candidates")
    w.begin()
    w.write_shard("candidates", 0, t)
    return w.finish()


@pytest.fixture(scope="module")
def handmade(scifact_small, tmp_path_factory):
    """A run with ingest (SciFact subset) and hand-made candidates for the first 12 queries:
    even queries have their first positive at rank 1, odd ones no positive among the candidates, the last query
    no candidates at all (its positives must still be scored)."""
    run = tmp_path_factory.mktemp("score_run")
    run_ingest(run, IngestParams(path=str(scifact_small), split="train"))
    ing = Artifact.open(run / "ingest")
    qids = ing.read("queries")["query_id"].to_pylist()[:N_QUERIES]
    pos: dict[str, list[str]] = {}
    p = ing.read("positives")
    for q, d in zip(p["query_id"].to_pylist(), p["doc_id"].to_pylist(), strict=False):
        pos.setdefault(q, []).append(d)
    docs = ing.read("corpus")["doc_id"].to_pylist()
    all_pos = {d for ds in pos.values() for d in ds}
    pool = [d for d in docs if d not in all_pos][:30]
    cands = {}
    for i, q in enumerate(qids[:-1]):
        others = [pool[(i * 7 + j * 3) % len(pool)] for j in range(4)]
        cands[q] = ([pos[q][0]] if i % 2 == 0 else []) + others
    # the ingest keeps every query with a positive; restrict the run to the 12 queries by giving the rest none
    write_candidates(run, cands)
    return run, qids, pos, cands


def _copy_run(src: Path, dst: Path) -> Path:
    """A new run directory holding copies of the ingest and candidates artifacts of ``src``."""
    import shutil

    for d in ("ingest", "candidates"):
        shutil.copytree(src / d, dst / d)
    return dst


def _direct_cosines(model_path: str, qtexts: list[str], dtexts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(model_path, device="cpu")
    qv = m.encode(qtexts, normalize_embeddings=True, convert_to_numpy=True)
    dv = m.encode(dtexts, normalize_embeddings=True, convert_to_numpy=True)
    return (qv * dv).sum(1)


def test_bi_encoder_scores_every_candidate_and_positive(handmade, minilm, tmp_path):
    from negmine.models import doc_text
    from negmine.score.stage import run_score

    run, qids, pos, cands = handmade
    res = run_score(run, ScoreParams(shard_queries=5))
    assert not res.skipped
    art = Artifact.open(run / "scores", stage="score")
    assert len(art.shard_paths()) >= 3  # sharded by query
    t = art.read().to_pylist()
    ing = Artifact.open(run / "ingest")
    all_q = ing.read("queries")["query_id"].to_pylist()
    # every query of the ingest appears (those without candidates with their positives only), grouped by query
    seen = list(dict.fromkeys(r["query_id"] for r in t))
    assert set(seen) == set(all_q)
    assert seen[:N_QUERIES - 1] == qids[:-1]
    for q in all_q:
        rows = [r for r in t if r["query_id"] == q]
        c = cands.get(q, [])
        got_c = [r["doc_id"] for r in rows if r["rank"] is not None]
        assert got_c == c and [r["rank"] for r in rows if r["rank"] is not None] == list(range(1, len(c) + 1))
        # each positive exactly once; at its rank when retrieved, with a null rank otherwise
        pos_rows = [r for r in rows if r["is_positive"]]
        assert sorted(r["doc_id"] for r in pos_rows) == sorted(pos[q])
        for r in pos_rows:
            assert (r["rank"] is not None) == (r["doc_id"] in c)
            assert (r["retriever_score"] is None) == (r["rank"] is None)
        assert not any(r["is_positive"] for r in rows if r["doc_id"] not in pos[q])
    assert art.stats["positives"] == sum(len(v) for v in pos.values() if v) == ing.num_rows("positives")
    assert art.stats["positives_retrieved"] == sum(1 for i in range(N_QUERIES - 1) if i % 2 == 0)
    # teacher scores are the model's cosine similarities (fp16 cache round trip: within 5e-3)
    sub = [r for r in t if r["query_id"] in qids]
    qtext = dict(zip(all_q, ing.read("queries")["text"].to_pylist(), strict=False))
    corpus = ing.read("corpus").to_pylist()
    dtext = {d["doc_id"]: doc_text(d["title"], d["text"]) for d in corpus}
    want = _direct_cosines(minilm, [qtext[r["query_id"]] for r in sub], [dtext[r["doc_id"]] for r in sub])
    got = np.array([r["teacher_score"] for r in sub])
    assert np.abs(got - want).max() < 5e-3
    # each row carries its document's corpus row (select joins by it)
    ids = ing.read("corpus", columns=["doc_id"])["doc_id"].to_pylist()
    assert all(ids[r["corpus_row"]] == r["doc_id"] for r in t)
    # unchanged inputs and params: skipped; a batch-size change does not change output, so still skipped
    assert run_score(run, ScoreParams(shard_queries=5)).skipped
    assert run_score(run, ScoreParams(shard_queries=5, batch_size=7)).skipped


def test_score_resumes_from_finished_shards(handmade, monkeypatch, tmp_path):
    import negmine.score.stage as stage

    run = _copy_run(handmade[0], tmp_path / "run")
    params = ScoreParams(shard_queries=4)
    real = stage._score_shard
    calls = {"n": 0}

    def crash_on_third(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real(*a, **kw)

    monkeypatch.setattr(stage, "_score_shard", crash_on_third)
    with pytest.raises(RuntimeError):
        stage.run_score(run, params)
    assert not (run / "scores").exists()  # nothing published
    monkeypatch.setattr(stage, "_score_shard", real)
    res = stage.run_score(run, params)
    assert res.artifact.manifest["resumed_shards"] == 2
    ref = stage.run_score(_copy_run(handmade[0], tmp_path / "fresh"), params)
    assert res.artifact.read().equals(ref.artifact.read())
    assert [s["sha256"] for s in res.artifact.manifest["tables"]["scores"]["shards"]] == \
        [s["sha256"] for s in ref.artifact.manifest["tables"]["scores"]["shards"]]


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory, minilm) -> str:
    """A 2-layer BERT sequence classifier (hidden 32, 1 label) built from a config, with the packaged MiniLM
    tokenizer: a real CrossEncoder with random weights, no hub."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny_ce")
    tok = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=1, initializer_range=0.5)
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_cross_encoder_teacher_is_used_with_its_activation(handmade, tiny_cross_encoder, tmp_path, cli):
    import torch
    from sentence_transformers import CrossEncoder

    from negmine.models import doc_text

    run = _copy_run(handmade[0], tmp_path / "run")
    code, out, err = cli("score", run, "--teacher", "cross-encoder", "--model", tiny_cross_encoder,
                         "--activation", "none", "--max-length", "64", "--batch-size", "16",
                         "--encoder-backend", "torch")  # compared with CrossEncoder's torch scores to 1e-5
    assert code == 0, err
    art = Artifact.open(run / "scores", stage="score")
    assert art.params["teacher"] == "cross-encoder" and art.params["max_length"] == 64
    assert art.stats["teacher"] == "cross-encoder"
    t = art.read().to_pylist()
    ing = Artifact.open(run / "ingest")
    qtext = dict(zip(ing.read("queries")["query_id"].to_pylist(), ing.read("queries")["text"].to_pylist(), strict=False))
    dtext = {d["doc_id"]: doc_text(d["title"], d["text"]) for d in ing.read("corpus").to_pylist()}
    pairs = [(qtext[r["query_id"]], dtext[r["doc_id"]]) for r in t]
    ce = CrossEncoder(tiny_cross_encoder, device="cpu", max_length=64)
    want = ce.predict(pairs, activation_fn=torch.nn.Identity(), batch_size=32, show_progress_bar=False)
    got = np.array([r["teacher_score"] for r in t])
    assert np.allclose(got, want, atol=1e-5)
    assert np.ptp(got) > 0.05  # the random head separates texts: the scores are not a constant
    # logits, not probabilities: some are outside [0, 1]; with sigmoid they are the logistic of the same logits
    code, _, err = cli("score", run, "--teacher", "cross-encoder", "--model", tiny_cross_encoder,
                       "--activation", "sigmoid", "--max-length", "64", "--encoder-backend", "torch")
    assert code == 0 and "up to date" not in err  # the activation is part of the fingerprint
    sig = np.array(Artifact.open(run / "scores").read()["teacher_score"].to_pylist())
    assert np.allclose(sig, 1 / (1 + np.exp(-want)), atol=1e-5)


def test_cross_encoder_rejects_a_bi_encoder_model(handmade, minilm, tmp_path, cli):
    run = _copy_run(handmade[0], tmp_path / "run")
    code, out, err = cli("score", run, "--teacher", "cross-encoder", "--model", "all-MiniLM-L6-v2")
    assert code == 2
    assert "is not a cross-encoder" in err and "--model" in err
    assert not (run / "scores").exists()


def test_score_without_candidates_is_an_input_error(scifact_small, tmp_path, cli):
    run_ingest(tmp_path, IngestParams(path=str(scifact_small), split="train"))
    code, out, err = cli("score", tmp_path)
    assert code == 2 and "negmine retrieve" in err


def test_bi_encoder_teacher_reuses_the_retrievers_embeddings(tmp_path, shared_data, monkeypatch, caplog,
                                                             make_beir_subset):
    """With the retriever's model, the teacher reads every vector from the embedding cache: 0 texts encoded."""
    from negmine.encode.embed import encode_texts
    from negmine.score.stage import run_score

    monkeypatch.setenv("NEGMINE_CACHE_DIR", str(tmp_path / "cache"))  # cold: only what this test embeds
    data = make_beir_subset(shared_data / "scifact", tmp_path / "data", "train", 6, 40)
    run = tmp_path / "run"
    run_ingest(run, IngestParams(path=str(data), split="train"))
    ing = Artifact.open(run / "ingest")
    from negmine.models import doc_text

    corpus = ing.read("corpus").to_pylist()
    queries = ing.read("queries").to_pylist()
    # what a dense retriever does: embed the corpus and the queries (through the shared cache), rank by cosine
    dv = encode_texts([doc_text(d["title"], d["text"]) for d in corpus], model="all-MiniLM-L6-v2", kind="doc")
    qv = encode_texts([q["text"] for q in queries], model="all-MiniLM-L6-v2", kind="query")
    top = np.argsort(-(qv @ dv.T), axis=1)[:, :10]
    write_candidates(run, {q["query_id"]: [corpus[j]["doc_id"] for j in row] for q, row in zip(queries, top, strict=False)},
                     params={"method": "dense", "model": "all-MiniLM-L6-v2"})
    caplog.set_level(logging.INFO, logger="negmine")
    logger = logging.getLogger("negmine")
    logger.addHandler(caplog.handler)
    try:
        res = run_score(run, ScoreParams())
    finally:
        logger.removeHandler(caplog.handler)
    assert not res.skipped
    embeds = [r.getMessage() for r in caplog.records if r.getMessage().startswith("embed teacher")]
    assert len(embeds) == 2 and all(m.endswith("0 to encode (all-MiniLM-L6-v2)") for m in embeds), embeds


def test_teacher_inherits_the_dense_retrievers_prompts_only_for_the_same_model():
    from negmine.config import load_config
    from negmine.score.stage import effective_params

    dense = {"method": "dense", "model": "all-MiniLM-L6-v2", "query_prompt": "query: ", "doc_prompt": "passage: ",
             "max_seq_length": 128, "normalize": True}
    p = effective_params(ScoreParams(), dense)
    assert (p.query_prompt, p.doc_prompt, p.max_seq_length) == ("query: ", "passage: ", 128)
    # the packaged model named by its path is the same model
    from negmine.models import resolve_model

    assert effective_params(ScoreParams(model=resolve_model("all-MiniLM-L6-v2")), dense).doc_prompt == "passage: "
    # a value set in the config wins, even null; another model or a BM25 retriever inherits nothing
    cfg = load_config(None, ["score.query_prompt=null", "score.max_seq_length=64"])
    p = effective_params(cfg.score, dense)
    assert (p.query_prompt, p.doc_prompt, p.max_seq_length) == (None, "passage: ", 64)
    assert effective_params(ScoreParams(model="/elsewhere/other-model"), dense).query_prompt is None
    assert effective_params(ScoreParams(), dense | {"method": "bm25"}).query_prompt is None
    assert effective_params(ScoreParams(teacher="cross-encoder"), dense).query_prompt is None
    # a list of retrievers: the dense entry (which inherits the top-level keys) is the one that counts
    listed = {"method": "dense", "model": "all-MiniLM-L6-v2", "max_seq_length": 256,
              "retrievers": [{"method": "bm25"}, {"method": "dense", "query_prompt": "q: "}]}
    p = effective_params(ScoreParams(), listed)
    assert (p.query_prompt, p.max_seq_length) == ("q: ", 256)


def test_an_encoder_teacher_gets_a_large_shards_documents_a_chunk_at_a_time(handmade, minilm, tmp_path, monkeypatch):
    """Peak memory of a shard with many distinct documents: the teacher never holds more than DOC_CHUNK of its
    texts and vectors at once, and the scores are the one-call scores (cache off between the two runs: encoded
    anew, in other batches)."""
    import negmine.score.stage as stage
    from negmine.score.bi_encoder import BiEncoderTeacher

    ref = stage.run_score(_copy_run(handmade[0], tmp_path / "whole"), ScoreParams()).artifact.read()
    monkeypatch.setenv("NEGMINE_CACHE_DIR", str(tmp_path / "cache2"))
    seen = []
    real = BiEncoderTeacher.score

    def spy(self, queries, docs, qi, di):
        seen.append(len(docs))
        return real(self, queries, docs, qi, di)

    monkeypatch.setattr(BiEncoderTeacher, "score", spy)
    monkeypatch.setattr(stage, "DOC_CHUNK", 7)
    got = stage.run_score(_copy_run(handmade[0], tmp_path / "chunked"), ScoreParams()).artifact.read()
    assert len(seen) > 3 and max(seen) <= 7
    for c in ("query_id", "doc_id", "rank", "is_positive"):
        assert got[c].equals(ref[c]), c
    assert np.abs(got["teacher_score"].to_numpy() - ref["teacher_score"].to_numpy()).max() < 1e-3
