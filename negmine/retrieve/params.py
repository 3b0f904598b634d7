"""Parameters of `negmine retrieve` (config section ``retrieve``).

The top-level keys configure one retriever (``method: bm25 | dense``) or the two of ``method: hybrid``. A list
``retrievers`` runs several retrievers and fuses their candidates; each entry takes the same keys as the top level
(``method`` required) and inherits every key it does not set::

    retrieve:
      depth: 100
      fusion: rrf
      retrievers:
        - {method: bm25, depth: 200}
        - {method: dense, model: all-MiniLM-L6-v2}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from negmine.params_base import BatchSize, Device, Params, ShardQueries, one_of

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# encoder runtimes (negmine/encode/backends.py); the same key in retrieve, score and select
ENCODER_BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
ENCODER_BACKEND_HELP = ("Encoder runtime: " + " | ".join(ENCODER_BACKENDS) + " [auto: on CPU the fastest exported "
                        "backend that passed the quality gate vs torch fp32 (OpenVINO here), torch fp16 on CUDA].")


def EncoderBackend() -> Any:  # noqa: N802 - reads like Field
    return Field("auto", description=ENCODER_BACKEND_HELP)

BM25_KEYS = ("backend", "bm25_method", "k1", "b", "delta", "stopwords", "stemmer")
DENSE_KEYS = ("model", "encoder_backend", "query_prompt", "query_prompt_name", "doc_prompt", "doc_prompt_name", "max_seq_length",
              "normalize", "index", "ivf_nlist", "ivf_nprobe", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search")


class RetrieverConfig(Params):
    """One retriever. The fields a method does not use are ignored (and left out of its fingerprint)."""

    method: Literal["bm25", "dense"] = "dense"
    name: str | None = None          # label in the `retrievers` column (default: the method)
    depth: int = Field(100, gt=0, description="Candidates per query.")
    weight: float = Field(1.0, ge=0)  # weight in fusion
    # -- BM25 ---------------------------------------------------------------------------------------------------
    backend: Literal["bm25s", "rank-bm25"] = Field("bm25s", description="BM25 backend: bm25s | rank-bm25 (BM25Okapi, the slow reference).")
    bm25_method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"  # bm25s scoring variant
    k1: float = Field(1.2, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    delta: float = Field(0.5, ge=0)  # bm25l / bm25+ only
    stopwords: str | None = "en"     # a bm25s stopword list name (en, de, fr, ...), or null for none
    stemmer: str | None = "english"  # a PyStemmer language, or null for none
    # -- dense --------------------------------------------------------------------------------------------------
    model: str = Field(DEFAULT_MODEL, description="Dense model: sentence-transformers name or local path "
                       f"[{DEFAULT_MODEL}, packaged].")
    encoder_backend: Annotated[str, one_of(ENCODER_BACKENDS)] = EncoderBackend()
    query_prompt: str | None = Field(None, description="Text put before each query (e.g. 'query: ').")
    query_prompt_name: str | None = None
    doc_prompt: str | None = Field(None, description="Text put before each document.")
    doc_prompt_name: str | None = None
    max_seq_length: int | None = Field(None, gt=0, description="Truncate model inputs (tokens) [model default].")
    normalize: bool = True           # cosine similarity (L2-normalised vectors, inner product)
    index: Literal["flat", "ivf", "hnsw"] = Field("flat", description="Dense index: flat (exact inner product) | "
                                                  "ivf | hnsw.")
    ivf_nlist: int | None = Field(None, gt=0)        # default: 4·sqrt(n_docs)
    ivf_nprobe: int = Field(16, gt=0)
    hnsw_m: int = Field(32, gt=1)
    hnsw_ef_construction: int = Field(200, gt=0)
    hnsw_ef_search: int = Field(256, gt=0)

    @property
    def label(self) -> str:
        return self.name or self.method

    def fingerprint_dict(self) -> dict[str, Any]:
        keys = ("method", "depth") + (BM25_KEYS if self.method == "bm25" else DENSE_KEYS)
        out = {k: getattr(self, k) for k in keys}
        if self.method == "bm25" and self.backend == "rank-bm25":
            out.pop("bm25_method")  # BM25Okapi has one variant
        return out


class RetrieveParams(RetrieverConfig):
    method: Literal["bm25", "dense", "hybrid"] = Field(  # type: ignore[assignment]
        "dense", description="bm25 | dense | hybrid (bm25 + dense, fused).")
    retrievers: list[dict[str, Any]] | None = None  # several retrievers, fused (overrides `method`)
    fusion: Literal["rrf", "score"] = Field("rrf", description="Fusion of several retrievers: rrf (reciprocal "
                                            "rank) | score (min-max normalised score sum).")
    rrf_k: float = Field(60.0, gt=0)
    batch_size: int = BatchSize()
    device: str | None = Device()
    shard_queries: int = ShardQueries()

    @field_validator("retrievers")
    @classmethod
    def _need_method(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, spec in enumerate(v or []):
            if not isinstance(spec, dict) or spec.get("method") not in ("bm25", "dense"):
                raise ValueError(f"retrievers[{i}]: needs 'method: bm25' or 'method: dense'")
        return v

    @model_validator(mode="after")
    def _check_retrievers(self) -> RetrieveParams:
        self.resolved()  # unknown keys or bad values in a list entry are config errors now, not mid-run
        return self

    def resolved(self) -> list[RetrieverConfig]:
        """The retrievers this config runs, each with every inherited key filled in."""
        base = {k: getattr(self, k) for k in RetrieverConfig.model_fields if k not in ("method", "name")}
        if self.retrievers:
            out = []
            for i, spec in enumerate(self.retrievers):
                try:
                    out.append(RetrieverConfig.model_validate(base | spec))
                except ValidationError as e:
                    err = e.errors()[0]
                    where = ".".join(str(x) for x in err["loc"])
                    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                    raise ValueError(f"retrievers[{i}].{where}: {msg}") from None
        elif self.method == "hybrid":
            out = [RetrieverConfig.model_validate(base | {"method": m}) for m in ("bm25", "dense")]
        else:
            out = [RetrieverConfig.model_validate(base | {"method": self.method, "name": self.name})]
        labels = [r.label for r in out]
        for i, r in enumerate(out):  # two unnamed retrievers of one method get distinct labels
            if labels.count(r.label) > 1 and r.name is None:
                out[i] = r.model_copy(update={"name": f"{r.method}{i + 1}"})
        if len({r.label for r in out}) != len(out):
            raise ValueError(f"retrievers: names must be distinct, got {[r.label for r in out]}")
        return out

    def fingerprint_dict(self) -> dict[str, Any]:
        rs = self.resolved()
        out: dict[str, Any] = {"retrievers": [r.fingerprint_dict() | {"name": r.label} for r in rs],
                               "depth": self.depth}
        if len(rs) > 1:
            out |= {"fusion": self.fusion, "weights": [r.weight for r in rs]}
            if self.fusion == "rrf":
                out["rrf_k"] = self.rrf_k
        return out
