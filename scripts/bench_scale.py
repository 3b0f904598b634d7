"""Scale benchmark: `negmine mine` stage by stage on a synthetic corpus of 1M documents and 100k queries.

The corpus is bench_ingest's generator (60 Zipf words a document, fixed seed); each query is 6 words drawn from
one document, its planted positive (qrels: that one document). Data, runs and the fast encoder live under
``.cache/bench_scale/`` (gitignored).

Each stage of `negmine mine` (ingest → retrieve → score → select → export, with the config this script writes) runs
as its own command in a dedicated child process, so wall time, CPU time (user+sys), peak RSS
(``getrusage(RUSAGE_CHILDREN)`` of a parent that runs only that command) and disk written (``ru_oublock`` × 512, and
the size of the stage's output directory and of the caches it added to) are that stage's. Each stage is compared
with its own bound on this machine, measured by the same script:

* ingest (``--bounds ingest``): parse the JSON lines with orjson, build the Arrow columns and write them as zstd
  Parquet in shards of 100k rows (``parse``: the parse alone);
* retrieve bm25: bare bm25s (tokenise, index, ``retrieve`` of every query with the same k) in one process;
* retrieve dense / encode: the bare ``model.encode`` loop over the same texts, and a faiss flat search;
* score (``--bounds score``, after retrieve): the bare bi-encoder teacher on the run's candidates: encode their
  distinct documents and queries with ``model.encode``, one dot product a row (compare with a cold score run);
* select: candidate rows/s (target >= 1M rows/s);
* export (``--bounds export``, after select): bare triplets: each kept negative with its query's positive, the
  texts joined from dicts, one zstd Parquet file.

Every bound runs in its own child process that starts Python and imports what it needs, like the stage command it
is compared with (wall against wall).

The fast encoder (``--method dense`` and the bi-encoder teacher of both methods): a sentence-transformers
``StaticEmbedding`` whose token vectors are all-MiniLM-L6-v2's own outputs for each vocabulary token on its own
(mean-pooled, normalised), built offline from the packaged model (no download) and saved as a local model directory.

    python scripts/bench_scale.py --docs 1000000 --queries 100000 --method bm25
    python scripts/bench_scale.py --docs 100000 --queries 10000 --method dense --stages retrieve,score
    python scripts/bench_scale.py --encoder-only      # static vs MiniLM encode throughput
    python scripts/bench_scale.py --docs 20000 --queries 2000 --method dense --engine ray   # models on Ray actors

``--engine ray`` writes ``engine: {kind: ray, ...}`` into the config, so every stage command runs with the Ray engine
(retrieve and score send their model work to Ray worker actors; the others have none). Without ``--engine-address``
(or ``$RAY_ADDRESS``) each of those commands starts a local Ray cluster of this machine's CPUs, whose start is in
the stage's wall time. The run directory and the result file get ``-ray`` after the method/size part (before
``--tag``), so local and Ray runs of the same size do not overwrite each other, and the result JSON records the
engine. Each engine has its own ``$NEGMINE_CACHE_DIR`` (``negmine-cache-ray``), so a Ray run embeds the texts
instead of reading a local run's vectors from the cache. CPU time and peak RSS are the stage command's and its
waited-for children's: Ray worker processes are children of the raylet, so their CPU may be missing (all of it on a
remote cluster): compare wall times.

Targets (issue 11): peak RSS <= 3 GiB in every stage, select >= 1M candidate rows/s, no stage > 10 % above its bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench_scale"
STAGES = ("ingest", "retrieve", "score", "select", "export")
QUERY_WORDS = 6
TARGET_RSS_GIB = 3.0
TARGET_SELECT_ROWS_S = 1_000_000


# ----------------------------------------------------------------------------------------------------------------
# data


def generate(n_docs: int, n_queries: int, seed: int = 0) -> Path:
    """A BEIR directory: bench_ingest's corpus of ``n_docs`` (generated once, linked) and ``n_queries`` queries of
    ``QUERY_WORDS`` words drawn from one planted positive document each."""
    import numpy as np
    import orjson

    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_ingest import generate as generate_corpus

    dst = CACHE / f"data-{n_docs}-{n_queries}"
    if (dst / ".complete").is_file():
        return dst
    src = generate_corpus(CACHE / f"corpus-{n_docs}", n_docs, n_queries=1, seed=seed)
    shutil.rmtree(dst, ignore_errors=True)
    (dst / "qrels").mkdir(parents=True)
    os.symlink(src / "corpus.jsonl", dst / "corpus.jsonl")
    rng = np.random.default_rng(seed + 1)
    pos = rng.choice(n_docs, size=n_queries, replace=n_queries > n_docs)
    want = {int(d) for d in pos}
    words: dict[int, list[str]] = {}
    with open(src / "corpus.jsonl", "rb") as f:
        for i, line in enumerate(f):
            if i in want:
                words[i] = orjson.loads(line)["text"].split()
    with open(dst / "queries.jsonl", "w", encoding="utf-8") as fq, open(dst / "qrels" / "train.tsv", "w") as fr:
        fr.write("query-id\tcorpus-id\tscore\n")
        for q, d in enumerate(pos.tolist()):
            w = words[d]
            pick = rng.choice(len(w), size=min(QUERY_WORDS, len(w)), replace=False)
            fq.write(json.dumps({"_id": f"q{q}", "text": " ".join(w[j] for j in sorted(pick))}) + "\n")
            fr.write(f"q{q}\td{d}\t1\n")
    (dst / ".complete").touch()
    return dst


def static_model() -> Path:
    """A StaticEmbedding built from the packaged all-MiniLM-L6-v2 (cached): every vocabulary token encoded on its
    own by MiniLM ([CLS] token [SEP], mean pooling, normalised) is that token's static vector."""
    dst = CACHE / "static-minilm"
    if (dst / ".complete").is_file():
        return dst
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import StaticEmbedding

    from negmine.models import resolve_model

    t0 = time.time()
    st = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    tok = st.tokenizer
    bert = st[0].auto_model
    vocab = tok.vocab_size
    out = np.zeros((vocab, bert.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, vocab, 2048):
            ids = torch.arange(s, min(s + 2048, vocab))
            x = torch.stack([torch.full_like(ids, tok.cls_token_id), ids, torch.full_like(ids, tok.sep_token_id)], 1)
            h = bert(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
            v = torch.nn.functional.normalize(h.mean(1), dim=-1)
            out[s:s + len(ids)] = v.numpy()
    from tokenizers import Tokenizer

    fast = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    fast.no_padding()
    fast.no_truncation()
    model = SentenceTransformer(modules=[StaticEmbedding(fast, embedding_weights=out)], device="cpu")
    shutil.rmtree(dst, ignore_errors=True)
    model.save(str(dst))
    (dst / ".complete").touch()
    print(f"static encoder built in {time.time() - t0:.0f} s: {dst}", file=sys.stderr)
    return dst


def write_config(run: Path, data: Path, method: str, model: Path, depth: int, args) -> Path:
    import yaml

    retrieve: dict = {"method": method, "depth": depth}
    if method == "dense":
        retrieve |= {"model": str(model), "batch_size": args.batch_size}
    cfg = {
        "run_dir": str(run),
        "input": {"path": str(data), "format": "beir", "split": "train"},
        "retrieve": retrieve,
        "score": {"teacher": "bi-encoder", "model": str(model), "batch_size": args.batch_size},
        "select": {"filter": "none", "max_pos_sim": args.max_pos_sim, "num_negatives": 8, "dedup": True,
                   "calibration": "off"} | ({"pos_sim_model": "teacher"} if args.max_pos_sim != "off" else {}),
        "export": {"format": "triplet"},
    }
    engine = engine_config(args)
    if engine is not None:  # every stage command reads it; retrieve and score run their model work on Ray
        cfg["engine"] = engine
    path = run.parent / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def engine_config(args) -> dict | None:
    """The config's ``engine`` section for ``--engine`` (None for the local engine: the config stays as before)."""
    if args.engine == "local":
        return None
    eng: dict = {"kind": args.engine, "batch_size": args.engine_batch_size}
    if args.engine_address:
        eng["address"] = args.engine_address
    if args.engine_workers:
        eng["workers"] = args.engine_workers
    return eng


def cache_dir(args) -> Path:
    """``$NEGMINE_CACHE_DIR`` of the stage commands: one per engine, so a Ray run embeds what a local run of the
    same data already cached (and the reverse) instead of reading it back; the local engine keeps the one it had.
    A second run with the same engine finds its embeddings cached (``cache_bytes_added`` ~ 0 in the result)."""
    if args.cache:
        return CACHE / args.cache
    return CACHE / ("negmine-cache" if args.engine == "local" else f"negmine-cache-{args.engine}")


def run_name(args) -> str:
    """``METHOD-DOCS-QUERIES[-ENGINE]TAG``: the local engine keeps the names runs had before ``--engine``."""
    return f"{args.method}-{args.docs}-{args.queries}{'' if args.engine == 'local' else '-' + args.engine}{args.tag}"


# ----------------------------------------------------------------------------------------------------------------
# measuring one command in its own parent


class TreeMemory(threading.Thread):
    """Samples, every ``period`` s, the memory of a process and all its descendants (a Ray engine's raylet, object
    store and workers included): the peak of their summed PSS (shared pages, such as the object store's, divided
    among the processes that map them: the tree's real footprint) and of their summed RSS (shared pages counted in
    every process). ``ru_maxrss`` gives only the largest single process.

    Reading ``smaps_rollup`` walks a process' page tables, so a sample costs more the larger the tree: at 1M
    documents on the Ray engine (11 processes: a driver, two workers of 1-2 GiB each, Ray's daemons) one sample takes
    about 48 ms of CPU (1M x 8,192 on Ray: 107 samples in 5.12 s, ``sampler``), so sampling every 0.25 s took a fifth
    of a core from the measured command on a saturated 2-core box. The sampler therefore waits at least ``DUTY`` times as long as its last sample took (its
    period grows with the tree) and records its own CPU time (``peaks()["sampler"]``)."""

    DUTY = 40  # wait >= 40 x a sample's duration: the sampler uses <= 2.5 % of one core

    def __init__(self, pid: int, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples, self.cpu_s, self.max_wait = 0, 0.0, period
        self.pss = self.rss = self.procs = 0
        self.at_peak: list[tuple[int, int, str]] = []  # (PSS KiB, of which shared memory, command) at the peak
        self.done = threading.Event()

    def _tree(self) -> list[int]:
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                try:
                    todo.extend(int(c) for c in task.read_text().split())
                except OSError:
                    pass
        return out

    def run(self) -> None:
        wait = self.period
        while not self.done.wait(wait):
            c0, t0 = time.thread_time(), time.perf_counter()
            self._sample()
            self.samples += 1
            self.cpu_s += time.thread_time() - c0
            wait = max(self.period, self.DUTY * (time.perf_counter() - t0))
            self.max_wait = max(self.max_wait, wait)

    def _sample(self) -> None:
        pss = rss = 0
        pids = self._tree()
        each = []
        for pid in pids:
            try:
                mine = {}
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith(("Pss:", "Rss:", "Pss_Shmem:")):
                        mine[line.split(":")[0]] = int(line.split()[1])
                name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError):
                continue
            pss += mine.get("Pss", 0)
            rss += mine.get("Rss", 0)
            each.append((mine.get("Pss", 0), mine.get("Pss_Shmem", 0), name[:80]))
        if pss > self.pss:
            self.pss, self.procs = pss, len(pids)
            self.at_peak = sorted(each, reverse=True)[:8]
        self.rss = max(self.rss, rss)

    def stop(self) -> None:
        self.done.set()
        self.join()

    def peaks(self) -> dict:
        return {"peak_tree_pss_kib": self.pss, "peak_tree_rss_kib": self.rss, "tree_procs_at_peak": self.procs,
                "sampler": {"samples": self.samples, "cpu_s": round(self.cpu_s, 2),
                            "longest_period_s": round(self.max_wait, 2)},
                "tree_at_peak": [{"pss_kib": p, "pss_shmem_kib": sh, "cmd": c} for p, sh, c in self.at_peak]}


def measured(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd`` in a fresh parent process whose RUSAGE_CHILDREN is this command's alone."""
    code = ("import json,resource,subprocess,sys,time\n"
            "t=time.perf_counter();p=subprocess.run(sys.argv[1:]);w=time.perf_counter()-t\n"
            "u=resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "print(json.dumps({'rc':p.returncode,'wall_s':w,'cpu_s':u.ru_utime+u.ru_stime,"
            "'user_s':u.ru_utime,'sys_s':u.ru_stime,'peak_rss_kib':u.ru_maxrss,'written_bytes':u.ru_oublock*512}),"
            "file=sys.stderr)\n")
    with subprocess.Popen([sys.executable, "-c", code, *cmd], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        tree = TreeMemory(proc.pid)
        tree.start()
        stdout, stderr = proc.communicate()
        tree.stop()
    last = stderr.strip().splitlines()[-1]
    r = json.loads(last) | tree.peaks()
    if r["rc"] != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r['rc']}):\n{stderr[-3000:]}")
    r["stdout"] = stdout
    return r


def du(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _stage_cmd(stage: str, run: Path, cfg: Path) -> list[str]:
    neg = [sys.executable, "-m", "negmine", "-q"]
    if stage == "ingest":
        return [*neg, "ingest", "--config", str(cfg), "--out", str(run)]
    return [*neg, stage, str(run), "--config", str(cfg)]


_OUT = {"ingest": "ingest", "retrieve": "candidates", "score": "scores", "select": "negatives", "export": "export"}


def run_stages(stages: list[str], run: Path, cfg: Path, env: dict[str, str], cache: Path) -> dict[str, dict]:
    out = {}
    for stage in stages:
        before = du(cache)
        shutil.rmtree(run / _OUT[stage], ignore_errors=True)
        load = os.getloadavg()
        r = measured(_stage_cmd(stage, run, cfg), env)
        mf = run / _OUT[stage] / "_manifest.json"
        manifest = json.loads(mf.read_text()) if mf.is_file() else {}
        r |= {"load_at_start": [round(x, 2) for x in load], "output_bytes": du(run / _OUT[stage]),
              "cache_bytes_added": du(cache) - before, "stats": manifest.get("stats"),
              "timings": manifest.get("timings")}
        r.pop("stdout", None)
        out[stage] = r
        print(f"{stage:9s} wall {r['wall_s']:8.1f} s  CPU {r['cpu_s']:8.1f} s  peak RSS "
              f"{r['peak_rss_kib'] / 2**20:5.2f} GiB (tree PSS {r['peak_tree_pss_kib'] / 2**20:5.2f})  written {r['written_bytes'] / 2**20:8.1f} MiB  "
              f"output {r['output_bytes'] / 2**20:8.1f} MiB", file=sys.stderr, flush=True)
    return out


# ----------------------------------------------------------------------------------------------------------------
# bounds: the bare library loop of each stage, in its own measured process


def _read_jsonl_texts(path: Path) -> dict[str, str]:
    """``_id`` → the model string (title and text, as negmine's ``doc_text`` joins them) of a BEIR JSONL file."""
    import orjson

    out = {}
    with open(path, "rb") as f:
        for line in f:
            d = orjson.loads(line)
            out[d["_id"]] = f"{d['title']} {d['text']}" if d.get("title") else d["text"]
    return out


def _read_shards(directory: Path, columns: list[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(p, columns=columns) for p in sorted(directory.glob("part-*.parquet"))])


def bound_child(kind: str, data: Path, model: Path, depth: int, n_queries: int | None, batch_size: int,
                run: Path | None = None) -> dict:
    """One bound, run in a child (``--bound KIND``); prints its timings as JSON. ``run``: the run directory whose
    stage outputs the score and export bounds start from (candidates; select's negatives and positives)."""
    import numpy as np
    import orjson

    t0 = time.perf_counter()
    out: dict = {}
    if kind == "ingest":  # parse the JSONL, build the Arrow columns, write zstd Parquet: what any ingest must do
        import tempfile

        import pyarrow as pa
        import pyarrow.parquet as pq

        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            for name, fields in (("corpus", ("_id", "title", "text")), ("queries", ("_id", "text"))):
                cols: dict[str, list] = {f: [] for f in fields}
                with open(data / f"{name}.jsonl", "rb") as f:
                    for line in f:
                        d = orjson.loads(line)
                        for k in fields:
                            cols[k].append(d.get(k, ""))
                for s in range(0, len(cols["_id"]), 100_000):  # ingest's shard size
                    pq.write_table(pa.table({k: pa.array(v[s:s + 100_000], pa.string()) for k, v in cols.items()}),
                                   Path(tmp) / f"{name}-{s}.parquet", compression="zstd")
                out[name] = len(cols["_id"])
    elif kind == "score":  # bare bi-encoder teacher: encode the distinct candidate docs and queries, one dot a row
        import pyarrow.compute as pc
        from sentence_transformers import SentenceTransformer

        assert run is not None
        doc_text = _read_jsonl_texts(data / "corpus.jsonl")
        query_text = _read_jsonl_texts(data / "queries.jsonl")
        cand = _read_shards(run / "candidates", ["query_id", "doc_id"])
        out["read_s"] = time.perf_counter() - t0
        st = SentenceTransformer(str(model), device="cpu")
        t1 = time.perf_counter()
        d_enc = pc.dictionary_encode(cand["doc_id"].combine_chunks())
        q_enc = pc.dictionary_encode(cand["query_id"].combine_chunks())
        dv = st.encode([doc_text[d] for d in d_enc.dictionary.to_pylist()], batch_size=batch_size,
                       normalize_embeddings=True, convert_to_numpy=True)
        qv = st.encode([query_text[q] for q in q_enc.dictionary.to_pylist()], batch_size=batch_size,
                       normalize_embeddings=True, convert_to_numpy=True)
        out["encode_s"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        di, qi = d_enc.indices.to_numpy(), q_enc.indices.to_numpy()
        for s in range(0, len(di), 1 << 20):
            np.einsum("ij,ij->i", dv[di[s:s + (1 << 20)]], qv[qi[s:s + (1 << 20)]])
        out["dot_s"] = time.perf_counter() - t1
        out["rows"], out["docs_encoded"] = len(di), len(dv)
    elif kind == "export":  # bare triplets: each kept negative with its query's positive, texts joined, Parquet
        import tempfile

        import pyarrow as pa
        import pyarrow.parquet as pq

        assert run is not None
        doc_text = _read_jsonl_texts(data / "corpus.jsonl")
        query_text = _read_jsonl_texts(data / "queries.jsonl")
        neg = _read_shards(run / "negatives", ["query_id", "doc_id"])
        pos = _read_shards(run / "negatives" / "positives", ["query_id", "doc_id"])
        out["read_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        first_pos = dict(zip(pos["query_id"].to_pylist(), pos["doc_id"].to_pylist(), strict=True))
        q, d = neg["query_id"].to_pylist(), neg["doc_id"].to_pylist()
        table = pa.table({"anchor": pa.array([query_text[x] for x in q], pa.string()),
                          "positive": pa.array([doc_text[first_pos[x]] for x in q], pa.string()),
                          "negative": pa.array([doc_text[x] for x in d], pa.string())})
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            pq.write_table(table, Path(tmp) / "triplets.parquet", compression="zstd")
        out["join_write_s"] = time.perf_counter() - t1
        out["rows"] = table.num_rows
    elif kind == "bm25search":  # the cached index negmine built: bare bm25s retrieve vs negmine's searcher
        import bm25s

        from negmine.retrieve.bm25 import Bm25sSearcher, _bm25s_class
        from negmine.retrieve.params import RetrieverConfig

        root = Path(os.environ["NEGMINE_CACHE_DIR"]) / "bm25"
        path = next(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                    and json.loads((p / "params.index.json").read_text()).get("num_docs") == n_docs_of(data))
        queries = [orjson.loads(line)["text"] for line in open(data / "queries.jsonl", "rb")][:n_queries or 2000]
        cfg = RetrieverConfig(method="bm25")
        bare = bm25s.BM25.load(path, mmap=True, show_progress=False)
        from negmine.retrieve.bm25 import tokenize

        tok = tokenize(queries, cfg)
        t1 = time.perf_counter()
        bare.retrieve(tok, k=depth, show_progress=False, n_threads=os.cpu_count() or 1)
        out["bm25s_search_s"] = time.perf_counter() - t1
        ours = Bm25sSearcher(_bm25s_class().load(path, mmap=True, show_progress=False), cfg)
        t1 = time.perf_counter()
        ours.search(queries, depth)
        out["negmine_search_s"] = time.perf_counter() - t1
        out["queries"] = len(queries)
    elif kind == "parse":
        n = 0
        with open(data / "corpus.jsonl", "rb") as f:
            for line in f:
                orjson.loads(line)
                n += 1
        out["docs"] = n
    else:
        texts = []
        with open(data / "corpus.jsonl", "rb") as f:
            for line in f:
                d = orjson.loads(line)
                texts.append(f"{d['title']} {d['text']}" if d.get("title") else d["text"])
        queries = [orjson.loads(line)["text"] for line in open(data / "queries.jsonl", "rb")][:n_queries]
        out["read_s"] = time.perf_counter() - t0
        out["docs"], out["queries"] = len(texts), len(queries)
        if kind == "bm25":
            import bm25s
            import Stemmer

            stem = Stemmer.Stemmer("english").stemWords
            t1 = time.perf_counter()
            tok = bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False)
            del texts
            out["tokenize_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            r = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
            r.index(tok, show_progress=False)
            del tok
            out["index_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            qt = bm25s.tokenize(queries, stopwords="en", stemmer=stem, show_progress=False)
            r.retrieve(qt, k=depth, show_progress=False, n_threads=os.cpu_count() or 1)
            out["search_s"] = time.perf_counter() - t1
        else:  # dense: bare encode of corpus and queries + faiss flat search
            import faiss
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(str(model), device="cpu")
            t1 = time.perf_counter()
            dv = st.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
            qv = st.encode(queries, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
            out["encode_s"] = time.perf_counter() - t1
            del texts
            t1 = time.perf_counter()
            index = faiss.IndexFlatIP(dv.shape[1])
            index.add(np.ascontiguousarray(dv, dtype=np.float32))
            for s in range(0, len(qv), 4096):
                index.search(qv[s:s + 4096], depth)
            out["search_s"] = time.perf_counter() - t1
    out["total_s"] = time.perf_counter() - t0
    return out


def n_docs_of(data: Path) -> int:
    return int(data.name.split("-")[1])


def measure_bound(kind: str, args, env) -> dict:
    cmd = [sys.executable, __file__, "--bound", kind, "--docs", str(args.docs), "--queries", str(args.queries),
           "--depth", str(args.depth), "--batch-size", str(args.batch_size), "--method", args.method,
           "--engine", args.engine, f"--tag={args.tag}"]
    if args.bound_queries:
        cmd += ["--bound-queries", str(args.bound_queries)]
    r = measured(cmd, env)
    r |= json.loads(r.pop("stdout").strip().splitlines()[-1])
    print(f"bound {kind}: wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s, peak RSS "
          f"{r['peak_rss_kib'] / 2**20:.2f} GiB: {json.dumps({k: round(v, 2) for k, v in r.items() if k.endswith('_s')})}",
          file=sys.stderr, flush=True)
    return r


def encoder_throughput(model: Path, data: Path, n: int, batch_size: int) -> dict:
    """Docs/s of the bare encode loop: the static encoder vs the packaged all-MiniLM-L6-v2 (same texts)."""
    import orjson
    import torch
    from sentence_transformers import SentenceTransformer

    from negmine.models import resolve_model

    texts = []
    with open(data / "corpus.jsonl", "rb") as f:
        for line in f:
            d = orjson.loads(line)
            texts.append(f"{d['title']} {d['text']}")
            if len(texts) >= n:
                break
    out = {"texts": len(texts), "torch_threads": torch.get_num_threads()}
    for name, path in (("static", str(model)), ("all-MiniLM-L6-v2", resolve_model("all-MiniLM-L6-v2"))):
        st = SentenceTransformer(path, device="cpu")
        sample = texts if name == "static" else texts[: max(256, n // 40)]
        st.encode(sample[:64], batch_size=batch_size)
        t0 = time.perf_counter()
        st.encode(sample, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)
        dt = time.perf_counter() - t0
        out[name] = {"texts": len(sample), "seconds": round(dt, 2), "docs_per_s": round(len(sample) / dt, 1)}
        print(f"encode {name}: {len(sample)} docs in {dt:.2f} s = {len(sample) / dt:,.0f} docs/s", file=sys.stderr)
    out["speedup"] = round(out["static"]["docs_per_s"] / out["all-MiniLM-L6-v2"]["docs_per_s"], 1)
    return out


# ----------------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--method", choices=("bm25", "dense"), default="bm25")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages to (re)run, in order")
    ap.add_argument("--bounds", default="", help="comma-separated bounds to measure: parse, ingest, bm25, dense, "
                    "score, export (score and export start from this run's candidates / negatives)")
    ap.add_argument("--bound-queries", type=int, default=None, help="queries of the bm25/dense bound [all]")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-pos-sim", default="off", help="select.max_pos_sim (with pos_sim_model: teacher)")
    ap.add_argument("--encoder-only", action="store_true", help="measure static vs MiniLM encode throughput")
    ap.add_argument("--cache", default="", help="name of the $NEGMINE_CACHE_DIR under .cache/bench_scale "
                    "[negmine-cache, or negmine-cache-ray for --engine ray]; delete it first for a cold run")
    ap.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="where the stages run their models (config engine.kind); ray adds -ray to the run and "
                         "result names")
    ap.add_argument("--engine-address", default=None,
                    help="Ray cluster address (config engine.address) [$RAY_ADDRESS, else a local cluster per "
                         "stage command]")
    ap.add_argument("--engine-workers", type=int, default=None, help="Ray workers (config engine.workers) "
                    "[as many as the cluster's CPUs allow]")
    ap.add_argument("--engine-batch-size", type=int, default=256, help="rows per block sent to a Ray worker "
                    "(config engine.batch_size)")
    ap.add_argument("--tag", default="", help="suffix of the run directory and result file")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--bound", help=argparse.SUPPRESS)
    args = ap.parse_args()
    data = generate(args.docs, args.queries)
    model = static_model()
    if args.bound:
        print(json.dumps(bound_child(args.bound, data, model, args.depth, args.bound_queries, args.batch_size,
                                     CACHE / "runs" / run_name(args))))
        return
    cache = cache_dir(args)
    env = dict(os.environ, PYTHONPATH=str(ROOT), NEGMINE_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1")
    result: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "scripts/bench_scale.py"] + sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "docs": args.docs, "queries": args.queries, "method": args.method, "depth": args.depth,
        "engine": engine_config(args) or {"kind": "local"}, "negmine_cache": cache.name,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    if args.encoder_only:
        result["encoder"] = encoder_throughput(model, data, 20_000, args.batch_size)
    else:
        run = CACHE / "runs" / run_name(args)
        run.parent.mkdir(parents=True, exist_ok=True)
        cfg = write_config(run, data, args.method, model, args.depth, args)
        stages = [s for s in args.stages.split(",") if s]
        if stages:
            result["stages"] = run_stages(stages, run, cfg, env, cache)
            sel = result["stages"].get("select")
            if sel and sel.get("stats"):
                rows = sel["stats"]["candidates"]
                result["select_rows_per_s"] = round(rows / sel["wall_s"])
            result["max_peak_rss_gib"] = round(max(r["peak_rss_kib"] for r in result["stages"].values()) / 2**20, 3)
        result["bounds"] = {b: measure_bound(b, args, env) for b in args.bounds.split(",") if b}
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    name = f"encoder-{args.docs}-{args.queries}{args.tag}" if args.encoder_only else run_name(args)
    out = args.out or ROOT / "scripts" / "results" / f"bench_scale-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
