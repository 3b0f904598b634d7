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
    from negmine.select.filters import reasons

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
                                    "max_seq_length": 128}
    # another bi-encoder teacher: the default threshold is on MiniLM's scale, so MiniLM is used unless asked
    other = {"teacher": "bi-encoder", "model": "m", "doc_prompt": "passage: ", "max_seq_length": 256}
    assert embedding_spec(other) == {"model": "all-MiniLM-L6-v2", "prompt": None, "prompt_name": None,
                                     "max_seq_length": None}
    assert embedding_spec(other, "teacher") == {"model": "m", "prompt": "passage: ", "prompt_name": None,
                                                "max_seq_length": 256}
    assert embedding_spec({"teacher": "cross-encoder", "model": "ce"})["model"] == "all-MiniLM-L6-v2"
    assert embedding_spec({"teacher": "cross-encoder", "model": "ce"}, "teacher")["model"] == "all-MiniLM-L6-v2"
    assert embedding_spec(other, "e5")["model"] == "e5"


def test_select_defaults_are_the_measured_configuration():
    """docs/BENCHMARKS.md "Mining quality": filter none + max_pos_sim 0.55 (MiniLM) met all three targets."""
    from negmine.select.params import SelectParams

    p = SelectParams()
    assert (p.filter, p.max_pos_sim, p.pos_sim_model, p.sampling, p.num_negatives, p.dedup) == \
        ("none", 0.55, None, "top", 8, True)
    assert p.rules()["max_pos_sim"] == 0.55 and p.rules()["perc_pos"] is None and p.problems() == []
    # perc_pos without its filter would be silently ignored: it is an input problem instead
    msg = SelectParams(perc_pos=0.9).problems()
    assert len(msg) == 1 and "select.filter=perc-pos" in msg[0]
    assert SelectParams(filter="perc-pos", perc_pos=0.9).problems() == []


@pytest.mark.slow
def test_eval_hidden_positives_end_to_end(shared_data, tmp_path, cli):
    """An 8-query Cranfield subset: BM25 candidates, MiniLM teacher, similar_to_positive on. The protocol builds
    the input, mines, and scores against the full qrels; the FN count is re-derived here from the artifacts."""
    import pyarrow.compute as pc
    from conftest import make_beir_subset

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
