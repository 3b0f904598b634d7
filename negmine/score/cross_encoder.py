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


def num_labels(name: str) -> int | None:
    """The output labels a local model directory's config declares (None: a hub id, known only once loaded)."""
    from negmine.models import resolve_model

    cfg = Path(resolve_model(name)) / "config.json"
    try:
        conf = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if conf.get("num_labels") is not None:
        return int(conf["num_labels"])
    return len(conf["id2label"]) if conf.get("id2label") else 2  # transformers' default head has two labels


def load_teacher_model(name: str, device: str | None, max_length: int | None, backend: str = "torch") -> Any:
    """The cross-encoder ``name`` on ``device`` with ``backend`` (a torch ``CrossEncoder``, or the runner of an
    exported backend, :mod:`negmine.encode.backends`), checked to be a single-logit classifier (InputError if not)."""
    from negmine.encode.backends import load_runner, resolve_backend
    from negmine.encode.models import load_cross_encoder

    check_classifier(name)
    concrete = resolve_backend(backend, name, device, "cross")
    if concrete in ("torch", "torch-fp16"):
        m = load_cross_encoder(name, device, max_length, fp16=concrete == "torch-fp16")
    else:
        m = load_runner(name, concrete, "cross", max_length)
    if m.num_labels != 1:
        raise InputError(f"cross-encoder '{name}' has {m.num_labels} output labels; a teacher needs a single "
                         "relevance logit", "--model")
    log.info("cross-encoder backend: %s", concrete)
    return m


def predict_pairs(pairs: Sequence[tuple[str, str]], *, model: str, device: str | None, max_length: int | None,
                  batch_size: int, activation: str, backend: str = "torch") -> np.ndarray:
    """Scores of ``(query, document)`` pairs in this process (the local engine; a Ray worker calls it on its
    batches)."""
    from negmine.encode.backends import ExportedModel
    from negmine.progress import tqdm

    out = np.empty(len(pairs), dtype=np.float32)
    if not len(pairs):
        return out
    m = load_teacher_model(model, device, max_length, backend)
    exported = isinstance(m, ExportedModel)
    act = activation if exported else activation_fn(activation)
    with tqdm(total=len(pairs), desc="cross-encoder", unit="pair", disable=None) as bar:
        for s in range(0, len(pairs), PAIR_BLOCK):
            e = min(s + PAIR_BLOCK, len(pairs))
            if exported:
                out[s:e] = m.predict(list(pairs[s:e]), batch_size=batch_size, activation=act)
            else:
                out[s:e] = m.predict(list(pairs[s:e]), batch_size=batch_size, activation_fn=act,
                                     show_progress_bar=False, convert_to_numpy=True)
            bar.update(e - s)
    return out


@dataclass
class CrossEncoderTeacher:
    params: ScoreParams
    _checked: bool = field(default=False, init=False, repr=False)

    def check(self) -> None:
        """Refuse a model that is not a single-logit classifier before any pair is scored: from its config when
        it is a local directory (no load on the driver), else by loading it here."""
        if self._checked:
            return
        p = self.params
        check_classifier(p.model)
        n = num_labels(p.model)
        if n is None:
            load_teacher_model(p.model, p.device, p.max_length, p.encoder_backend)
        elif n != 1:
            raise InputError(f"cross-encoder '{p.model}' has {n} output labels; a teacher needs a single "
                             "relevance logit", "--model")
        self._checked = True

    def score(self, queries: Sequence[str], docs: Sequence[str], qi: np.ndarray, di: np.ndarray) -> np.ndarray:
        from negmine import engine

        if len(qi) == 0:
            return np.empty(0, dtype=np.float32)
        self.check()
        p = self.params
        pairs = [(queries[q], docs[d]) for q, d in zip(qi, di, strict=False)]
        return engine.cross_encode(pairs, model=p.model, device=p.device, max_length=p.max_length,
                                   batch_size=p.batch_size, activation=p.activation, backend=p.encoder_backend)
