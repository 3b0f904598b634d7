"""Usage errors: one line on stderr naming the command and the flag typed, exit 2 (bad input), never a "runtime
error"; a bare `negmine` prints the help."""

from __future__ import annotations

import pytest


def test_bare_negmine_prints_help(cli):
    code, out, err = cli()
    assert code == 0
    assert out.startswith("Usage: negmine [OPTIONS] COMMAND") and "export" in out and "mine" in out
    assert "runtime error" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["export"], "Missing argument"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["export", "run", "--bogus"], "No such option: --bogus"),
    (["select", "run", "--num-negatives", "many"], "Invalid value"),
])
def test_usage_errors_exit_2_with_one_line(cli, args, message):
    code, out, err = cli(*args)
    assert code == 2, err
    assert err.startswith("negmine") and ": error: " in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert "runtime error" not in err


def test_option_without_its_value_exits_2(cli):
    code, _out, err = cli("export", "run", "--format")
    assert code == 2 and "Option '--format' requires an argument" in err and "runtime error" not in err


def test_version_and_help_exit_0(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("negmine ")
    code, out, _ = cli("export", "--help")
    assert code == 0 and "Usage: negmine export" in out


@pytest.mark.parametrize(("args", "flag"), [
    (["retrieve", "run", "--depth", "abc"], "'--depth'"),
    (["select", "run", "--seed", "1e400"], "'--seed'"),
    (["judge-server", "q.tsv", "--accuracy", "2"], "'--accuracy'"),
    # flags that are not config fields: NaN / inf are rejected like in config (click's range check lets NaN pass)
    (["report", "run", "--min-grade", "nan"], "'--min-grade'"),
    (["eval", "run", "--qrels", "q.tsv", "--min-grade", "inf"], "'--min-grade'"),
    (["judge-server", "q.tsv", "--accuracy", "nan"], "'--accuracy'"),
    (["judge-server", "q.tsv", "--latency-ms", "nan"], "'--latency-ms'"),
])
def test_bad_option_value_is_one_line_naming_the_flag_typed(cli, args, flag):
    code, _out, err = cli(*args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and flag in err and f"negmine {args[0]}: error:" in err, err
