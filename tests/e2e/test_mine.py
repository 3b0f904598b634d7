"""`negmine mine` end to end: the CLI on a real SciFact subset, skip / re-run behaviour per stage, and one training
step of a sentence-transformers model on the exported Parquet, loaded with `datasets` and used unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from negmine.io.store import MANIFEST, Artifact

pytestmark = pytest.mark.slow

STAGE_DIRS = {"ingest": "ingest", "retrieve": "candidates", "score": "scores", "select": "negatives"}


def _config(tmp: Path, data: Path) -> Path:
    cfg = tmp / "mine.yaml"
    cfg.write_text(f"""# test config: negmine's default select rules (filter none + max_pos_sim auto) on a SciFact subset
input:
  path: {data}
  split: train
retrieve:
  method: dense
  depth: 30
score:
  teacher: bi-encoder
select:
  num_negatives: 3
export:
  format: triplet
""", encoding="utf-8")
    return cfg


def _status(err: str) -> dict[str, str]:
    """stage → 'skipped' | 'ran', from the per-stage log lines."""
    out = {}
    for line in err.splitlines():
        if "] " in line and (": up to date, skipped" in line or ": ran in " in line):
            name = line.split("] ", 1)[1].split(":", 1)[0]
            out[name] = "skipped" if "up to date" in line else "ran"
    return out


@pytest.fixture(scope="module")
def tiny_bi_encoder(tmp_path_factory, minilm) -> str:
    """A 2-layer BERT (hidden 32) with mean pooling, built from a config, with the packaged MiniLM tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    base = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=512)).save_pretrained(base)
    tok.save_pretrained(base)
    tr = Transformer(str(base), max_seq_length=64)
    out = tmp_path_factory.mktemp("tiny_st")
    SentenceTransformer(modules=[tr, Pooling(tr.get_embedding_dimension(), "mean")]).save(str(out))
    return str(out)


def test_mine_end_to_end_skips_and_trains(scifact_small, tmp_path, cli, tiny_bi_encoder, monkeypatch):
    secret = "sk-negmine-test-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    run = tmp_path / "run"
    cfg = _config(tmp_path, scifact_small)

    code, out, err = cli("mine", "--config", cfg, "--out", run)
    assert code == 0, err
    assert set(_status(err).values()) == {"ran"} and len(_status(err)) == 5
    parquet = run / "export" / "triplet.parquet"
    assert f"exported: {parquet}" in out and parquet.is_file()
    assert "select summary:" in out
    # the default rule set ran: documents too similar to a positive were dropped, with their reason
    sel = Artifact.open(run / "negatives", stage="select")
    # max_pos_sim auto: the manifest records the threshold this run resolved (the quantile of its similarities)
    auto = sel.stats["max_pos_sim_auto"]
    assert sel.params["filter"] == "none" and sel.params["max_pos_sim"] == auto["threshold"]
    assert 0 < auto["threshold"] < 1 and auto["quantile"] == 0.65 and auto["candidates"] > 100
    assert sel.stats["dropped"].get("similar_to_positive", 0) > 0, sel.stats
    # the effective config is in each manifest of a stage that ran; no key from the environment anywhere
    for d in STAGE_DIRS.values():
        text = (run / d / MANIFEST).read_text()
        m = json.loads(text)
        assert m["config"]["select"]["num_negatives"] == 3 and m["config"]["retrieve"]["depth"] == 30
        assert secret not in text
    n_before = Artifact.open(run / "negatives").num_rows()

    # unchanged: every stage is skipped
    code, out, err = cli("mine", "--config", cfg, "--out", run)
    assert code == 0, err
    assert _status(err) == {s: "skipped" for s in ("ingest", "retrieve", "score", "select", "export")}, err

    # a select key changed: select and export re-run, the rest is up to date — and the log says so
    code, out, err = cli("mine", "--config", cfg, "--out", run, "--set", "select.num_negatives=1")
    assert code == 0, err
    assert _status(err) == {"ingest": "skipped", "retrieve": "skipped", "score": "skipped", "select": "ran",
                            "export": "ran"}, err
    n_after = Artifact.open(run / "negatives").num_rows()
    assert 0 < n_after < n_before

    # a score key changed: score, select and export re-run
    code, out, err = cli("mine", "--config", cfg, "--out", run, "--set", "select.num_negatives=1",
                         "--set", "score.max_seq_length=128")
    assert code == 0, err
    assert [s for s, v in _status(err).items() if v == "ran"] == ["score", "select", "export"], err

    # one training step of a sentence-transformers model on the exported file, loaded unchanged
    from datasets import load_dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    ds = load_dataset("parquet", data_files=str(parquet), split="train")
    assert ds.column_names[:3] == ["anchor", "positive", "negative"] and len(ds) >= 8
    model = SentenceTransformer(tiny_bi_encoder, device="cpu")
    before = [p.detach().clone() for p in model.parameters()]
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "train"), max_steps=1,
                                               per_device_train_batch_size=8, learning_rate=1e-2,
                                               report_to=[], save_strategy="no", use_cpu=True, seed=0)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds,
                                         loss=MultipleNegativesRankingLoss(model))
    result = trainer.train()
    assert result.global_step == 1
    assert result.training_loss == result.training_loss and result.training_loss > 0  # finite, positive
    assert any(not b.equal(p.detach()) for b, p in zip(before, model.parameters(), strict=True))


def test_mine_needs_a_run_directory(tmp_path, cli, scifact_small):
    cfg = _config(tmp_path, scifact_small)
    code, out, err = cli("mine", "--config", cfg)
    assert code == 2 and "--out" in err and "run_dir" in err


def test_mine_bad_config_key_is_one_line_exit_2(tmp_path, cli, scifact_small):
    cfg = _config(tmp_path, scifact_small)
    code, out, err = cli("mine", "--config", cfg, "--out", tmp_path / "r", "--set", "select.perc_po=0.9")
    assert code == 2 and "select.perc_po" in err and len(err.strip().splitlines()) == 1
