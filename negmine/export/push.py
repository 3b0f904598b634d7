"""`negmine push`: upload an export directory (its data files and dataset card) to a Hugging Face dataset
repository through ``huggingface_hub`` (``HfApi.create_repo`` + ``upload_folder``).

The token is huggingface_hub's (``HF_TOKEN`` or ``hf auth login``); ``HF_ENDPOINT`` (or ``endpoint``) points at
another Hub, e.g. a local stand-in in tests. Hidden files (the sidecars, which hold local paths) stay local.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from negmine.errors import InputError, RuntimeFailure
from negmine.export import card

log = logging.getLogger("negmine")


@dataclass
class PushResult:
    repo_id: str
    files: list[str]
    url: str


def export_dir(path: Path) -> Path:
    """The export directory of a run, an export directory, or an exported file's directory."""
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise InputError("not found", path)
    if (path / "export").is_dir() and not card.read_sidecars(path):
        path = path / "export"
    if not card.read_sidecars(path):
        raise InputError("no negmine export here (run `negmine export` first)", path)
    return path


def push(path: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
         message: str | None = None, endpoint: str | None = None, token: str | None = None) -> PushResult:
    directory = export_dir(Path(path))
    files = sorted({i["file"] for i in card.read_sidecars(directory)})
    readme = directory / "README.md"
    if readme.is_file() and card.CARD_MARKER in readme.read_text(encoding="utf-8", errors="replace"):
        files.append("README.md")
    else:
        log.warning("push: %s has no negmine dataset card: the repository gets no README.md from negmine", directory)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HFValidationError

    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(directory), repo_id=repo_id, repo_type="dataset",
                                 allow_patterns=files, revision=revision,
                                 commit_message=message or f"negmine export: {', '.join(files)}")
    except HFValidationError as e:  # a malformed repo id
        raise InputError(str(e).splitlines()[0], "--repo-id") from None
    except Exception as e:  # HTTP and connection errors: one line
        first = (str(e).splitlines() or [""])[0]
        raise RuntimeFailure(f"push to {repo_id} failed: {type(e).__name__}: {first}") from None
    url = str(getattr(info, "commit_url", "") or info)
    log.info("push: %d files → %s", len(files), url)
    return PushResult(repo_id, files, url)
