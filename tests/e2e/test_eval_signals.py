"""The similar_to_positive signal (negmine.select.signals): the pure similarity, the registered rule inside
select_batch, and `negmine eval --protocol hidden-positives` end to end with it on a real Cranfield subset."""

import json

import numpy as np
import pytest

from negmine.select.signals import embedding_spec, max_sim_to_positives, similar_to_positive


def unit(*v):
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def test_max_sim_to_positives_hand_made():
    vecs = np.stack([unit(1, 0), unit(1, 1), unit(0, 1), unit(1, 0.2),      # group 0: rows 0 (pos), 2 (pos)
                     unit(1, 0), unit(0, 1)])                                # group 1: no positive
    group = np.array([0, 0, 0, 0, 1, 1])
    is_pos = np.array([True, False, True, False, False, False])
    out = max_sim_to_positives(vecs, group, is_pos)
    c = np.sqrt(0.5)
    assert out[1] == pytest.approx(c)                  # max(cos 45°, cos 45°)
    assert out[3] == pytest.approx(1 / np.sqrt(1.04))  # nearest positive: (1, 0)
    assert out[0] == pytest.approx(0.0) and out[2] == pytest.approx(0.0)  # positives vs the *other* positive
    assert np.isnan(out[4]) and np.isnan(out[5])
    assert similar_to_positive(np.array([0.5, 0.6, 0.7, np.nan]), 0.6).tolist() == [True, False, False, True]


def test_rule_inside_select_batch():
    from negmine.select.core import select_batch
    from negmine.select.rules import reasons

    # one query: positive + 4 candidates; candidate 1 is the hardest but a near-copy of the positive's topic
    scores = np.array([0.9, 0.85, 0.8, 0.7, 0.6])
    pos_sim = np.array([np.nan, 0.95, 0.3, 0.62, 0.1])
    args = (np.zeros(5, int), 1, np.array([1], dtype=np.uint64), scores, np.array([0, 1, 2, 3, 4]),
            np.arange(5), np.array([True, False, False, False, False]), np.zeros(5, bool))
    sel = select_batch(*args, rules={"max_pos_sim": 0.6}, k=2, pos_sim=pos_sim)
    assert np.flatnonzero(sel.kept).tolist() == [2, 4]
    names = [reasons()[i] if i >= 0 else "kept" for i in sel.reason]
    assert names == ["positive", "similar_to_positive", "kept", "similar_to_positive", "kept"]
    # rule off: plain top-2
    sel = select_batch(*args, rules={"max_pos_sim": None}, k=2, pos_sim=pos_sim)
    assert np.flatnonzero(sel.kept).tolist() == [1, 2]
    with pytest.raises(ValueError, match="pos_sim"):
        select_batch(*args, rules={"max_pos_sim": 0.6}, k=2)


def test_embedding_spec_default_is_the_calibrated_model():
    mini = {"teacher": "bi-encoder", "model": "all-MiniLM-L6-v2", "doc_prompt": None, "max_seq_length": 128}
    # teacher = the calibration model: its own settings, so the vectors come from the embedding cache
    assert embedding_spec(mini) == {"model": "all-MiniLM-L6-v2", "prompt": None, "prompt_name": None,
                                    "max_seq_length": 128, "backend": "auto"}
    # another bi-encoder teacher: the default threshold is on MiniLM's scale, so MiniLM is used unless asked
    other = {"teacher": "bi-encoder", "model": "m", "doc_prompt": "passage: ", "max_seq_length": 256}
    assert embedding_spec(other) == {"model": "all-MiniLM-L6-v2", "prompt": None, "prompt_name": None,
                                     "max_seq_length": None, "backend": "auto"}
    assert embedding_spec(other, "teacher") == {"model": "m", "prompt": "passage: ", "prompt_name": None,
                                                "max_seq_length": 256, "backend": "auto"}
    assert embedding_spec({"teacher": "cross-encoder", "model": "ce"})["model"] == "all-MiniLM-L6-v2"
    assert embedding_spec({"teacher": "cross-encoder", "model": "ce"}, "teacher")["model"] == "all-MiniLM-L6-v2"
    assert embedding_spec(other, "e5")["model"] == "e5"


def test_auto_threshold_is_the_quantile_of_the_candidates_similarities():
    from negmine.select.signals import quantile_threshold

    ps = np.array([0.9, 0.1, 0.2, 0.3, 0.4, np.nan, 0.5])
    cand = np.array([False, True, True, True, True, True, True])  # row 0 is a positive: never counted
    assert quantile_threshold(ps, cand, 0.5) == pytest.approx(0.3)
    assert quantile_threshold(ps, cand, 0.75) == pytest.approx(0.4)
    assert quantile_threshold(ps, np.zeros(7, bool), 0.5) is None


def test_select_defaults_are_the_measured_configuration():
    """docs/BENCHMARKS.md "Mining quality": filter none + max_pos_sim auto (the 0.65 quantile of the run's
    candidate-positive cosines), chosen on Cranfield and CISI together."""
    from negmine.select.params import SelectParams

    p = SelectParams()
    assert (p.filter, p.max_pos_sim, p.pos_sim_quantile, p.pos_sim_model, p.sampling, p.num_negatives, p.dedup) == \
        ("none", "auto", 0.65, None, "top", 8, True)
    with pytest.raises(ValueError, match="resolved per run"):
        p.rules()
    # YAML 1.1 reads `calibration: off` as a boolean: it still means off
    from negmine.config import load_config

    assert load_config(None, ["select.calibration=off"]).select.calibration == "off"
    assert load_config(None, ["select.calibration=on"]).select.calibration == "auto"
    r = p.model_copy(update={"max_pos_sim": 0.5}).rules()
    assert r["max_pos_sim"] == 0.5 and r["perc_pos"] is None and p.problems() == []
    # perc_pos without its filter would be silently ignored: it is an input problem instead
    msg = SelectParams(perc_pos=0.9).problems()
    assert len(msg) == 1 and "select.filter=perc-pos" in msg[0]
    assert SelectParams(filter="perc-pos", perc_pos=0.9).problems() == []


@pytest.mark.slow
def test_eval_hidden_positives_end_to_end(shared_data, tmp_path, cli, make_beir_subset):
    """An 8-query Cranfield subset: BM25 candidates, MiniLM teacher, similar_to_positive on. The protocol builds
    the input, mines, and scores against the full qrels; the FN count is re-derived here from the artifacts."""
    import pyarrow.compute as pc

    from negmine.io.store import Artifact
    from negmine.report.protocol import read_qrels

    data = make_beir_subset(shared_data / "cranfield", tmp_path / "cran", "test", 8, 60)
    run = tmp_path / "run"
    code, out, err = cli("eval", run, "--qrels", data / "qrels" / "test.tsv", "--protocol", "hidden-positives",
                         "--set", "retrieve.method=bm25", "--set", "retrieve.depth=20", "--set",
                         "select.filter=none", "--set", "select.max_pos_sim=0.6", "--json")
    assert code == 0, err
    m = json.loads(out)
    full = read_qrels(data / "qrels" / "test.tsv")
    rel = set(zip(full["query_id"].to_pylist(), full["doc_id"].to_pylist(), strict=True))
    neg = Artifact.open(run / "negatives", stage="select").read("negatives")
    pairs = list(zip(neg["query_id"].to_pylist(), neg["doc_id"].to_pylist(), strict=True))
    assert m["negatives"] == len(pairs) and m["queries"] == 8
    assert m["false_negatives"] == sum(p in rel for p in pairs)
    given = read_qrels(run / "protocol" / "qrels" / "test.tsv")
    assert len(given) == 8 and not set(zip(given["query_id"].to_pylist(), given["doc_id"].to_pylist(),
                                            strict=True)) & set(pairs)
    dropped = Artifact.open(run / "negatives", stage="select").read("dropped")
    n_sim = int(pc.sum(pc.equal(dropped["reason_dropped"], "similar_to_positive")).as_py() or 0)
    assert n_sim > 0 and m["dropped"]["similar_to_positive"] == n_sim
    saved = json.loads((run / "report" / "metrics.json").read_text())
    assert saved["protocol"]["hidden_positives"] == len(full) - 8 and saved["metrics"] == m
    # the report re-selects from the cached scores, including the signal: at the run's own max_pos_sim the
    # curve reproduces the mined negatives' metrics exactly
    code, out, err = cli("report", run, "--qrels", data / "qrels" / "test.tsv")
    assert code == 0, err
    curve = json.loads((run / "report" / "sensitivity.json").read_text())["max_pos_sim"]
    at_run = next(r for r in curve if r["value"] == pytest.approx(0.6))
    assert at_run["fn_rate"] == pytest.approx(m["fn_rate"]) and at_run["coverage"] == pytest.approx(m["coverage"])
    assert (run / "report" / "sensitivity_pos_sim.png").read_bytes().startswith(b"\x89PNG")


def test_lexical_agreement_rule_hand_made():
    from negmine.retrieve.ranking import rank_of
    from negmine.select.core import select_batch
    from negmine.select.rules import reasons
    from negmine.select.signals import lexical_agreement

    # the rank lookup LexicalRanker uses: BM25 lists q1 = [a, b, c], q2 = [b] (docs a, b, c = 0, 1, 2; -1 = empty);
    # rows (q1, a), (q1, c), (q2, a) → ranks 1, 3, 0 (a query without a list gets 0 without a lookup)
    idx = np.array([[0, 1, 2], [1, -1, -1]])
    assert rank_of(np.array([0, 0, 1]), np.array([0, 2, 0]), idx).tolist() == [1, 3, 0]
    assert lexical_agreement(np.array([0, 1, 5, 6]), 5).tolist() == [True, False, False, True]
    # one query: positive + 4 candidates; BM25 ranks candidate 1 first and candidate 3 sixth
    scores = np.array([0.9, 0.85, 0.8, 0.7, 0.6])
    args = (np.zeros(5, int), 1, np.array([1], dtype=np.uint64), scores, np.array([0, 1, 2, 3, 4]),
            np.arange(5), np.array([True, False, False, False, False]), np.zeros(5, bool))
    lex = np.array([2, 1, 0, 6, 0])
    sel = select_batch(*args, rules={"max_lexical_rank": 5}, k=2, lex_rank=lex)
    names = [reasons()[i] if i >= 0 else "kept" for i in sel.reason]
    assert names == ["positive", "lexical_agreement", "kept", "kept", "not_sampled"]  # the positive stays "positive"
    # both signals: similar_to_positive is checked first
    sel = select_batch(*args, rules={"max_lexical_rank": 5, "max_pos_sim": 0.5}, k=2, lex_rank=lex,
                       pos_sim=np.array([np.nan, 0.9, 0.1, 0.1, 0.1]))
    assert [reasons()[i] if i >= 0 else "kept" for i in sel.reason][1] == "similar_to_positive"
    with pytest.raises(ValueError, match="lex_rank"):
        select_batch(*args, rules={"max_lexical_rank": 5}, k=2)


@pytest.mark.slow
def test_lexical_agreement_matches_the_retrieve_stage_bm25(shared_data, tmp_path, cli, make_beir_subset):
    """BM25 candidates (default settings) on an 8-query Cranfield subset: select's lexical_agreement uses its own
    BM25 ranking (negmine.select.signals.LexicalRanker), which must agree with the retrieve stage's ranks: every
    candidate ranked 1..5 that no earlier rule dropped is dropped as lexical_agreement, and none ranked lower is."""
    from negmine.io.store import Artifact

    data = make_beir_subset(shared_data / "cranfield", tmp_path / "cran", "test", 8, 60)
    run = tmp_path / "run"
    code, out, err = cli("eval", run, "--qrels", data / "qrels" / "test.tsv", "--protocol", "hidden-positives",
                         "--set", "retrieve.method=bm25", "--set", "retrieve.depth=20",
                         "--set", "select.max_lexical_rank=5", "--json")
    assert code == 0, err
    sel = Artifact.open(run / "negatives", stage="select")
    dropped = sel.read("dropped").to_pylist()
    lex = [r for r in dropped if r["reason_dropped"] == "lexical_agreement"]
    assert lex and all(r["rank"] <= 5 for r in lex)
    earlier = {"positive", "duplicate_of_positive", "similar_to_positive"}
    top5 = [r for r in dropped if r["rank"] is not None and r["rank"] <= 5]
    assert all(r["reason_dropped"] in earlier | {"lexical_agreement"} for r in top5)
    assert all(r["rank"] > 5 for r in sel.read("negatives").to_pylist())
    assert json.loads(out)["dropped"]["lexical_agreement"] == len(lex)
    # the report re-selects with the rule applied (sensitivity curves) and the CLI flag gives the same artifact
    code, out, err = cli("report", run, "--qrels", data / "qrels" / "test.tsv")
    assert code == 0, err
    code, out, err = cli("select", run, "--max-lexical-rank", "5")
    assert code == 0 and "up to date" in out, err
