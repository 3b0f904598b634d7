"""`negmine select RUN`."""

from __future__ import annotations

from pathlib import Path

import typer

from negmine.commands.common import ConfigOpt, RunArg, SetOpt


def select(
    run: Path = RunArg,
    filter: str | None = typer.Option(None, "--filter", help="Main rule: perc-pos | margin-pos | abs | none "
                                      "[none: the measured default relies on --max-pos-sim]. --margin, "
                                      "--max-score/--min-score and the rank window apply whenever given."),
    perc_pos: float | None = typer.Option(None, "--perc-pos", help="TopK-PercPos: keep s < s+ - |s+|*(1-perc) "
                                          "(= s+ * perc for s+ >= 0) [0.95]."),
    margin: float | None = typer.Option(None, "--margin", help="TopK-MarginPos: keep s < s+ - margin."),
    max_score: float | None = typer.Option(None, "--max-score", help="TopK-Abs: keep s < max_score."),
    min_score: float | None = typer.Option(None, "--min-score", help="Drop too-easy candidates: s < min_score."),
    min_rank: int | None = typer.Option(None, "--min-rank", help="Rank window start (1-based, inclusive)."),
    max_rank: int | None = typer.Option(None, "--max-rank", help="Rank window end (inclusive)."),
    max_pos_sim: str | None = typer.Option(None, "--max-pos-sim", help="Drop candidates whose document cosine "
                                           "with a positive document is >= this (similar_to_positive): a number, "
                                           "'auto' (the select.pos_sim_quantile [0.65] quantile of the run's "
                                           "candidate-positive cosines) or 'off' [auto]."),
    pos_sim_model: str | None = typer.Option(None, "--pos-sim-model", help="Encoder for --max-pos-sim: a model "
                                             "name or path, or 'teacher' [the packaged all-MiniLM-L6-v2]."),
    max_lexical_rank: int | None = typer.Option(None, "--max-lexical-rank", help="Drop candidates that BM25 also "
                                                "ranks in its top N for the query (lexical_agreement) [off]."),
    pos_ref: str | None = typer.Option(None, "--pos-ref", help="s+ over several positives: min | mean | max "
                                       "[min]."),
    calibration: str | None = typer.Option(None, "--calibration", help="Apply a calibration (rule "
                                           "predicted_false_negative): auto (RUN/calibration when present) | off "
                                           "| PATH of another run's calibration [auto]."),
    no_calibration: bool = typer.Option(False, "--no-calibration", help="Same as --calibration off."),
    dedup: bool | None = typer.Option(None, "--dedup/--no-dedup", help="Drop near-duplicates of a positive "
                                      "[on]."),
    dedup_threshold: float | None = typer.Option(None, "--dedup-threshold", help="Shingle Jaccard that makes a "
                                                 "duplicate [0.9]."),
    num_negatives: int | None = typer.Option(None, "--num-negatives", "-k", help="Negatives per query [8]."),
    sampling: str | None = typer.Option(None, "--sampling", help="top | uniform | softmax | simans [top]."),
    temperature: float | None = typer.Option(None, "--temperature", help="softmax: p ~ exp(s / T) [1.0]."),
    simans_a: float | None = typer.Option(None, "--simans-a", help="SimANS a [0.5]."),
    simans_b: float | None = typer.Option(None, "--simans-b", help="SimANS b [0.0]."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of every random choice [0]."),
    short_policy: str | None = typer.Option(None, "--short-policy", help="Queries with fewer than k eligible "
                                            "negatives: keep (fewer) | drop (the query) | fill (from the next "
                                            "ranks, flagged `filled`) [keep]."),
    shard_queries: int | None = typer.Option(None, "--shard-queries", help="Queries per output shard "
                                             "[10000]."),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Filter and sample hard negatives from RUN/scores → RUN/negatives, and print a summary.

    \b
    Examples:
      negmine select runs/scifact                         # defaults: top 8, minus documents too like a positive
      negmine select runs/scifact --max-lexical-rank 20 --max-pos-sim 0.65           # configs/low-fn.yaml rules
      negmine select runs/scifact --filter perc-pos --perc-pos 0.95 --max-pos-sim off -k 4     # NV-Retriever

    Every decision is recorded: kept negatives in RUN/negatives, every other candidate with its reason
    (positive, duplicate_of_positive, out_of_window, above_abs, below_abs, above_margin, above_perc,
    similar_to_positive, lexical_agreement, predicted_false_negative, not_sampled, query_short) in
    RUN/negatives/dropped. When RUN/calibration exists (`negmine calibrate`), its model and threshold apply.
    """
    from negmine.commands.common import resolve
    from negmine.select.stage import format_summary, run_select

    sets = list(set_ or [])
    if max_pos_sim is not None:  # a float, auto, or off (= null): given as the last --set, below the other flags
        off = max_pos_sim.strip().lower() in ("off", "none")
        sets.append(f"select.max_pos_sim={'null' if off else max_pos_sim.strip().lower()}")
    if no_calibration:
        calibration = "off"
    cfg = resolve(config, sets, "select", calibration=calibration, pos_sim_model=pos_sim_model,
                  max_lexical_rank=max_lexical_rank, filter=filter, perc_pos=perc_pos, margin=margin, max_score=max_score, min_score=min_score,
                  min_rank=min_rank, max_rank=max_rank, pos_ref=pos_ref, dedup=dedup,
                  dedup_threshold=dedup_threshold, num_negatives=num_negatives, sampling=sampling,
                  temperature=temperature, simans_a=simans_a, simans_b=simans_b, seed=seed,
                  short_policy=short_policy, shard_queries=shard_queries)
    res = run_select(run, cfg.select)
    typer.echo(format_summary(res.artifact.stats))
    typer.echo(f"\n{'up to date: ' if res.skipped else ''}{res.artifact.path}")


def register(app: typer.Typer) -> None:
    app.command("select")(select)
