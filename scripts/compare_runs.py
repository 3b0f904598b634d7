"""Compare the stage outputs of two run directories (for example a local and a Ray run of bench_scale).

For each stage directory both runs have (ingest, candidates, scores, negatives), the shards are read in order and
compared as Arrow tables (``Table.equals``: same schema, same rows in the same order, same values to the bit); float
columns that differ are reported with their largest absolute difference. Export files are compared by sha256.

    python scripts/compare_runs.py .cache/bench_scale/runs/dense-1000000-100000-r5 \
        .cache/bench_scale/runs/dense-1000000-100000-ray-r6

Exit 0 when every common stage is equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

STAGES = ("ingest", "candidates", "scores", "negatives")


def _table(directory: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted(directory.rglob("*.parquet"))
    groups: dict[str, list] = {}
    for p in parts:  # ingest holds corpus / queries / qrels side by side: compare each group on its own
        groups.setdefault(str(p.parent.relative_to(directory)) + "/" + p.name.split("-")[0], []).append(p)
    return {g: pa.concat_tables([pq.read_table(p) for p in ps]) for g, ps in sorted(groups.items())}


def _diff(a, b) -> str:
    import numpy as np
    import pyarrow.types as pt

    if a.schema != b.schema:
        return f"schemas differ: {a.schema.names} vs {b.schema.names}"
    if a.num_rows != b.num_rows:
        return f"{a.num_rows} vs {b.num_rows} rows"
    out = []
    for name in a.schema.names:
        ca, cb = a[name], b[name]
        if ca.equals(cb):
            continue
        if pt.is_floating(ca.type):
            d = np.abs(ca.to_numpy(zero_copy_only=False) - cb.to_numpy(zero_copy_only=False))
            out.append(f"{name}: max |diff| {np.nanmax(d):.3g} ({int((d > 0).sum())} rows)")
        else:
            out.append(f"{name}: differs")
    return "; ".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args()
    ok = True
    for stage in STAGES:
        da, db = args.a / stage, args.b / stage
        if not (da.is_dir() and db.is_dir()):
            continue
        ta, tb = _table(da), _table(db)
        if ta.keys() != tb.keys():
            print(f"{stage}: different files: {sorted(ta)} vs {sorted(tb)}")
            ok = False
            continue
        for g in ta:
            same = ta[g].equals(tb[g])
            ok &= same
            print(f"{stage} {g}: {ta[g].num_rows} rows, " + ("equal" if same else "DIFFERENT: " + _diff(ta[g], tb[g])))
    ea, eb = args.a / "export", args.b / "export"
    if ea.is_dir() and eb.is_dir():
        for p in sorted(ea.glob("*")):
            q = eb / p.name
            if p.is_file() and q.is_file():
                ha, hb = (hashlib.sha256(x.read_bytes()).hexdigest() for x in (p, q))
                ok &= ha == hb
                print(f"export {p.name}: sha256 {'equal' if ha == hb else 'DIFFERENT'} ({ha[:16]})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
