"""`negmine retrieve RUN`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt


def retrieve(
    run: Path = RunArg,
    method: str | None = typer.Option(None, "--method", "-m", help="bm25 | dense | hybrid (bm25 + dense, "
                                      "fused) [dense]."),
    depth: int | None = typer.Option(None, "--depth", "-k", help="Candidates per query [100]."),
    model: str | None = typer.Option(None, "--model", help="Dense model: sentence-transformers name or local "
                                     "path [all-MiniLM-L6-v2, packaged]."),
    backend: str | None = typer.Option(None, "--backend", help="BM25 backend: bm25s | rank-bm25 (slow "
                                       "reference) [bm25s]."),
    index: str | None = typer.Option(None, "--index", help="Dense index: flat (exact) | ivf | hnsw [flat]."),
    fusion: str | None = typer.Option(None, "--fusion", help="Hybrid fusion: rrf | score [rrf]."),
    query_prompt: str | None = typer.Option(None, "--query-prompt", help="Text put before each query "
                                            "(e.g. 'query: ')."),
    doc_prompt: str | None = typer.Option(None, "--doc-prompt", help="Text put before each document."),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="Truncate model inputs "
                                              "(tokens) [model default]."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Encoding batch size [64]."),
    device: str | None = typer.Option(None, "--device", help="cpu | cuda | cuda:1 ... [auto]."),
    shard_queries: int | None = typer.Option(None, "--shard-queries", help="Queries per shard (unit of "
                                             "resume) [10000]."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Retrieve candidate documents for every query (RUN/ingest → RUN/candidates).

    Positives are kept (selection masks them); the manifest's stats give the rank at which each positive was
    found (table positive_ranks) and recall@depth. Several fused retrievers: config key retrieve.retrievers.

    Example: negmine retrieve runs/scifact --method hybrid --depth 200
    """
    from negmine.commands.common import resolve
    from negmine.retrieve.stage import run_retrieve

    cfg = resolve(config, set_, "retrieve", method=method, depth=depth, model=model, backend=backend, index=index,
                  fusion=fusion, query_prompt=query_prompt, doc_prompt=doc_prompt, max_seq_length=max_seq_length,
                  batch_size=batch_size, device=device, shard_queries=shard_queries)
    res = run_retrieve(run, cfg.retrieve)
    typer.echo(str(res.artifact.path))


def register(app: typer.Typer) -> None:
    app.command("retrieve")(retrieve)
