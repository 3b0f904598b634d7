"""Shared fixtures. Real data comes from ../shared/data (subsets keep model time small); embeddings are cached
in one session-wide cache so a text is embedded at most once per test session (and across local runs)."""

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# tests are grouped in unit/ (pure functions, single stages on hand-made data) and e2e/ (real data, models, judge
# servers, subprocesses, pipelines); both groups build their hand-made runs with the same builders
# (test_select_helpers, test_ingest_formats, test_eval, ...), so both directories are importable
sys.path[:0] = [str(Path(__file__).resolve().parent / "unit"), str(Path(__file__).resolve().parent / "e2e")]
# the real datasets (SciFact, Cranfield in BEIR layout): ../shared/data beside the checkout, or NEGMINE_SHARED_DATA
SHARED_DATA = Path(os.environ.get("NEGMINE_SHARED_DATA") or ROOT.parent / "shared" / "data")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one embedding / index cache for the whole session (kept between local runs, fresh in CI)
os.environ.setdefault("NEGMINE_CACHE_DIR", str(ROOT / ".cache" / "test"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (set NEGMINE_SHARED_DATA to the BEIR datasets)")
    return SHARED_DATA


def _read_jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _make_beir_subset(src: Path, dst: Path, split: str, n_queries: int, n_docs: int) -> Path:
    """A deterministic BEIR subset: the first ``n_queries`` queries (qrels order) with all their relevant docs,
    filled with every k-th other document up to ``n_docs`` documents."""
    qrels = [line.split("\t") for line in (src / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]]
    qids: list[str] = []
    for q, _d, _s in qrels:
        if q not in qids:
            qids.append(q)
    qids = qids[:n_queries]
    keep_q = set(qids)
    rows = [r for r in qrels if r[0] in keep_q]
    rel_docs = {d for _q, d, _s in rows}
    corpus = _read_jsonl(src / "corpus.jsonl")
    others = [d for d in corpus if d["_id"] not in rel_docs]
    n_fill = max(0, n_docs - len(rel_docs))
    step = max(1, len(others) // max(1, n_fill))
    fill = {d["_id"] for d in others[::step][:n_fill]}
    keep_d = rel_docs | fill
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "qrels").mkdir(exist_ok=True)
    with open(dst / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d in corpus:
            if d["_id"] in keep_d:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(dst / "queries.jsonl", "w", encoding="utf-8") as f:
        for q in _read_jsonl(src / "queries.jsonl"):
            if q["_id"] in keep_q:
                f.write(json.dumps(q, ensure_ascii=False) + "\n")
    with open(dst / "qrels" / f"{split}.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
    return dst


@pytest.fixture(scope="session")
def make_beir_subset():
    """``make_beir_subset(src, dst, split, n_queries, n_docs)``: a deterministic BEIR subset (see above)."""
    return _make_beir_subset


@pytest.fixture(scope="session")
def cranfield_small(shared_data, tmp_path_factory) -> Path:
    """Cranfield subset in BEIR layout: 50 queries (all their graded relevant docs), 500 docs, split 'test'."""
    return _make_beir_subset(shared_data / "cranfield", tmp_path_factory.mktemp("cranfield_small"), "test", 50, 500)


@pytest.fixture(scope="session")
def scifact_small(shared_data, tmp_path_factory) -> Path:
    """SciFact subset in BEIR layout: 60 train queries with their positives, 300 docs, split 'train'."""
    return _make_beir_subset(shared_data / "scifact", tmp_path_factory.mktemp("scifact_small"), "train", 60, 300)


@pytest.fixture(scope="session")
def minilm() -> str:
    """The packaged offline default model (a path)."""
    from negmine.models import resolve_model

    return resolve_model("all-MiniLM-L6-v2")


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit_code, stdout, stderr)."""
    from negmine.cli import run

    def _run(*args):
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture
def judge_servers():
    """Start local judge servers (negmine.testing.judge_server) that answer from ``truth``: ``start(truth, **state)``
    returns a running server (``.base_url``, ``.state``); every server started is closed after the test."""
    from negmine.testing.judge_server import JudgeServer, ServerState

    servers = []

    def start(truth, **kw):
        kw.setdefault("retry_after", 0.05)
        srv = JudgeServer(ServerState(truth, **kw)).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.close()
