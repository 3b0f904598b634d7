"""Build the bundled demo dataset ``data/scifact-demo/`` from BEIR's SciFact (``../shared/data/scifact``).

A few hundred SciFact *train* claims (the first ``--queries`` in qrels order) with every document they cite
(their positives) plus, so that mining is meaningful, the documents BM25 ranks highest for those claims, taken
rank by rank round-robin over the claims until the corpus holds ``--docs`` documents. Output in BEIR layout,
gzipped with a zero mtime so the bytes are reproducible:

    python scripts/make_demo_data.py [--src ../shared/data/scifact] [--out data/scifact-demo]

Attribution and licences are in ``data/scifact-demo/README.md`` (claims CC BY 4.0, abstracts ODC-By 1.0).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_jsonl(p: Path) -> list[dict]:
    with open(p, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl_gz(p: Path, rows: list[dict]) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    with open(p, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(data)


def bm25_top(corpus: list[dict], queries: list[str], k: int) -> list[list[int]]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    texts = [f"{d.get('title', '')} {d['text']}".strip() for d in corpus]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    res, _ = retriever.retrieve(bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False),
                                k=k, show_progress=False)
    return [list(map(int, row)) for row in res]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "scifact-demo")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--docs", type=int, default=1500)
    args = ap.parse_args()

    lines = (args.src / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()
    qrels = [line.split("\t") for line in lines[1:] if line.strip()]
    qids: list[str] = list(dict.fromkeys(q for q, _d, _s in qrels))[: args.queries]
    keep_q = set(qids)
    rows = [r for r in qrels if r[0] in keep_q]
    corpus = read_jsonl(args.src / "corpus.jsonl")
    queries = {q["_id"]: q for q in read_jsonl(args.src / "queries.jsonl")}

    keep_d: dict[str, None] = dict.fromkeys(d for _q, d, _s in rows)  # positives first
    tops = bm25_top(corpus, [queries[q]["text"] for q in qids], k=100)
    for rank in range(100):  # round-robin over queries, best BM25 ranks first
        for row in tops:
            if len(keep_d) >= args.docs:
                break
            keep_d.setdefault(corpus[row[rank]]["_id"], None)
    out = args.out
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    write_jsonl_gz(out / "corpus.jsonl.gz", [d for d in corpus if d["_id"] in keep_d])
    write_jsonl_gz(out / "queries.jsonl.gz", [queries[q] for q in qids])
    with open(out / "qrels" / "train.tsv", "w", encoding="utf-8", newline="\n") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines("\t".join(r) + "\n" for r in rows)
    print(f"{out}: {len(qids)} queries, {len(rows)} qrels, {len(keep_d)} documents")


if __name__ == "__main__":
    main()
