"""Parameters of `negmine select` (config section ``select``).

Every rule is optional and they combine: a candidate is kept as a negative only if it passes all configured rules
(first failing rule = its drop reason, in the order positive, duplicate_of_positive, out_of_window, above_abs,
below_abs, above_margin, above_perc, similar_to_positive, lexical_agreement, then not_sampled). ``filter`` is a
shorthand naming the main score rule; the numeric keys are what the rules use, so e.g. ``filter: none`` +
``margin: 0.05`` + ``max_rank: 50`` is valid. ``max_pos_sim: null`` turns the document-similarity rule off.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from negmine.params_base import BatchSize, Device, Params, ShardQueries, one_of
from negmine.retrieve.params import ENCODER_BACKENDS, EncoderBackend

FILTERS = ("perc-pos", "margin-pos", "abs", "none")
# the samplers: each registered under its name in negmine/select/sampling.py
SAMPLINGS = ("top", "uniform", "softmax", "simans")
SHORT_POLICIES = ("keep", "drop", "fill")


class SelectParams(Params):
    num_negatives: int = Field(8, ge=1, description="Negatives per query.")
    # main rule. perc_pos (which has a default) applies only under "perc-pos"; margin, max_score/min_score and
    # the rank window apply whenever set, whatever `filter` says, so any combination is expressible.
    # The defaults (filter none + max_pos_sim auto) were chosen on Cranfield and CISI together with hidden positives
    # (scripts/bench_quality.py, docs/BENCHMARKS.md "Mining quality"); perc-pos etc. are one key away (configs/).
    filter: Annotated[str, one_of(FILTERS)] = Field("none", description=(
        f"Main rule: {' | '.join(FILTERS)} (none: the measured default relies on --max-pos-sim). --margin, "
        "--max-score/--min-score and the rank window apply whenever given."))
    perc_pos: float | None = Field(0.95, gt=0, description="TopK-PercPos: keep s < s+ - |s+|*(1-perc) (= s+ * perc "
                                   "for s+ >= 0).")
    margin: float | None = Field(None, description="TopK-MarginPos: keep s < s+ - margin.")
    max_score: float | None = Field(None, description="TopK-Abs: keep s < max_score.")
    min_score: float | None = Field(None, description="Drop too-easy candidates: s < min_score.")
    min_rank: int | None = Field(None, ge=1, description="Rank window start (1-based, inclusive).")
    max_rank: int | None = Field(None, ge=1, description="Rank window end (inclusive).")
    pos_ref: Literal["min", "mean", "max"] = Field("min", description="s+ over several positives: min | mean | max.")
    # similar_to_positive (negmine.select.signals): drop candidates whose document cosine with a positive >= this.
    # "auto" = per run: the pos_sim_quantile quantile of the run's candidate-positive similarities (a seeded
    # sample of its queries, candidates ranked <= 100), so the threshold follows the corpus and the encoder's
    # cosine scale; a number = that fixed threshold; null (on the command line: off) = rule off.
    max_pos_sim: float | Literal["auto"] | None = Field("auto", description=(
        "Drop candidates whose document cosine with a positive document is >= this (similar_to_positive): a "
        "number, 'auto' (the select.pos_sim_quantile [0.65] quantile of the run's candidate-positive cosines) or "
        "'off'."))
    pos_sim_quantile: float = Field(0.65, gt=0, lt=1, description="The quantile --max-pos-sim auto takes.")
    # encoder for max_pos_sim: None = the packaged all-MiniLM-L6-v2 (the teacher's cached vectors when the teacher
    # is that model); "teacher" = the bi-encoder teacher's own vectors (re-calibrate a fixed max_pos_sim for it);
    # any other value = that model name or path
    pos_sim_model: str | None = Field(None, description="Encoder for --max-pos-sim: a model name or path, or "
                                      "'teacher' [the packaged all-MiniLM-L6-v2].")
    # runtime of that encoder (the bi-encoder teacher's own when its vectors are reused)
    encoder_backend: Annotated[str, one_of(ENCODER_BACKENDS)] = EncoderBackend()
    # lexical_agreement (negmine.select.signals): drop candidates that BM25 (default settings, index cached) also
    # ranks in its top max_lexical_rank for the query: the teacher and a lexical retriever agreeing is a sign of a
    # relevant document (configs/low-fn.yaml; measured in docs/BENCHMARKS.md "Mining quality")
    max_lexical_rank: int | None = Field(None, ge=1, description="Drop candidates that BM25 also ranks in its top N "
                                         "for the query (lexical_agreement) [off].")
    # predicted_false_negative (negmine.calibrate): "auto" = apply RUN/calibration when the run has one (its
    # model and threshold; the fixed max_pos_sim default then gives way to it unless set explicitly), "off" = never,
    # or the path of another run's calibration directory / model.json
    calibration: str | None = Field("auto", description=(
        "Apply a calibration (rule predicted_false_negative): auto (RUN/calibration when present) | off | PATH of "
        "another run's calibration."))
    dedup: bool = Field(True, description="Drop near-duplicates of a positive.")
    dedup_threshold: float = Field(0.9, gt=0, le=1, description="Character-shingle Jaccard that makes a duplicate.")
    dedup_shingle: int = Field(5, ge=1, le=8, description="Shingle length in bytes of the normalised text.")
    sampling: Annotated[str, one_of(SAMPLINGS)] = Field("top", description=f"{' | '.join(SAMPLINGS)}.")
    temperature: float = Field(1.0, gt=0, description="softmax: p ~ exp(s / T).")
    simans_a: float = Field(0.5, gt=0, description="SimANS a: p ~ exp(-a * (s - s+ - b)^2).")
    simans_b: float = Field(0.0, description="SimANS b.")
    seed: int = Field(0, description="Seed of every random choice.")
    short_policy: Annotated[str, one_of(SHORT_POLICIES)] = Field("keep", description=(
        "Queries with fewer than k eligible negatives: keep (fewer) | drop (the query) | fill (from the next "
        "ranks, flagged `filled`)."))
    shard_queries: int = ShardQueries()
    # the --max-pos-sim encoder (the similarities are computed through the embedding cache)
    batch_size: int = BatchSize()
    device: str | None = Device()

    @field_validator("calibration", mode="before")
    @classmethod
    def _calibration(cls, v):
        if isinstance(v, bool):  # YAML reads a bare off / on / no / yes as a boolean
            return "auto" if v else "off"
        return v

    @field_validator("max_pos_sim", mode="before")
    @classmethod
    def _max_pos_sim_words(cls, v):
        """The command line's words: ``off`` / ``none`` = null (rule off), ``auto``, or a number."""
        if isinstance(v, str):
            word = v.strip().lower()
            if word in ("off", "none", "null"):
                return None
            try:
                return word if word == "auto" else float(word)
            except ValueError:
                return v
        return v

    @field_validator("max_pos_sim")
    @classmethod
    def _max_pos_sim(cls, v):
        if isinstance(v, (int, float)) and not (-1 < v <= 1):  # also rejects NaN
            raise ValueError("must be a cosine in (-1, 1], auto or null")
        return v

    def problems(self) -> list[str]:
        """Inconsistent combinations of keys (checked when the stage runs, not per key: ``--set`` overrides are
        validated one at a time, so ``--set select.filter=margin-pos --set select.margin=0.1`` must not fail
        half-way)."""
        out = []
        if self.min_rank is not None and self.max_rank is not None and self.min_rank > self.max_rank:
            out.append(f"select.min_rank ({self.min_rank}) > select.max_rank ({self.max_rank})")
        if self.min_score is not None and self.max_score is not None and self.min_score >= self.max_score:
            out.append(f"select.min_score ({self.min_score}) >= select.max_score ({self.max_score})")
        if self.filter != "perc-pos" and "perc_pos" in self.model_fields_set and self.perc_pos is not None:
            out.append(f"select.perc_pos is set but select.filter is '{self.filter}' (perc_pos applies only under "
                       "select.filter=perc-pos): add select.filter=perc-pos")
        if self.filter == "perc-pos" and self.perc_pos is None:
            out.append("select.filter 'perc-pos' needs select.perc_pos")
        if self.filter == "margin-pos" and self.margin is None:
            out.append("select.filter 'margin-pos' needs select.margin")
        if self.filter == "abs" and self.max_score is None and self.min_score is None:
            out.append("select.filter 'abs' needs select.max_score or select.min_score")
        return out

    def rules(self) -> dict[str, float | int | None]:
        """The effective rule values (None = rule off) after applying ``filter``. ``max_pos_sim: auto`` must have
        been resolved to a number first (negmine.select.signals.auto_pos_sim_threshold)."""
        if self.max_pos_sim == "auto":
            raise ValueError("select.max_pos_sim 'auto' is resolved per run before selecting")
        perc = self.perc_pos if self.filter == "perc-pos" else None
        return {"perc_pos": perc, "margin": self.margin, "max_score": self.max_score, "min_score": self.min_score,
                "min_rank": self.min_rank, "max_rank": self.max_rank, "max_pos_sim": self.max_pos_sim,
                "max_lexical_rank": self.max_lexical_rank}
