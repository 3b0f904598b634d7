"""The README's Python API example, executed from another working directory with three substitutions: the data
folder (a Hugging Face folder built from the SciFact subset), the model trained (a tiny local BERT instead of the
Hub name: tests are offline; mining uses the packaged MiniLM as written) and 3 training steps of batch 4 instead of 100 of 32."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_mine import tiny_bi_encoder  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Hugging Face datasets and the Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(scifact_small, tmp_path, monkeypatch, tiny_bi_encoder):  # noqa: F811
    from test_hf_end_to_end import _hf_folder

    src, corpus = _hf_folder(scifact_small, tmp_path / "data" / "hf")
    code = _example()
    for old, new in (('"data/my-hf-folder"', repr(str(src))),
                     ('"sentence-transformers/all-MiniLM-L6-v2"', repr(tiny_bi_encoder)),
                     ("max_steps=100, per_device_train_batch_size=32",
                      "max_steps=3, per_device_train_batch_size=4, report_to=[], use_cpu=True")):
        assert old in code, old
        code = code.replace(old, new)
    code = code.replace('select={"num_negatives": 4}', f'select={{"num_negatives": 4}}, input={{"corpus": {str(corpus)!r}}}')
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102
    assert set(scope["ds"]) == {"train", "eval"} and len(scope["train"]) > 0
    assert scope["trainer"].state.global_step == 3
    assert (tmp_path / "elsewhere" / "runs" / "mine" / "export" / "README.md").is_file()
