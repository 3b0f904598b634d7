"""FlagEmbedding in and out: each query's `prompt` and `type` from the input reach the flagembedding export."""

from __future__ import annotations

import json

import pytest

import negmine

pytestmark = pytest.mark.slow  # the packaged MiniLM retrieves and scores

TOPICS = ["plants make sugar from light", "cats are small carnivorous mammals", "rivers flow into the sea",
          "volcanoes erupt molten rock", "bees pollinate flowers", "glaciers carve valleys"]


def _input(path, kinds):
    rows = []
    for i, (topic, kind) in enumerate(zip(TOPICS, kinds, strict=True)):
        rows.append({"query": f"question {i}: {topic}?", "pos": [f"{topic} (document {i})"], "neg": [],
                     "prompt": "Represent this sentence for searching relevant passages: " if kind == "normal"
                     else "Classify: ", "type": kind})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _mine(src, run):
    negmine.mine(src, run, retrieve={"method": "dense", "depth": 5},
                 select={"num_negatives": 2, "max_pos_sim": None},
                 export={"format": "flagembedding"})
    return [json.loads(x) for x in (run / "export" / "flagembedding.jsonl").read_text().splitlines()]


def test_prompt_and_type_per_query_reach_the_export(tmp_path):
    kinds = ["normal", "symmetric_class"] * 3
    rows = _mine(_input(tmp_path / "fe.jsonl", kinds), tmp_path / "run")
    assert len(rows) == 6
    for r in rows:
        i = int(r["query"].split(":")[0].split()[1])
        assert r["type"] == kinds[i]
        assert r["prompt"] == ("Classify: " if kinds[i] == "symmetric_class"
                               else "Represent this sentence for searching relevant passages: ")


def test_one_prompt_and_type_for_all(tmp_path):
    rows = _mine(_input(tmp_path / "fe.jsonl", ["normal"] * 6), tmp_path / "run")
    assert {(r["prompt"], r["type"]) for r in rows} == {
        ("Represent this sentence for searching relevant passages: ", "normal")}
