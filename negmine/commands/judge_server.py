"""`negmine judge-server --qrels FILE`: a local OpenAI-compatible judge that answers from qrels."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import finite


def judge_server(
    qrels: Path = typer.Option(..., "--qrels", help="Qrels TSV (query-id, corpus-id, score), BEIR layout.",
                               exists=True, dir_okay=False),
    corpus: Path | None = typer.Option(None, "--corpus", help="corpus.jsonl [BEIR dir of the qrels]."),
    queries: Path | None = typer.Option(None, "--queries", help="queries.jsonl [BEIR dir of the qrels]."),
    port: int = typer.Option(8089, "--port", help="Port on 127.0.0.1 (0 = any free port)."),
    accuracy: float = typer.Option(0.9, "--accuracy", callback=finite, min=0.0, max=1.0, help="Probability of a correct label."),
    faults: float = typer.Option(0.0, "--faults", callback=finite, min=0.0, max=1.0, help="Probability of an injected fault per "
                                 "request."),
    fault_kinds: str = typer.Option(",".join(("429", "500", "stall", "bad_body", "bad_json", "truncated",
                                              "bad_ids")), "--fault-kinds", help="Comma-separated fault kinds."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", callback=finite, min=0.0, help="Added latency per request."),
    stall_seconds: float = typer.Option(30.0, "--stall-seconds", callback=finite, help="How long a 'stall' fault holds a request."),
    retry_after: float = typer.Option(0.2, "--retry-after", callback=finite, help="Retry-After seconds of an injected 429."),
    min_grade: float = typer.Option(1.0, "--min-grade", callback=finite, help="Qrels grade that counts as relevant."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated errors and faults."),
) -> None:
    """Serve chat completions (and the Batch API) on 127.0.0.1, judging from qrels with a given accuracy and
    injected faults, so a relabel pipeline can be tried before paying for a real judge.

    Example: negmine judge-server --qrels ../shared/data/cranfield/qrels/test.tsv --accuracy 0.9 --faults 0.1
    then: OPENAI_BASE_URL=http://127.0.0.1:8089/v1 negmine relabel RUN --config configs/rlhn-cascade.yaml
    """
    from negmine.errors import InputError
    from negmine.testing.judge_server import FAULT_KINDS, JudgeServer, ServerState, Truth

    kinds = tuple(k.strip() for k in fault_kinds.split(",") if k.strip())
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad or not kinds:
        raise InputError(f"unknown fault kind(s) {bad} (known: {', '.join(FAULT_KINDS)})", "--fault-kinds")
    for p in (corpus, queries):
        if p is not None and not p.is_file():
            raise InputError("file not found", p)
    truth = Truth.from_files(qrels, corpus, queries, min_grade)
    state = ServerState(truth, accuracy=accuracy, faults=faults, fault_kinds=kinds, latency_ms=latency_ms,
                        stall_seconds=stall_seconds, retry_after=retry_after, seed=seed)
    import signal

    def _stop(*_a) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    srv = JudgeServer(state, port=port).start()
    typer.echo(f"negmine judge-server: {len(truth.qrels)} queries with qrels, {len(truth.doc_ids)} passages; "
               f"listening on {srv.base_url}\nexport OPENAI_BASE_URL={srv.base_url}", err=True)
    try:
        while srv.thread is not None and srv.thread.is_alive():
            srv.thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()
        typer.echo(f"negmine judge-server: {state.requests} requests, {state.judgments} judgments, "
                   f"faults {dict(state.faults_injected)}", err=True)


def register(app: typer.Typer) -> None:
    app.command("judge-server")(judge_server)
