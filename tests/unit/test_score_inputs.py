"""score's ingest inputs look documents up with Arrow (no Python dict of every corpus id)."""

from __future__ import annotations

import pytest
from test_select_helpers import build_run

from negmine.errors import InputError
from negmine.io.store import Artifact
from negmine.models import doc_text
from negmine.score.stage import _Inputs


def test_doc_rows_and_texts_in_the_order_asked_and_unknown_documents_are_input_errors(tmp_path):
    ingest = Artifact.open(build_run(tmp_path) / "ingest", stage="ingest")
    inputs = _Inputs(ingest)
    corpus = ingest.read("corpus").to_pylist()
    want = [corpus[2], corpus[0], corpus[2]]
    rows = inputs.rows([r["doc_id"] for r in want], tmp_path)
    assert rows.tolist() == [2, 0, 2]
    assert inputs.texts_at(rows) == [doc_text(r["title"], r["text"]) for r in want]
    assert not any(isinstance(v, dict) and len(v) == len(corpus) for v in vars(inputs).values())
    with pytest.raises(InputError, match="'nope' is not in the ingested corpus"):
        inputs.rows([corpus[0]["doc_id"], "nope"], tmp_path)
