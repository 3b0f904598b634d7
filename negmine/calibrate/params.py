"""Parameters of `negmine calibrate` (config section ``calibrate``).

The judge is the relabel stage's: ``tiers`` (default: the first tier of ``relabel.tiers``, i.e. ``$OPENAI_BASE_URL``
with ``$OPENAI_API_KEY``), and the prompt, list size, token limits, concurrency, timeouts, retries and response
cache of the ``relabel`` section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from negmine.judge.params import Tier
from negmine.params_base import NoFP, Params


class CalibrateParams(Params):
    queries: int = Field(75, ge=2, description="Queries in the judged sample (seeded).")
    fraction: float | None = Field(None, gt=0, le=1)  # or this share of the run's queries (overrides `queries`)
    top: int = Field(12, ge=1, description="Top candidates judged per sampled query (plus calibrate.deep deeper "
                     "ones, the positives and calibrate.controls random documents).")
    deep: int = Field(3, ge=0)                      # plus this many random candidates ranked below `top`: the
    #                                                 model then also knows the deep candidates refills come from
    controls: int = Field(4, ge=0)                  # random documents outside the query's pool, judged too: they
    #                                                 measure how often the judge calls an irrelevant text relevant
    judge_positives: bool = True                    # judge the known positives too (the judge's sensitivity)
    flagged: Literal["relevant", "relevant_or_partial"] = "relevant_or_partial"  # what counts as a false negative
    seed: int = Field(0, description="Seed of the sample, controls and folds.")
    folds: int = Field(5, ge=2)                     # cross-validation folds (by query)
    features: list[str] | None = None               # None = every feature (negmine.calibrate.features)
    judge_noise: bool = True                        # model the judge's errors (false-positive rate, sensitivity)
    # the threshold: the least aggressive one whose estimated FN rate meets the target while at least
    # `min_coverage` of the queries keep k negatives. target_fn (absolute) wins over target_ratio (x naive top-k).
    target_ratio: float | None = Field(0.4, gt=0, le=1, description="Estimated FN rate at most this fraction of "
                                       "naive top-k.")
    target_fn: float | None = Field(None, ge=0, le=1, description="Estimated FN rate at most this (overrides "
                                    "--target-ratio).")
    min_coverage: float = Field(0.95, ge=0, le=1)
    # and keeps the negatives hard: mean teacher score of the kept negatives / that of naive top-k (on the
    # calibration's queries; None = no floor). Naive top-k holds the false negatives, which score high, so this
    # ratio understates the hardness measured against a perfect judge.
    min_hardness: float | None = Field(0.88, gt=0, le=1)
    lexical_depth: int = Field(100, ge=1)           # BM25 list depth for the log_lex_rank feature
    coverage_queries: int = NoFP(2000, ge=1)        # queries (besides the sample) the coverage is estimated on
    tiers: list[Tier] | None = None                 # None = [relabel.tiers[0]]
    budget_usd: float | None = NoFP(None, gt=0, description="Stop cleanly before new spending would pass this many "
                                    "USD (exit 3; re-run to continue).")

    @field_validator("features")
    @classmethod
    def _features(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        from negmine.calibrate.features import FEATURES

        unknown = [f for f in v if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown} (known: {', '.join(FEATURES)})")
        if not v:
            raise ValueError("at least one feature")
        return v

    @model_validator(mode="after")
    def _target(self) -> CalibrateParams:
        if self.target_ratio is None and self.target_fn is None:
            raise ValueError("calibrate needs target_ratio or target_fn")
        return self

    def feature_names(self) -> list[str]:
        from negmine.calibrate.features import DEFAULT_FEATURES

        return list(self.features or DEFAULT_FEATURES)
