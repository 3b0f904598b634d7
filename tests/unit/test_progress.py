"""Progress without a terminal: periodic one-line reports (items, rate, ETA) on stderr; silent for loops shorter
than the interval; tqdm's bar on a terminal."""

from __future__ import annotations

import json
import re
import time

import negmine.progress as progress


def test_ingest_reports_by_lines_when_stderr_is_not_a_tty(tmp_path, cli, monkeypatch):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p{i}"}) + "\n" for i in range(3000)))
    monkeypatch.setenv(progress.ENV, "0.000001")
    code, _out, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("negmine: pairs: ")]
    assert len(lines) >= 2 and all("\r" not in line for line in lines)
    assert re.fullmatch(r"negmine: pairs: [\d,]+ rows, [\d,.]+ rows/s", lines[0]), lines[0]
    assert lines[-1].startswith("negmine: pairs: 3,000 rows") and "done in" in lines[-1]


def test_silent_when_shorter_than_the_interval(tmp_path, cli, monkeypatch):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p{i}"}) + "\n" for i in range(300)))
    monkeypatch.delenv(progress.ENV, raising=False)
    code, _out, err = cli("ingest", src, "--out", tmp_path / "run")
    assert code == 0 and "negmine: pairs:" not in err


def test_total_gives_percent_and_eta(capsys, monkeypatch):
    monkeypatch.setenv(progress.ENV, "0.01")
    with progress.tqdm(total=40, desc="embed corpus", unit="text", disable=None) as bar:
        for _ in range(4):
            time.sleep(0.012)
            bar.update(10)
    err = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"negmine: embed corpus: 10/40 text \(25%\), [\d.,]+ text/s, ETA \d+s", err[0]), err
    assert err[-1].startswith("negmine: embed corpus: 40/40 text (100%)") and "done in" in err[-1]
    monkeypatch.setenv(progress.ENV, "off")
    with progress.tqdm(total=2, desc="x") as bar:
        bar.update(2)
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_tqdm(monkeypatch):
    from tqdm import tqdm

    monkeypatch.setattr(progress, "_stderr_is_tty", lambda: True)
    bar = progress.tqdm(total=3, desc="x", disable=True)
    assert isinstance(bar, tqdm)
    bar.close()


def test_beir_ingest_and_select_report_too(tmp_path, cli, monkeypatch):
    from test_select_helpers import build_run

    monkeypatch.setenv(progress.ENV, "0.000001")
    run = build_run(tmp_path)  # BEIR ingest (its queries / corpus / qrels loops) + hand-made scores
    code, _out, err = cli("select", run, "--filter", "perc-pos", "--max-pos-sim", "off")
    assert code == 0, err
    assert any(line.startswith("negmine: select: ") and "q/s" in line for line in err.splitlines()), err
