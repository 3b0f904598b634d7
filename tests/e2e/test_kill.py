"""`negmine ingest` killed with SIGKILL at several points of a multi-shard run, then re-run, gives artifacts
identical to an uninterrupted run; RUN/ingest never exists without a complete manifest."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from negmine.io.store import MANIFEST, Artifact

ROOT = Path(__file__).resolve().parents[2]
N_DOCS, SHARD_ROWS = 30_000, 2_000
KILL_AFTER = (1, 3, 6)  # corpus shards finished in the staging directory before each SIGKILL


def make_input(d: Path) -> Path:
    rng = random.Random(7)
    words = [f"w{i}" for i in range(5000)]
    (d / "qrels").mkdir(parents=True)
    with open(d / "corpus.jsonl", "w") as f:
        for i in range(N_DOCS):
            f.write(json.dumps({"_id": f"doc{i}", "title": f"title {i}",
                                "text": " ".join(rng.choices(words, k=20))}) + "\n")
    with open(d / "queries.jsonl", "w") as f:
        for q in range(500):
            f.write(json.dumps({"_id": f"q{q}", "text": " ".join(rng.choices(words, k=6))}) + "\n")
    with open(d / "qrels" / "train.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in range(500):
            f.write(f"q{q}\tdoc{rng.randrange(N_DOCS)}\t1\n")
    return d


def check_published(run: Path) -> None:
    """If RUN/ingest exists, it holds a complete manifest naming shards that all exist."""
    out = run / "ingest"
    if not out.exists():
        return
    m = json.loads((out / MANIFEST).read_text())  # FileNotFoundError / JSONDecodeError fail the test
    for t in m["tables"].values():
        for s in t["shards"]:
            assert (out / t["dir"] / s["file"]).is_file()


def staged_corpus_shards(run: Path) -> int:
    n = 0
    for staging in run.glob(".ingest.staging-*"):
        try:
            n += sum(1 for e in os.scandir(staging / "corpus") if e.name.startswith("part-"))
        except FileNotFoundError:
            pass
    return n


def ingest(src: Path, run: Path, kill_after: int | None) -> int | None:
    """Run ingest in a child; SIGKILL it once ``kill_after`` corpus shards are staged. Polls every ~2 ms and
    checks the published directory at every poll. Returns the number of staged shards at the kill, or None when
    the child finished before it could be killed (possible on a machine too loaded to poll in time)."""
    cmd = [sys.executable, "-m", "negmine", "-q", "ingest", str(src), "--out", str(run),
           "--shard-rows", str(SHARD_ROWS)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    try:
        while proc.poll() is None and time.time() < deadline:
            check_published(run)
            if kill_after is not None and staged_corpus_shards(run) >= kill_after:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                check_published(run)
                return staged_corpus_shards(run)
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    assert proc.wait() == 0, err
    check_published(run)
    return None


def killed_chain(src: Path, run: Path) -> tuple[list[int], int] | None:
    """Kill successive runs after KILL_AFTER staged shards (each resuming the previous one's shards), then let
    the last run complete. Returns (staged shard counts at the kills, inode of the first corpus shard)."""
    staged, first_inode = [], None
    for k in KILL_AFTER:
        n = ingest(src, run, kill_after=k)
        if n is None:
            return None
        staged.append(n)
        assert not (run / "ingest").exists()
        if first_inode is None:
            first_inode = os.stat(next(run.glob(".ingest.staging-*")) / "corpus" / "part-00000.parquet").st_ino
    assert ingest(src, run, kill_after=None) is None  # the final run completes
    return staged, first_inode


def hashes(run: Path) -> dict[str, list[str]]:
    m = Artifact.open(run / "ingest", stage="ingest").manifest
    return {t: [s["sha256"] for s in v["shards"]] for t, v in m["tables"].items()}


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, cli):
    src = make_input(tmp_path / "in")
    ref = tmp_path / "ref"
    code, _, err = cli("ingest", src, "--out", ref, "--shard-rows", SHARD_ROWS)
    assert code == 0, err
    assert len(hashes(ref)["corpus"]) == N_DOCS // SHARD_ROWS

    for attempt in range(3):  # start over in a new run dir if a child outran the poller
        run = tmp_path / f"run{attempt}"
        chain = killed_chain(src, run)
        if chain is not None:
            break
    assert chain is not None, "the child always finished before it could be killed"
    staged, first_inode = chain
    assert all(s >= k for s, k in zip(staged, KILL_AFTER, strict=True))

    art = Artifact.open(run / "ingest", stage="ingest")
    assert art.manifest["resumed_shards"] >= KILL_AFTER[-1]
    assert os.stat(run / "ingest" / "corpus" / "part-00000.parquet").st_ino == first_inode  # kept, never rewritten
    assert hashes(run) == hashes(ref)
    ref_art = Artifact.open(ref / "ingest")
    for t in ("corpus", "queries", "positives", "given_negatives"):
        assert art.read(t).equals(ref_art.read(t))
    assert sorted(p.name for p in run.iterdir()) == ["ingest"]  # no staging or trash left
