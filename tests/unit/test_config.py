"""Config loading: precedence, errors with the YAML line, --set parsing."""

import pytest

from negmine.config import load_config, parse_set
from negmine.errors import InputError


def test_precedence_defaults_yaml_set_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input:\n  split: dev\n  min_grade: 2\n  shard_rows: 10\n")
    assert load_config().input.split == "train"  # default
    c = load_config(cfg)
    assert (c.input.split, c.input.min_grade, c.input.shard_rows) == ("dev", 2.0, 10)
    c = load_config(cfg, ["input.split=test", "input.min_grade=3"])
    assert (c.input.split, c.input.min_grade) == ("test", 3.0)
    c = load_config(cfg, ["input.split=test"], {"input": {"split": "validation", "min_grade": None}})
    assert (c.input.split, c.input.min_grade) == ("validation", 2.0)  # None = flag not given


def test_yaml_bom_and_empty_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"\xef\xbb\xbfinput:\r\n  split: dev\r\n")
    assert load_config(cfg).input.split == "dev"
    cfg.write_text("")
    assert load_config(cfg).input.split == "train"


@pytest.mark.parametrize("text,line,fragment", [
    ("input:\n  split: dev\n  spilt: x\n", 3, "unknown config key 'input.spilt'"),
    ("retrieve: {}\nnot_a_section:\n  a: 1\n", 2, "unknown config key 'not_a_section'"),
    ("input:\n  shard_rows: -5\n", 2, "'input.shard_rows'"),
    ("input:\n  split: [dev\n", 3, "invalid YAML"),
    ("- just\n- a list\n", 1, "config must be a mapping"),
])
def test_config_errors_name_the_line(tmp_path, text, line, fragment):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(InputError) as e:
        load_config(cfg)
    assert e.value.where == str(cfg) and e.value.line == line and fragment in e.value.message


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_set_values_are_yaml_typed():
    assert parse_set(["a.b=1", "a.c=0.5", "a.d=true", "a.e=x y", "a.f=[1, 2]", "a.g="]) == [
        (["a", "b"], 1, "a.b=1"), (["a", "c"], 0.5, "a.c=0.5"), (["a", "d"], True, "a.d=true"),
        (["a", "e"], "x y", "a.e=x y"), (["a", "f"], [1, 2], "a.f=[1, 2]"), (["a", "g"], None, "a.g=")]


@pytest.mark.parametrize("item,fragment", [
    ("input.split", "expected key=value"), ("=3", "empty key"), ("input..split=x", "empty key"),
    ("input.spilt=x", "unknown config key 'input.spilt'"), ("input.shard_rows=abc", "'input.shard_rows'"),
])
def test_bad_set(item, fragment):
    with pytest.raises(InputError) as e:
        load_config(None, [item])
    assert e.value.where == "--set" and fragment in e.value.message


def test_bad_flag_names_the_option():
    with pytest.raises(InputError) as e:
        load_config(None, [], {"input": {"shard_rows": 0}})
    assert e.value.where == "--shard-rows"


def test_hub_model_revision_is_the_cached_snapshot_commit(tmp_path, monkeypatch):
    """issue 13 (caches never serve changed inputs): a hub model's revision is the commit of its snapshot in the
    local Hugging Face cache, so new weights on the hub mean a new embedding-cache key; before, the key was the name."""
    from huggingface_hub import constants

    from negmine.models import model_revision

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # read at import time when already imported
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "models--someorg--tiny-encoder"
    revisions = []
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        revisions.append(model_revision("someorg/tiny-encoder"))
    assert revisions == [f"hub:someorg/tiny-encoder@{'a' * 40}", f"hub:someorg/tiny-encoder@{'b' * 40}"]
    assert model_revision("someorg/not-cached") == "someorg/not-cached"
