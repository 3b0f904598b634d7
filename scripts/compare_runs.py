"""Compare the stage outputs of two run directories (for example a local and a Ray run of bench_scale).

For each finished stage both runs have (ingest, candidates, scores, negatives), the stage's fingerprints are
compared, and each table of its manifest is read in the manifest's shard order (``negmine.io.store.Artifact``) and
compared as Arrow tables (``Table.equals``: same schema, same rows in the same order, same values to the bit); float
columns that differ are reported with their largest absolute difference. Export files are compared by sha256.

    python scripts/compare_runs.py .cache/bench_scale/runs/dense-1000000-100000-r5 \
        .cache/bench_scale/runs/dense-1000000-100000-ray-r6

Exit 0 when every common stage is equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("ingest", "candidates", "scores", "negatives")


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
    from negmine.io.store import MANIFEST, Artifact, sha256_file

    ok = True
    for stage in STAGES:
        if not ((args.a / stage / MANIFEST).is_file() and (args.b / stage / MANIFEST).is_file()):
            continue
        aa, ab = Artifact.open(args.a / stage), Artifact.open(args.b / stage)
        same = aa.fingerprint == ab.fingerprint
        ok &= same
        print(f"{stage}: fingerprint {'equal' if same else 'DIFFERENT'} ({aa.fingerprint[:16]})")
        if aa.tables != ab.tables:
            print(f"{stage}: different tables: {aa.tables} vs {ab.tables}")
            ok = False
            continue
        for t in aa.tables:
            ta, tb = aa.read(t), ab.read(t)
            same = ta.equals(tb)
            ok &= same
            print(f"{stage} {t}: {ta.num_rows} rows, " + ("equal" if same else "DIFFERENT: " + _diff(ta, tb)))
    ea, eb = args.a / "export", args.b / "export"
    if ea.is_dir() and eb.is_dir():
        for p in sorted(ea.glob("*")):
            q = eb / p.name
            if p.is_file() and q.is_file():
                ha, hb = sha256_file(p), sha256_file(q)
                ok &= ha == hb
                print(f"export {p.name}: sha256 {'equal' if ha == hb else 'DIFFERENT'} ({ha[:16]})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
