"""Bi-encoder teacher: cosine similarity of L2-normalised sentence-transformers embeddings.

Embeddings go through :func:`negmine.encode.embed.encode_texts` (on the current engine) and its persistent cache, so when the teacher is
the retriever's dense model (same prompts and max_seq_length) every text is already cached and nothing is encoded
twice. Cosine of normalised vectors is what sentence-transformers' ``mine_hard_negatives`` scores with as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from negmine.score.params import ScoreParams

ROW_BLOCK = 65_536  # rows per block of the row-wise dot product (bounds the gathered (rows, dim) matrices)


def rowwise_dot(qv: np.ndarray, dv: np.ndarray, qi: np.ndarray, di: np.ndarray) -> np.ndarray:
    """``out[r] = qv[qi[r]] · dv[di[r]]`` in blocks, float32."""
    out = np.empty(len(qi), dtype=np.float32)
    for s in range(0, len(qi), ROW_BLOCK):
        e = s + ROW_BLOCK
        out[s:e] = np.einsum("ij,ij->i", qv[qi[s:e]], dv[di[s:e]])
    return out


@dataclass
class BiEncoderTeacher:
    params: ScoreParams

    def score(self, queries: Sequence[str], docs: Sequence[str], qi: np.ndarray, di: np.ndarray) -> np.ndarray:
        """Scores of the pairs ``(queries[qi[r]], docs[di[r]])``; ``queries`` and ``docs`` are distinct texts."""
        from negmine.engine import encode

        p = self.params
        if len(qi) == 0:
            return np.empty(0, dtype=np.float32)
        common: dict[str, Any] = {"model": p.model, "max_seq_length": p.max_seq_length, "batch_size": p.batch_size,
                  "device": p.device, "normalize": p.normalize, "use_cache": True, "backend": p.encoder_backend}
        qv = encode(list(queries), kind="query", prompt=p.query_prompt, prompt_name=p.query_prompt_name,
                          desc="teacher queries", **common)
        dv = encode(list(docs), kind="doc", prompt=p.doc_prompt, prompt_name=p.doc_prompt_name,
                          desc="teacher docs", **common)
        return rowwise_dot(qv, dv, qi, di)
