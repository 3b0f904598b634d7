"""Loading encoder models (bi-encoders and cross-encoders) onto a device: the only place that builds them.

Names resolve through :mod:`negmine.models` (the packaged offline default, local directories, hub ids when online); a
model that cannot be found is a one-line input error naming the flag.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from negmine.models import _check_exists, _not_found

log = logging.getLogger("negmine")


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"



@functools.lru_cache(maxsize=4)
def load_bi_encoder(name: str, device: str | None = None, max_seq_length: int | None = None,
                    flag: str = "--model", fp16: bool = False) -> Any:
    resolved = _check_exists(name, flag)
    from sentence_transformers import SentenceTransformer

    dev = pick_device(device)
    try:
        model = SentenceTransformer(resolved, device=dev)
    except (OSError, ValueError) as e:
        raise _not_found(name, flag, e) from None
    if max_seq_length:
        model.max_seq_length = max_seq_length
    if fp16:
        model.half()
    log.info("model: %s on %s%s", name, dev, " (fp16)" if fp16 else "")
    return model


@functools.lru_cache(maxsize=4)
def load_cross_encoder(name: str, device: str | None = None, max_length: int | None = None,
                       flag: str = "--model", fp16: bool = False) -> Any:
    resolved = _check_exists(name, flag)
    from sentence_transformers import CrossEncoder

    dev = pick_device(device)
    try:
        kw: dict[str, Any] = {"device": dev}
        if max_length:
            kw["max_length"] = max_length
        model = CrossEncoder(resolved, **kw)
    except (OSError, ValueError) as e:
        raise _not_found(name, flag, e) from None
    if fp16:
        model.model.half()
    log.info("cross-encoder: %s on %s%s", name, dev, " (fp16)" if fp16 else "")
    return model
