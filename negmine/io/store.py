"""Artifact store: a stage's output is a directory of Parquet shards plus ``_manifest.json``.

Contract (see docs/ARCHITECTURE.md, "The artifact contract"):

* A stage writes into a *staging* directory beside its final directory
  (``RUN/.candidates.staging-<fp12>``). Every shard is written to a temporary name and renamed when complete.
* ``finish()`` writes the manifest (shard list with rows and sha256) into the staging directory, then swaps it
  into place. The final directory therefore always holds a complete artifact or does not exist: no later stage
  can ever read a half-written directory, and a directory without a manifest is never read.
* A stage killed midway leaves its staging directory; re-running with the same fingerprint resumes from the
  finished shards (``has_shard``), a different fingerprint discards them.
* ``fingerprint`` = hash(stage, schema version, input fingerprints, fingerprinted params). A stage whose final
  manifest has the same fingerprint is up to date and skipped.

A stage may write several tables: the *main* table's shards live at the directory root
(``RUN/candidates/part-00000.parquet``), other tables in sub-directories (``RUN/negatives/dropped/``).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from negmine import __version__
from negmine.errors import InputError, RuntimeFailure

log = logging.getLogger("negmine")

MANIFEST = "_manifest.json"
PENDING = "_pending.json"
SCHEMA_VERSION = 1
COMPRESSION = "zstd"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def hash_json(obj: Any) -> str:
    """sha256 of the canonical JSON form of ``obj`` (sorted keys, no whitespace)."""
    return hashlib.sha256(_canonical(obj).encode("utf-8")).hexdigest()


def _hash_file(path: str | os.PathLike, h: Any, chunk: int = 1 << 22) -> str:
    with open(path, "rb", buffering=0) as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return _hash_file(path, hashlib.sha256())


def xxh3_file(path: str | os.PathLike) -> str:
    """xxh3-128 of a file's bytes: the shard checksum verified on every read (~10 GB/s; docs/BENCHMARKS.md)."""
    import xxhash

    return _hash_file(path, xxhash.xxh3_128())


def stage_fingerprint(stage: str, params: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    return hash_json({"stage": stage, "schema_version": SCHEMA_VERSION, "params": params, "inputs": inputs})


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _jsonable(obj: Any) -> Any:
    return None if obj is None else json.loads(_canonical(obj))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_npy_atomic(path: Path, arr: Any) -> None:
    """``np.save`` through a temporary name (fsynced): the final name appears only when complete."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# columns whose values are (nearly) all distinct: Parquet's dictionary encoding would be tried and abandoned for
# them on every page (doc ids and texts: about half the write time of a select shard, for a file 3 % smaller; the
# float scores: a quarter of the rest, and the file is smaller without)
UNIQUE_COLUMNS = frozenset({"doc_id", "text", "title", "negative", "teacher_score", "retriever_score", "similarity"})


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary name; the final name appears only when complete."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    pq.write_table(table, tmp, compression=COMPRESSION,
                   use_dictionary=[c for c in table.column_names if c not in UNIQUE_COLUMNS])
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------
# reading


@dataclass
class Artifact:
    """A finished stage directory (one whose manifest exists)."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike, *, stage: str | None = None, hint: str | None = None) -> Artifact:
        path = Path(path)
        mf = path / MANIFEST
        if not mf.is_file():
            what = f"no finished {stage or 'stage'} artifact (no {MANIFEST})"
            if hint:
                what += f"; {hint}"
            raise InputError(what, path)
        try:
            manifest = json.loads(mf.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"unreadable manifest: {e}", mf) from None
        if stage is not None and manifest.get("stage") != stage:
            raise InputError(f"expected a {stage!r} artifact, found stage {manifest.get('stage')!r}", mf)
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise InputError(
                f"artifact schema version {manifest.get('schema_version')} is not {SCHEMA_VERSION}; re-run the stage",
                mf)
        return cls(path, manifest)

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def stage(self) -> str:
        return self.manifest["stage"]

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest.get("params", {})

    @property
    def stats(self) -> dict[str, Any]:
        return self.manifest.get("stats", {})

    @property
    def tables(self) -> list[str]:
        return list(self.manifest["tables"])

    def _table(self, table: str | None) -> tuple[str, dict[str, Any]]:
        tables = self.manifest["tables"]
        if table is None:
            table = self.manifest.get("main_table") or next(iter(tables))
        if table not in tables:
            raise InputError(f"artifact has no table {table!r} (has {sorted(tables)})", self.path)
        return table, tables[table]

    def has_table(self, table: str) -> bool:
        return table in self.manifest["tables"]

    def shard_paths(self, table: str | None = None) -> list[Path]:
        _, t = self._table(table)
        base = self.path / t["dir"]
        return [base / s["file"] for s in t["shards"]]

    def num_rows(self, table: str | None = None) -> int:
        _, t = self._table(table)
        return int(t["rows"])

    def iter_shards(self, table: str | None = None, columns: list[str] | None = None) -> Iterator[pa.Table]:
        for p in self.shard_paths(table):
            yield pq.read_table(p, columns=columns)

    def read(self, table: str | None = None, columns: list[str] | None = None) -> pa.Table:
        paths = self.shard_paths(table)
        parts = [pq.read_table(p, columns=columns) for p in paths]
        if len(parts) == 1:
            return parts[0]
        return pa.concat_tables(parts)

    def damaged(self) -> list[tuple[str, Path, str]]:
        """(table, shard path, what is wrong) of every shard that is missing or whose bytes no longer match the
        xxh3 checksum its manifest records (artifacts written before checksums were recorded: existence only)."""
        out = []
        for table in self.tables:
            _, t = self._table(table)
            base = self.path / t["dir"]
            for s in t["shards"]:
                p = base / s["file"]
                if not p.is_file():
                    out.append((table, p, "missing"))
                elif "xxh3" in s and xxh3_file(p) != s["xxh3"]:
                    out.append((table, p, "checksum mismatch"))
        return out

    def verify(self) -> None:
        """Raise an ``InputError`` naming the stage, the first damaged shard and the command that rebuilds it."""
        if bad := self.damaged():
            _table, path, why = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise InputError(f"damaged {self.stage} shard ({why}){more}: re-run `{rerun_command(self)}` to rebuild "
                             "it", path)


# the directory, inside RUN, of each name a stage gives its inputs in the manifest
INPUT_DIRS = {"ingest": "ingest", "candidates": "candidates", "scores": "scores", "calibration": "calibration",
              "negatives": "negatives", "select": "negatives", "relabel": "relabel"}
STAGE_ORDER = ("ingest", "retrieve", "score", "calibrate", "select", "relabel")


def rerun_command(art: Artifact) -> str:
    """The command that rebuilds ``art`` in its run directory."""
    run = art.path.parent
    if art.stage == "ingest":
        split = f" --split {art.params['split']}" if art.params.get("split") else ""
        return f"negmine ingest {art.params.get('path') or 'INPUT'}{split} --out {run}"
    if art.stage == "relabel":
        return f"negmine relabel {run} --config FILE"
    return f"negmine {art.stage} {run}"


def _input_path(out_dir: Path, params: Mapping[str, Any], name: str) -> Path | None:
    """Where, in the run directory of ``out_dir``, the input ``name`` of an artifact with ``params`` lives (None:
    an input that is not an artifact of this run)."""
    d = INPUT_DIRS.get(name)
    if d is None or (name == "calibration" and str(params.get("calibration", "auto")).lower() != "auto"):
        return None  # a calibration applied from another run's PATH
    return out_dir.parent / d


def _upstream(art: Artifact, name: str) -> Artifact | None:
    """The artifact now in ``art``'s run directory under the input ``name`` (None: not there, or not from it)."""
    path = _input_path(art.path, art.params, name)
    if path is None or path == art.path or not (path / MANIFEST).is_file():
        return None
    try:
        return Artifact.open(path)
    except InputError:
        return None


def stale_inputs(*arts: Artifact) -> list[tuple[Artifact, str]]:
    """(artifact, input name) of every artifact reachable from ``arts`` whose manifest names an input
    fingerprint that differs from the artifact now in the run directory, most upstream stage first."""
    stale: list[tuple[Artifact, str]] = []
    seen: set[Path] = set()
    todo = list(arts)
    while todo:
        art = todo.pop(0)
        if art.path in seen:
            continue
        seen.add(art.path)
        for name, fp in (art.manifest.get("inputs") or {}).items():
            up = _upstream(art, name)
            if up is None:
                continue
            if up.fingerprint != fp:
                stale.append((art, name))
            todo.append(up)
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    return sorted(stale, key=lambda x: rank.get(x[0].stage, len(rank)))


def check_inputs(*arts: Artifact) -> None:
    """What a stage calls on its input artifacts before reading them: refuse (``InputError``, exit 2) when one of
    them, or an artifact they were built from, was built from an older version of its own inputs (the lineage
    check), or when one of their shards is missing or damaged."""
    if stale := stale_inputs(*arts):
        art, name = stale[0]
        raise InputError(f"was built from an older {name}: re-run `{rerun_command(art)}` and the stages after it "
                         "(or `negmine mine`)", art.path)
    for art in arts:
        art.verify()


def verify_run(run_dir: str | os.PathLike) -> list[tuple[Path, str | None]]:
    """Check every artifact of a run directory: each shard against its recorded checksum, each manifest's inputs
    against the artifacts now in the run (lineage). One (artifact path, problem or None when intact) per artifact,
    in stage order; a problem names the shard or the stale input and the command that repairs it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("not a run directory", run_dir)
    arts: list[Artifact | InputError] = []
    for d in sorted(p for p in run_dir.iterdir() if (p / MANIFEST).is_file()):
        try:
            arts.append(Artifact.open(d))
        except InputError as e:  # an unreadable manifest
            arts.append(e)
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    out: list[tuple[Path, str | None]] = []
    for art in sorted(arts, key=lambda a: (rank.get(a.stage, len(rank)) if isinstance(a, Artifact) else -1,
                                           str(getattr(a, "path", "")))):
        if isinstance(art, InputError):
            out.append((Path(art.where or run_dir), art.message))
            continue
        if bad := art.damaged():
            _t, path, why = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            out.append((art.path, f"damaged shard {path.relative_to(art.path)} ({why}){more}: re-run "
                                  f"`{rerun_command(art)}` to rebuild it"))
        elif stale := [name for a, name in stale_inputs(art) if a.path == art.path]:
            out.append((art.path, f"built from an older {stale[0]}: re-run `{rerun_command(art)}` (or `negmine "
                                  "mine`)"))
        else:
            out.append((art.path, None))
    current = {a.stage: a.fingerprint for a in arts if isinstance(a, Artifact)}
    for sidecar in sorted(run_dir.glob("export/*" + EXPORT_SIDECAR)):
        out.append(_verify_export(run_dir, sidecar, current))
    return out


EXPORT_SIDECAR = ".negmine.json"


def _verify_export(run_dir: Path, sidecar: Path, current: Mapping[str, str]) -> tuple[Path, str | None]:
    """An exported file against its sidecar: its sha256, and the select / ingest / relabel it was made from."""
    name = sidecar.name[: -len(EXPORT_SIDECAR)]
    path = sidecar.with_name(name[1:] if name.startswith(".") else name)  # .FILE.negmine.json is FILE's sidecar
    fix = f"re-run `negmine export {run_dir} --out {path}`"
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        return sidecar, f"unreadable export sidecar ({e}): {fix}"
    if not path.is_file():
        return path, f"missing exported file: {fix}"
    if info.get("sha256") != sha256_file(path):
        return path, f"damaged exported file (checksum mismatch): {fix}"
    for name, fp in (info.get("inputs") or {}).items():
        now = current.get(name)
        if now is not None and now != fp:
            return path, f"built from an older {name}: {fix}"
    return path, None


# ----------------------------------------------------------------------------------------------------------------
# locking

LOCK_WAIT_ENV = "NEGMINE_LOCK_WAIT"  # seconds a stage waits for another process's lock before giving up [0]
_HELD: dict[str, int] = {}  # lock file -> descriptor held by this process
_ACTIVE: dict[Path, StageWriter] = {}  # staging directory -> a writer that began and has not finished


@atexit.register
def _abandon_active() -> None:
    """At exit after a stage failed (an exception, not a kill): a staging directory with no finished shard is
    removed (nothing to resume), one with finished shards is kept for the re-run to resume from."""
    for staging, w in list(_ACTIVE.items()):
        if not any(w._existing_shards(t) for t in w.schemas if w._table_dir(t, staging).is_dir()):
            shutil.rmtree(staging, ignore_errors=True)
        release_lock(w.lock_path)
    _ACTIVE.clear()


def acquire_lock(path: Path, stage: str) -> None:
    """Take the advisory lock ``path`` (fcntl.flock) for ``stage``, or raise an ``InputError`` naming the pid of
    the process that holds it (after waiting ``$NEGMINE_LOCK_WAIT`` seconds). A lock this process still holds (a
    stage that failed before releasing it) is taken over."""
    import fcntl

    release_lock(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        wait = float(os.environ.get(LOCK_WAIT_ENV) or 0)
    except ValueError:
        wait = 0.0
    deadline = time.monotonic() + max(0.0, wait)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            # the holder removed the file as it released it: lock the file that is there now
            os.close(fd)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                try:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                finally:
                    os.close(fd)
                raise InputError(f"another process (pid {holder}) is running `negmine {stage}` on this run; wait for "
                                 f"it to finish (or set {LOCK_WAIT_ENV}=SECONDS to wait for it)",
                                 path.parent) from None
            time.sleep(0.2)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    _HELD[str(path)] = fd


def release_lock(path: Path) -> None:
    fd = _HELD.pop(str(path), None)
    if fd is not None:
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()  # no lock file left behind (a waiting process notices and locks afresh)
        except OSError:
            pass
        os.close(fd)  # closing the descriptor releases the flock


# ----------------------------------------------------------------------------------------------------------------
# writing


@dataclass
class StageWriter:
    """Writes one stage's artifact with atomic shards, resume and skip-if-up-to-date.

    Usage::

        w = StageWriter(run / "candidates", "retrieve", params, {"ingest": ingest.fingerprint},
                        schemas={"candidates": CANDIDATES}, main_table="candidates")
        if (done := w.up_to_date()) is not None:
            return done                                     # skipped
        w.begin()
        for i, shard in enumerate(query_shards):
            if w.has_shard("candidates", i):
                continue                                    # resumed
            w.write_shard("candidates", i, compute(shard))
        art = w.finish(stats={...})
    """

    out_dir: Path
    stage: str
    params: Mapping[str, Any]
    inputs: Mapping[str, str]
    schemas: Mapping[str, pa.Schema]
    main_table: str | None = None
    fingerprint_params: Mapping[str, Any] | None = None  # defaults to params
    # settings that do not change the result but do change the shard layout (e.g. rows per shard): finished
    # shards of a killed run are resumed only when these match, otherwise the staging directory starts afresh
    resume_params: Mapping[str, Any] | None = None
    fingerprint: str = field(init=False)
    staging: Path = field(init=False)
    _started: float = field(init=False, default=0.0)
    _started_iso: str = field(init=False, default="")
    _resumed: set[tuple[str, int]] = field(init=False, default_factory=set)
    _begun: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        fp_params = self.params if self.fingerprint_params is None else self.fingerprint_params
        self.fingerprint = stage_fingerprint(self.stage, fp_params, self.inputs)
        self.staging = self.out_dir.parent / f".{self.out_dir.name}.staging-{self.fingerprint[:12]}"

    # -- skip / resume ------------------------------------------------------------------------------------------
    def up_to_date(self) -> Artifact | None:
        """The existing artifact if its fingerprint matches (the stage can be skipped), else None."""
        self._recover_publish()
        mf = self.out_dir / MANIFEST
        if not mf.is_file():
            return None
        try:
            art = Artifact.open(self.out_dir)
        except InputError:
            return None
        if art.manifest.get("fingerprint") != self.fingerprint:
            return None
        if bad := art.damaged():
            log.warning("%s: %d damaged shard(s) (%s: %s), rebuilding them", self.stage, len(bad), bad[0][1],
                        bad[0][2])
            return None
        return art

    def _recover_publish(self) -> None:
        """Finish what a kill interrupted while publishing: a staging directory of this fingerprint that holds its
        manifest is a finished artifact (swapped into place now, not discarded), and ``.NAME.trash-*`` (the old
        artifact, moved aside) is removed."""
        parent = self.out_dir.parent
        if (self.staging / MANIFEST).is_file():
            try:
                acquire_lock(self.lock_path, self.stage)
            except InputError:
                return  # another process is publishing it
            try:
                if (self.staging / MANIFEST).is_file():
                    art = Artifact.open(self.staging)
                    if art.fingerprint == self.fingerprint and not art.damaged():
                        self._swap_into_place()
                        log.info("%s: published the finished artifact an interrupted run left", self.stage)
            except InputError:
                pass
            finally:
                release_lock(self.lock_path)
        for trash in parent.glob(f".{self.out_dir.name}.trash-*"):
            shutil.rmtree(trash, ignore_errors=True)

    def _table_dir(self, table: str, root: Path) -> Path:
        if table not in self.schemas:
            raise ValueError(f"stage {self.stage} declared no table {table!r}")
        return root if table == self.main_table else root / table

    @property
    def lock_path(self) -> Path:
        return self.out_dir.parent / f".{self.out_dir.name}.lock"

    def begin(self) -> None:
        """Take the run's lock for this stage, then create (or resume) the staging directory; discard stale staging
        dirs of other fingerprints."""
        self._started = time.time()
        self._started_iso = _now()
        parent = self.out_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        acquire_lock(self.lock_path, self.stage)
        prefix = f".{self.out_dir.name}.staging-"
        for p in parent.glob(prefix + "*"):
            if p != self.staging:
                shutil.rmtree(p, ignore_errors=True)
        pending = self.staging / PENDING
        if self.staging.is_dir():
            try:
                info = json.loads(pending.read_text(encoding="utf-8"))
                ok = (info.get("fingerprint") == self.fingerprint
                      and info.get("resume_params") == _jsonable(self.resume_params))
            except (OSError, json.JSONDecodeError):
                ok = False
            if not ok:
                shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        for t in self.schemas:
            self._table_dir(t, self.staging).mkdir(parents=True, exist_ok=True)
            # remove temporaries left by a kill
            for tmp in self._table_dir(t, self.staging).glob(".*.tmp-*"):
                tmp.unlink(missing_ok=True)
        if not pending.is_file():
            write_json_atomic(pending, {"stage": self.stage, "fingerprint": self.fingerprint,
                                        "resume_params": _jsonable(self.resume_params),
                                        "started": self._started_iso})
        self._keep_intact_shards()
        done = [(t, i) for t in self.schemas for i in self._existing_shards(t)]
        self._resumed = set(done)
        self._begun = True
        _ACTIVE[self.staging] = self
        if done:
            log.info("%s: resuming, %d finished shard(s) kept", self.stage, len(done))

    def _keep_intact_shards(self) -> None:
        """When the published artifact has this fingerprint but damaged shards (``up_to_date`` said no), link its
        intact shards into the staging directory, so that only the damaged ones are computed again."""
        try:
            art = Artifact.open(self.out_dir)
        except InputError:
            return
        if (art.manifest.get("fingerprint") != self.fingerprint
                or art.manifest.get("resume_params") != _jsonable(self.resume_params)):
            return
        bad = {p for _t, p, _why in art.damaged()}
        for t in art.tables:
            if t not in self.schemas:
                continue
            for src in art.shard_paths(t):
                dst = self._table_dir(t, self.staging) / src.name
                if src in bad or dst.exists():
                    continue
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)

    def _existing_shards(self, table: str) -> list[int]:
        d = self._table_dir(table, self.staging)
        out = []
        for p in d.glob("part-*.parquet"):
            try:
                out.append(int(p.stem.split("-")[1]))
            except (IndexError, ValueError):
                continue
        return sorted(out)

    @property
    def begun(self) -> bool:
        return self._begun

    def has_shards(self, index: int, tables: Sequence[str] | None = None) -> bool:
        """Whether shard ``index`` of every table (or of ``tables``) is finished in the staging directory."""
        return all(self.has_shard(t, index) for t in (self.schemas if tables is None else tables))

    def has_shard(self, table: str, index: int) -> bool:
        return (self._table_dir(table, self.staging) / shard_name(index)).is_file()

    @property
    def resumed_shards(self) -> int:
        return len(self._resumed)

    def write_shard(self, table: str, index: int, data: pa.Table) -> None:
        schema = self.schemas[table]
        if data.schema != schema:
            data = data.select(schema.names).cast(schema)
        write_parquet_atomic(data, self._table_dir(table, self.staging) / shard_name(index))

    def read_shard(self, table: str, index: int) -> pa.Table:
        """Read back a finished shard (e.g. to rebuild in-memory state when resuming)."""
        return pq.read_table(self._table_dir(table, self.staging) / shard_name(index))

    # -- publish ------------------------------------------------------------------------------------------------
    def finish(self, stats: Mapping[str, Any] | None = None, timings: Mapping[str, float] | None = None,
               extra: Mapping[str, Any] | None = None) -> Artifact:
        tables: dict[str, Any] = {}
        total = 0
        for t, schema in self.schemas.items():
            d = self._table_dir(t, self.staging)
            idx = self._existing_shards(t)
            if not idx:
                write_parquet_atomic(schema.empty_table(), d / shard_name(0))
                idx = [0]
            shards = []
            rows_t = 0
            for i in idx:
                p = d / shard_name(i)
                rows = pq.ParquetFile(p).metadata.num_rows
                shards.append({"file": p.name, "rows": rows, "sha256": sha256_file(p), "xxh3": xxh3_file(p)})
                rows_t += rows
            rel = "." if t == self.main_table else t
            tables[t] = {"dir": rel, "rows": rows_t, "shards": shards,
                         "columns": {f.name: str(f.type) for f in schema}}
            total += rows_t
        finished = time.time()
        manifest = {
            "stage": self.stage,
            "schema_version": SCHEMA_VERSION,
            "negmine_version": __version__,
            "fingerprint": self.fingerprint,
            "inputs": dict(self.inputs),
            "params": dict(self.params),
            "main_table": self.main_table,
            "tables": tables,
            "rows": total,
            "resumed_shards": len(self._resumed),
            "resume_params": _jsonable(self.resume_params),
            "started": self._started_iso or _now(),
            "finished": _now(),
            "seconds": round(finished - self._started, 3) if self._started else None,
            "timings": dict(timings or {}),
            "stats": dict(stats or {}),
        }
        if extra:
            manifest.update(extra)
        self._check_inputs_unchanged()
        (self.staging / PENDING).unlink(missing_ok=True)
        write_json_atomic(self.staging / MANIFEST, manifest)
        _fsync_dir(self.staging)
        self._swap_into_place()
        _ACTIVE.pop(self.staging, None)
        release_lock(self.lock_path)
        return Artifact(self.out_dir, manifest)

    def _check_inputs_unchanged(self) -> None:
        """Before publishing: every input artifact of this run directory still has the fingerprint the stage read.
        Another process that re-ran an upstream stage meanwhile (each stage locks only its own output) would
        otherwise leave an artifact built from a mix of old and new inputs under a manifest naming the old ones."""
        for name, fp in self.inputs.items():
            path = _input_path(self.out_dir, self.params, name)
            if path is None:
                continue
            try:
                now = json.loads((path / MANIFEST).read_text()).get("fingerprint")
            except (OSError, ValueError):
                now = None
            if now != fp:
                self.discard()
                raise RuntimeFailure(
                    f"{path} changed while {self.stage} was running (another process re-ran that stage); nothing "
                    f"published: re-run `negmine {self.stage} {self.out_dir.parent}`")

    def _swap_into_place(self) -> None:
        trash = None
        if self.out_dir.exists():
            trash = self.out_dir.parent / f".{self.out_dir.name}.trash-{uuid.uuid4().hex[:8]}"
            os.replace(self.out_dir, trash)
        os.replace(self.staging, self.out_dir)
        _fsync_dir(self.out_dir.parent)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def discard(self) -> None:
        """Remove the staging directory (used when the input turned out to be bad: nothing to resume)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        _ACTIVE.pop(self.staging, None)
        release_lock(self.lock_path)


# ----------------------------------------------------------------------------------------------------------------
# the shard loop: one function for every stage (docs/ARCHITECTURE.md, "The shard loop and the engine seam")

Tables = Mapping[str, pa.Table]
# what a stage is told about each shard, in shard order: (index, unit, its tables, resumed). ``tables`` is None
# for a resumed shard unless run_shards was asked to read them back (``read_resumed``)
OnShard = Callable[[int, Any, "Tables | None", bool], None]


def _shard_plan(writer: StageWriter, units: Iterable[tuple[int, Any]],
                tables: Sequence[str] | None) -> Iterator[tuple[int, Any, bool]]:
    for index, unit in units:
        yield index, unit, writer.has_shards(index, tables)


def _finished(writer: StageWriter, index: int, unit: Any, data: Tables | None, resumed: bool,
              tables: Sequence[str] | None, read_resumed: bool, on_shard: OnShard | None) -> None:
    if not resumed:
        assert data is not None
        for t, table in data.items():
            writer.write_shard(t, index, table)
    elif read_resumed:
        data = {t: writer.read_shard(t, index) for t in (writer.schemas if tables is None else tables)}
    if on_shard is not None:
        on_shard(index, unit, data, resumed)


def run_shards(writer: StageWriter, units: Iterable[tuple[int, Any]], compute: Callable[[int, Any], Tables], *,
               tables: Sequence[str] | None = None, on_shard: OnShard | None = None, read_resumed: bool = False,
               executor: Any = None) -> None:
    """The shard loop of every stage: begin the writer (unless the stage already did), then for each
    ``(index, unit)`` in order either keep the shard a killed run finished (resume) or ``compute`` its tables and
    write them atomically; ``on_shard`` hears about every shard in order (stats, progress lines).

    ``compute`` runs through ``executor`` (default: the current engine, :func:`negmine.engine.current`), whose
    ``map_shards(compute, pending)`` yields ``(index, unit, tables)`` in the order given. The local engine computes
    in this process; an engine that computes elsewhere changes only its executor, never a stage. An ``InputError``
    discards the staging directory (bad input: nothing worth resuming); any other failure keeps the finished
    shards for the re-run."""
    if executor is None:
        from negmine.engine import current

        executor = current()
    if not writer.begun:
        writer.begin()
    plan = _shard_plan(writer, units, tables)
    try:
        for index, unit, data, resumed in executor.map_shards(compute, plan):
            _finished(writer, index, unit, data, resumed, tables, read_resumed, on_shard)
    except InputError:
        writer.discard()
        raise


async def arun_shards(writer: StageWriter, units: Iterable[tuple[int, Any]],
                      compute: Callable[[int, Any], Awaitable[Tables]], *, tables: Sequence[str] | None = None,
                      on_shard: OnShard | None = None, read_resumed: bool = False) -> None:
    """:func:`run_shards` for a stage whose shards are computed by a coroutine on the driver (the judge: its
    requests are already concurrent). The caller decides what a failure discards."""
    if not writer.begun:
        writer.begin()
    for index, unit, resumed in _shard_plan(writer, units, tables):
        data = None if resumed else await compute(index, unit)
        _finished(writer, index, unit, data, resumed, tables, read_resumed, on_shard)


@dataclass
class StageResult:
    """What a stage function returns: its artifact and whether it was skipped as up to date."""

    artifact: Artifact
    skipped: bool
    seconds: float = 0.0


def input_fingerprint(paths: list[str | os.PathLike]) -> str:
    """Content fingerprint of input files, in order (xxh3-128 of each file's bytes, ~10 GB/s, hashed together
    with sha256). Paths and modification times do not count: the same bytes anywhere give the same fingerprint."""
    import xxhash

    h = hashlib.sha256()
    for p in paths:
        h.update(_hash_file(p, xxhash.xxh3_128()).encode())
    return h.hexdigest()
