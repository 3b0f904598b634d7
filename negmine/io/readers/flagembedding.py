"""FlagEmbedding fine-tuning JSONL: ``{"query": str, "pos": [str], "neg": [str]}`` with optional
``pos_scores``, ``neg_scores``, ``prompt`` (and ``type``, ignored).

What is kept, and why:

* ``query`` → a query whose id is a content hash of its text (identical queries on several lines are one query).
* ``pos`` → positives (grade 1) and corpus documents; ``neg`` → ``given_negatives`` and corpus documents.
  Documents are identified by content hash (or by the ``--corpus`` document with the same text).
* ``pos_scores`` / ``neg_scores`` are a previous teacher's distillation scores. They are validated (numbers, one
  per passage) but not kept: negmine scores every pair with its own teacher, and a grade is not a teacher score.
* ``prompt`` is the query instruction used for training, ``type`` the FlagEmbedding task type. Neither is part
  of the query text (the retrievers and teachers apply their own prompts); the distinct values are recorded in the
  manifest's stats (``prompts``, ``types``) and, when queries differ, each query's (``query_prompt_type``: query id
  → [prompt, type], up to MAX_QUERY_META queries), so that the flagembedding export writes them back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from negmine.errors import InputError
from negmine.io.ingest import text_id
from negmine.io.params import IngestParams
from negmine.io.readers.corpus import corpus_file, read_extra_corpus, text_doc
from negmine.io.readers.fields import get_list, get_text, parse_number
from negmine.io.textio import iter_jsonl
from negmine.progress import tqdm

MAX_PROMPTS_RECORDED = 20
MAX_QUERY_META = 200_000  # queries whose own prompt / type the manifest records when they are not all alike


def input_files(src: Path, params: IngestParams) -> list[Path]:
    return [src, *corpus_file(params)]


def _texts(obj: dict, key: str, where: Path, loc: dict[str, int], required: bool) -> list[str]:
    v = obj.get(key)
    if type(v) is str:  # a single passage instead of a list
        return [v]
    items = get_list(obj, key, where, loc, required=required)
    for x in items:
        if type(x) is not str:
            raise InputError(f"'{key}' must be a list of strings, got {type(x).__name__} in the list", where, **loc)
    return items


def _check_scores(obj: dict, key: str, n_texts: int, where: Path, loc: dict[str, int]) -> None:
    if obj.get(key) is None:
        return
    scores = get_list(obj, key, where, loc)
    if len(scores) != n_texts:
        raise InputError(f"'{key}' has {len(scores)} scores for {n_texts} passages", where, **loc)
    for s in scores:
        if type(s) is bool or parse_number(s) is None or type(s) is str:
            raise InputError(f"'{key}' must hold numbers, got {s!r}", where, **loc)


def read(src: Path, params: IngestParams, canon: Any) -> None:
    by_text = read_extra_corpus(params, canon)
    prompts: dict[str, int] = {}
    types: dict[str, int] = {}
    meta: dict[str, tuple[str, str]] = {}
    for n, obj in tqdm(iter_jsonl(src), desc="flagembedding", unit=" rows", unit_scale=True, disable=None,
                       leave=False):
        loc = {"line": n}
        query = get_text(obj, "query", src, loc)
        pos = _texts(obj, "pos", src, loc, required=True)
        neg = _texts(obj, "neg", src, loc, required=False)
        _check_scores(obj, "pos_scores", len(pos), src, loc)
        _check_scores(obj, "neg_scores", len(neg), src, loc)
        prompt = get_text(obj, "prompt", src, loc, required=False)
        kind = get_text(obj, "type", src, loc, required=False)
        if prompt:
            prompts[prompt] = prompts.get(prompt, 0) + 1
        if kind:
            types[kind] = types.get(kind, 0) + 1
        qid = text_id("q", query)
        if (prompt or kind) and len(meta) <= MAX_QUERY_META:
            meta.setdefault(qid, (prompt, kind))
        canon.add_query(qid, query, src, line=n)
        for t in pos:
            canon.add_positive(qid, text_doc(canon, by_text, "", t, src, loc), 1.0, src, line=n)
        for t in neg:
            canon.add_given_negative(qid, text_doc(canon, by_text, "", t, src, loc), src, line=n)
    if prompts:
        top = sorted(prompts.items(), key=lambda kv: -kv[1])[:MAX_PROMPTS_RECORDED]
        canon.info["prompts"] = [{"prompt": p, "rows": c} for p, c in top]
    if types:
        canon.info["types"] = [{"type": t, "rows": c} for t, c in sorted(types.items(), key=lambda kv: -kv[1])]
    if len(prompts) > 1 or len(types) > 1 or (meta and len(set(meta.values())) > 1):
        if len(meta) <= MAX_QUERY_META:
            canon.info["query_prompt_type"] = {q: list(v) for q, v in meta.items()}
