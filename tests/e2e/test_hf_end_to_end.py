"""Acceptance of the Hugging Face round trip: a sharded-Parquet dataset folder with anchor/positive columns →
`negmine mine` → an export with a dataset card and an eval split → `datasets.load_dataset(EXPORT_DIR)` loads train
and eval → 3 steps of SentenceTransformerTrainer with MultipleNegativesRankingLoss."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from test_mine import tiny_bi_encoder  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def _hf_folder(beir, dst):
    corpus = {d["_id"]: d for d in map(json.loads, (beir / "corpus.jsonl").read_text().splitlines())}
    queries = {q["_id"]: q["text"] for q in map(json.loads, (beir / "queries.jsonl").read_text().splitlines())}
    qrels = [line.split("\t") for line in (beir / "qrels" / "train.tsv").read_text().splitlines()[1:]]
    rows = [{"anchor": queries[q], "positive": corpus[d]["text"]} for q, d, _g in qrels]
    (dst / "data").mkdir(parents=True)
    half = len(rows) // 2
    for i, part in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.Table.from_pylist(part), dst / "data" / f"train-{i:05d}-of-00002.parquet")
    return dst, beir / "corpus.jsonl"


def test_hf_folder_to_trainer(scifact_small, tmp_path, cli, tiny_bi_encoder):  # noqa: F811
    import datasets

    src, corpus = _hf_folder(scifact_small, tmp_path / "hf")
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump({
        "input": {"path": str(src), "corpus": str(corpus)},
        "retrieve": {"method": "dense", "depth": 30},
        "select": {"num_negatives": 3},
        "export": {"format": "triplet", "split": "eval=0.1", "license": "cc-by-4.0"},
    }))
    run = tmp_path / "run"
    code, _out, err = cli("mine", "--config", cfg, "--out", run)
    assert code == 0, err
    export_dir = run / "export"
    front = yaml.safe_load((export_dir / "README.md").read_text().split("---\n")[1])
    assert front["tags"] == ["sentence-transformers", "hard-negatives"] and front["license"] == "cc-by-4.0"
    assert [f["split"] for f in front["configs"][0]["data_files"]] == ["train", "eval"]

    ds = datasets.load_dataset(str(export_dir))
    assert set(ds) == {"train", "eval"}
    assert ds["train"].column_names == ["anchor", "positive", "negative"]
    assert not set(ds["train"]["anchor"]) & set(ds["eval"]["anchor"])
    assert len(ds["eval"]) > 0 and len(ds["train"]) > 3 * len(ds["eval"])
    assert {s["name"]: s["num_examples"] for s in front["dataset_info"][0]["splits"]} == \
        {"train": len(ds["train"]), "eval": len(ds["eval"])}

    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(tiny_bi_encoder, device="cpu")
    before = [p.detach().clone() for p in model.parameters()]
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "train"), max_steps=3,
                                               per_device_train_batch_size=8, per_device_eval_batch_size=8,
                                               learning_rate=1e-2, report_to=[], save_strategy="no",
                                               use_cpu=True, seed=0)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds["train"],
                                         eval_dataset=ds["eval"], loss=MultipleNegativesRankingLoss(model))
    result = trainer.train()
    assert result.global_step == 3 and result.training_loss == result.training_loss and result.training_loss > 0
    assert any(not b.equal(p.detach()) for b, p in zip(before, model.parameters(), strict=True))
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] == metrics["eval_loss"]  # the eval split is usable as it loads
