"""Usage errors: click's usage line on stderr and exit 2 (bad input), never a "runtime error"; a bare `negmine`
prints the help."""

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
def test_usage_errors_exit_2_with_the_usage_line(cli, args, message):
    code, out, err = cli(*args)
    assert code == 2, err
    assert err.startswith("Usage: negmine"), err
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
