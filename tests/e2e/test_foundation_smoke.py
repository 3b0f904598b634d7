import json
import subprocess
import sys
import time

from negmine.io.store import Artifact


def test_help_and_version_are_fast():
    t = time.time()
    out = subprocess.run([sys.executable, "-m", "negmine", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "ingest" in out.stdout
    out = subprocess.run([sys.executable, "-m", "negmine", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("negmine ")
    assert time.time() - t < 3.0  # two interpreter starts; each well under 1 s
    # no heavy library is imported by the CLI at start
    code = ("import sys, negmine.cli; heavy = [m for m in ('torch', 'sentence_transformers', 'faiss', 'bm25s', "
            "'openai', 'numpy', 'matplotlib') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ingest_scifact_train_counts(shared_data, tmp_path, cli):
    code, out, err = cli("ingest", shared_data / "scifact", "--split", "train", "--out", tmp_path)
    assert code == 0, err
    art = Artifact.open(tmp_path / "ingest", stage="ingest")
    assert art.num_rows("queries") == 809
    assert art.num_rows("positives") == 919
    assert art.num_rows("corpus") == 5183
    # second run is skipped as up to date
    code, out, err = cli("ingest", shared_data / "scifact", "--split", "train", "--out", tmp_path)
    assert code == 0 and "up to date" in err
    assert json.loads((tmp_path / "ingest" / "_manifest.json").read_text())["fingerprint"] == art.fingerprint


def test_ingest_cranfield_counts(shared_data, tmp_path, cli):
    code, out, err = cli("ingest", shared_data / "cranfield", "--split", "test", "--out", tmp_path)
    assert code == 0, err
    art = Artifact.open(tmp_path / "ingest", stage="ingest")
    assert art.num_rows("corpus") == 1398          # two documents have empty text: counted and skipped
    assert art.stats["empty_docs_skipped"] == 2
    assert art.num_rows("queries") == 225
    assert art.num_rows("positives") == 1611       # 1612 qrels rows, one names an empty document
