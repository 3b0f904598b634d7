"""Cross-encoder teacher: a sentence-transformers ``CrossEncoder`` scores every (query, document) pair.

A configured cross-encoder is always used: a model that is not a single-logit sequence classifier (for example a
bi-encoder given by mistake, which CrossEncoder would load with a randomly initialised head) is an input error,
never a silent fallback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from negmine.errors import InputError
from negmine.score.params import ScoreParams

log = logging.getLogger("negmine")

PAIR_BLOCK = 4096  # pairs per predict() call: the progress-bar step (each call length-sorts its pairs)


def check_classifier(name: str, flag: str = "--model") -> None:
    """Raise InputError unless a local model directory holds a sequence-classification model."""
    from negmine.models import resolve_model

    cfg = Path(resolve_model(name)) / "config.json"
    if not cfg.is_file():
        return  # a hub id: loading decides (and fails offline with a one-line error)
    try:
        arch = json.loads(cfg.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, json.JSONDecodeError):
        return
    if arch and not any(a.endswith("ForSequenceClassification") for a in arch):
        raise InputError(f"'{name}' is not a cross-encoder (architectures {arch}, no sequence-classification "
                         "head): give a CrossEncoder model, or use --teacher bi-encoder", flag)


def activation_fn(name: str) -> Any:
    """The ``activation_fn`` for ``CrossEncoder.predict``: None = the model's own default."""
    import torch

    return {"default": None, "none": torch.nn.Identity(), "sigmoid": torch.nn.Sigmoid()}[name]


@dataclass
class CrossEncoderTeacher:
    params: ScoreParams
    _model: Any = field(default=None, init=False, repr=False)

    def model(self) -> Any:
        """The torch CrossEncoder, or the runner of an exported backend (negmine/encode/backends.py)."""
        if self._model is None:
            from negmine.encode.backends import load_runner, resolve_backend
            from negmine.encode.models import load_cross_encoder
            from negmine.models import check_model

            p = self.params
            check_model(p.model)
            check_classifier(p.model)
            backend = resolve_backend(p.encoder_backend, p.model, p.device, "cross")
            if backend in ("torch", "torch-fp16"):
                m = load_cross_encoder(p.model, p.device, p.max_length, fp16=backend == "torch-fp16")
                labels = m.num_labels
            else:
                m = load_runner(p.model, backend, "cross", p.max_length)
                labels = m.num_labels
            if labels != 1:
                raise InputError(f"cross-encoder '{p.model}' has {labels} output labels; a teacher needs a "
                                 "single relevance logit", "--model")
            log.info("cross-encoder backend: %s", backend)
            self._model = m
        return self._model

    def score(self, queries: Sequence[str], docs: Sequence[str], qi: np.ndarray, di: np.ndarray) -> np.ndarray:
        from negmine.progress import tqdm

        if len(qi) == 0:
            return np.empty(0, dtype=np.float32)
        model = self.model()
        from negmine.encode.backends import ExportedModel

        exported = isinstance(model, ExportedModel)
        act = self.params.activation if exported else activation_fn(self.params.activation)
        out = np.empty(len(qi), dtype=np.float32)
        with tqdm(total=len(qi), desc="cross-encoder", unit="pair", disable=None) as bar:
            for s in range(0, len(qi), PAIR_BLOCK):
                e = min(s + PAIR_BLOCK, len(qi))
                pairs = [(queries[q], docs[d]) for q, d in zip(qi[s:e], di[s:e], strict=False)]
                if exported:
                    out[s:e] = model.predict(pairs, batch_size=self.params.batch_size, activation=act)
                else:
                    out[s:e] = model.predict(pairs, batch_size=self.params.batch_size, activation_fn=act,
                                             show_progress_bar=False, convert_to_numpy=True)
                bar.update(e - s)
        return out
