"""Progress for every long loop: tqdm's bar on a terminal, periodic one-line reports on stderr otherwise (CI, nohup,
batch jobs), e.g. ``negmine: embed corpus: 12,288/50,000 text (25%), 410 text/s, ETA 1m32s``.

Modules import ``tqdm`` from here instead of from tqdm; the signature is tqdm's. Without a terminal a line is
written every ``$NEGMINE_PROGRESS_SECONDS`` [30] seconds while the loop runs (``0`` or ``off``: none), and a last
line when a loop that reported finishes, so a loop shorter than the interval stays silent.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

ENV = "NEGMINE_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def interval() -> float | None:
    raw = os.environ.get(ENV, "").strip().lower()
    if not raw:
        return DEFAULT_SECONDS
    if raw in ("0", "off", "no", "false"):
        return None
    try:
        v = float(raw)
    except ValueError:
        return DEFAULT_SECONDS
    return v if v > 0 else None


def _duration(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class LineProgress:
    """The part of tqdm's interface negmine uses (iteration, ``update``, ``close``, context manager, ``total``,
    ``n``, ``set_postfix_str``, ``set_description``), reporting by lines."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: float | None = None, desc: str | None = None,
                 unit: str = "it", every: float = DEFAULT_SECONDS, **_ignored: Any) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc or "progress"
        self.unit = unit.strip() or "it"
        self.every = every
        self.n: float = 0
        self.start = time.monotonic()
        self.last = self.start
        self.reported = False
        self.postfix = ""
        self.closed = False

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.n / elapsed
        done = f"{self.n:,.0f}"
        parts = []
        if self.total:
            parts.append(f"{done}/{self.total:,.0f} {self.unit} ({100 * self.n / self.total:.0f}%)")
        else:
            parts.append(f"{done} {self.unit}")
        parts.append(f"{rate:,.1f} {self.unit}/s" if rate < 100 else f"{rate:,.0f} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        elif self.closed:
            parts.append(f"done in {_duration(elapsed)}")
        if self.postfix:
            parts.append(self.postfix)
        return f"negmine: {self.desc}: {', '.join(parts)}"

    def _emit(self) -> None:
        print(self.line(), file=sys.stderr, flush=True)
        self.reported = True

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._emit()

    def update(self, n: float = 1) -> None:
        self.n += n
        self._maybe_report()

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        check = 0
        try:
            for item in self.iterable:
                yield item
                self.n += 1
                check += 1
                if check >= 256:  # the clock is read every 256 items: hot loops stay hot
                    check = 0
                    self._maybe_report()
        finally:
            self.close()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        items = dict(*args, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or self.desc

    def refresh(self) -> None:
        pass

    def reset(self, total: float | None = None) -> None:
        self.n, self.total = 0, total

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.reported:
            self._emit()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def tqdm(iterable: Iterable[Any] | None = None, *args: Any, **kwargs: Any) -> Any:
    """tqdm's bar on a terminal (``disable=None``: tqdm decides), :class:`LineProgress` without one; ``disable=True``
    is off either way."""
    from tqdm import tqdm as bar

    disable = kwargs.get("disable", False)
    if disable is True or _stderr_is_tty():
        return bar(iterable, *args, **kwargs)
    every = interval()
    if every is None:
        return bar(iterable, *args, **{**kwargs, "disable": True})
    known = {k: kwargs[k] for k in ("total", "desc", "unit") if k in kwargs}
    return LineProgress(iterable, every=every, **known)
