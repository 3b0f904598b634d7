"""Engines: where a stage's heavy work runs. The one seam between the stages and an engine.

Stages never know which engine runs them. They hand their shard loop to :func:`negmine.io.store.run_shards`, which
asks the current engine's ``map_shards`` to compute the shards that are not finished yet, and they reach the models
only through the thin functions below (:func:`encode`, :func:`cross_encode`, :func:`flat_index`, :func:`search`),
which ask the current engine. The local engine (the default) does everything in this process, as negmine always
did; the Ray engine (:mod:`negmine.engine.ray`) sends the model work to a pool of Ray actors (one model each).
Adding an engine means writing one class with these five methods (and ``close``): no stage changes.

The engine is chosen per process with :func:`use_engine` (the CLI does it from ``--engine`` / config ``engine``).
Ray is imported only when a Ray engine first has model work to do.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from negmine.engine.params import EngineParams
    from negmine.retrieve.dense import FaissSearch
    from negmine.retrieve.params import RetrieverConfig


class LocalEngine:
    """Everything in this process, in order: what negmine did before engines existed."""

    name = "local"

    def map_shards(self, compute: Callable[[int, Any], Mapping[str, Any]],
                   plan: Iterable[tuple[int, Any, bool]]) -> Iterator[tuple[int, Any, Mapping[str, Any] | None, bool]]:
        """``(index, unit, tables, resumed)`` for each ``(index, unit, resumed)`` of ``plan``, in order; a resumed
        shard is not computed (tables None)."""
        for index, unit, resumed in plan:
            yield index, unit, (None if resumed else compute(index, unit)), resumed

    def encode(self, texts: Sequence[str], **kw: Any) -> np.ndarray:
        from negmine.encode.embed import encode_texts

        return encode_texts(texts, **kw)

    def cross_encode(self, pairs: Sequence[tuple[str, str]], *, model: str, device: str | None,
                     max_length: int | None, batch_size: int, activation: str, backend: str = "torch") -> np.ndarray:
        from negmine.score.cross_encoder import predict_pairs

        return predict_pairs(pairs, model=model, device=device, max_length=max_length, batch_size=batch_size,
                             activation=activation, backend=backend)

    def flat_index(self, cfg: RetrieverConfig, n_total: int, use_gpu: bool) -> Any:
        """Where a flat index's vectors go as they are embedded (``add``); ``finish()`` gives what :func:`search`
        searches. Here: one faiss index in this process."""
        from negmine.retrieve.dense import FlatIndex

        return FlatIndex(cfg, n_total, use_gpu)

    def search(self, index: FaissSearch, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return index.search(xq, k)

    def close(self) -> None:
        pass


class ThreadedShards:
    """A local executor that computes up to ``workers`` shards at once in threads of this process, yielding them in
    order, so that the caller's thread writes one shard while the next ones are computed. For stages whose compute
    is numpy / Arrow work that releases the GIL (select); the output is the same as computing them one by one."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = max(1, int(workers))

    def map_shards(self, compute: Callable[[int, Any], Mapping[str, Any]],
                   plan: Iterable[tuple[int, Any, bool]]) -> Iterator[tuple[int, Any, Mapping[str, Any] | None, bool]]:
        if self.workers == 1:
            yield from _LOCAL.map_shards(compute, plan)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        pending: deque = deque()
        items = iter(plan)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="negmine-shard") as pool:
            try:
                while True:
                    while len(pending) < self.workers:
                        nxt = next(items, None)
                        if nxt is None:
                            break
                        index, unit, resumed = nxt
                        pending.append((index, unit, resumed, None if resumed else pool.submit(compute, index, unit)))
                    if not pending:
                        return
                    index, unit, resumed, fut = pending.popleft()
                    yield index, unit, (None if fut is None else fut.result()), resumed
            finally:
                for *_, fut in pending:
                    if fut is not None:
                        fut.cancel()


_CURRENT: contextvars.ContextVar[Any] = contextvars.ContextVar("negmine_engine", default=None)
_LOCAL = LocalEngine()


def current() -> Any:
    """The engine of this context (the local engine unless :func:`use_engine` chose another)."""
    eng = _CURRENT.get()
    return _LOCAL if eng is None else eng


def make_engine(params: EngineParams | None) -> Any:
    if params is None or params.kind == "local":
        return _LOCAL
    from negmine.engine.ray import RayEngine

    return RayEngine(params)


@contextlib.contextmanager
def use_engine(params: EngineParams | None) -> Iterator[Any]:
    """Run the enclosed stages on the engine ``params`` names; the engine is closed after (a local Ray cluster it
    started is shut down)."""
    eng = make_engine(params)
    token = _CURRENT.set(eng)
    try:
        yield eng
    finally:
        _CURRENT.reset(token)
        eng.close()


# -- the thin functions the stages call -------------------------------------------------------------------------


def encode(texts: Sequence[str], **kw: Any) -> np.ndarray:
    """:func:`negmine.encode.embed.encode_texts` on the current engine (same arguments, same result)."""
    return current().encode(texts, **kw)


def cross_encode(pairs: Sequence[tuple[str, str]], **kw: Any) -> np.ndarray:
    """Cross-encoder scores of ``(query, document)`` pairs on the current engine."""
    return current().cross_encode(pairs, **kw)


def flat_index(cfg: RetrieverConfig, n_total: int, use_gpu: bool) -> Any:
    """A flat index of ``n_total`` vectors to be added block by block, on the current engine."""
    return current().flat_index(cfg, n_total, use_gpu)


def search(index: FaissSearch, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (indices, scores) of the query vectors ``xq`` in ``index`` on the current engine."""
    return current().search(index, xq, k)
