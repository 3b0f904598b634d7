"""The Ray engine: the model work of a stage runs on a Ray cluster, one model per worker actor.

What runs where:

* **driver** (the `negmine` process): the shard loop (:func:`negmine.io.store.run_shards`), reading inputs,
  the embedding cache (lookups, and appending what the workers computed), building an IVF / HNSW index, writing the
  shards, manifests and fingerprints: exactly what the local engine writes. The judge (relabel, the LLM teacher)
  stays on the driver: its requests are already concurrent.
* **workers** (Ray actors, ``engine.num_cpus`` / ``engine.num_gpus`` each; a GPU when the cluster has one):
  embedding (dense retrieval: corpus and queries; the bi-encoder teacher), cross-encoder scoring, and the dense
  search of query blocks. A flat index's vectors are blocks in Ray's object store, put there by the driver as they
  are embedded and read by the workers where they lie (shared memory on one node; on a GPU, copied to it once); an
  IVF / HNSW index, built on the driver, is copied to each worker.

Work is cut into blocks of ``engine.batch_size`` rows (the dense search: the local engine's blocks of
``SEARCH_BATCH`` queries, so that faiss returns the same scores to the last bit); each block is one actor call whose result is stored at its
row positions, so a block is never lost or counted twice. A worker that dies (killed, out of memory, node lost) is
replaced by a fresh actor and its unfinished blocks are sent again (``MAX_RETRIES`` times per block). A driver
killed mid-stage resumes like the local engine: finished shards are kept, finished embeddings are in the cache.

The actor pools are kept for the engine's life (one per model), so the models load once per stage run, not once
per shard. (Ray Data's ``map_batches`` over an actor pool was the first design: on this Ray version a job whose
actor is SIGKILLed hangs instead of retrying, and each job starts its actors afresh, 3-8 s per shard here.)
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from negmine.engine import LocalEngine
from negmine.engine.params import EngineParams
from negmine.errors import InputError, RuntimeFailure

log = logging.getLogger("negmine")

MAX_RETRIES = 3  # times a block is sent again after the worker computing it died
IN_FLIGHT = 2    # blocks queued per worker (the next one is ready when a worker finishes)


# -- kernels: built once per actor (one model each), called once per block --------------------------------------


class EncodeKernel:
    """Embeds texts with a bi-encoder exactly as the local engine does (raw float16 model output; the driver
    caches it and finishes it like a cached read)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from negmine.encode.backends import load_runner
        from negmine.encode.models import load_bi_encoder

        self.spec = spec
        backend = spec.get("backend", "torch")  # concrete: resolved on the driver
        if backend in ("torch", "torch-fp16"):  # load now, not in the first call
            load_bi_encoder(spec["model"], spec["device"], spec["max_seq_length"])
        else:
            load_runner(spec["model"], backend, "bi", spec["max_seq_length"])

    def __call__(self, block: dict[str, Any]) -> np.ndarray:
        from negmine.encode.embed import _encode_missing

        return _encode_missing(list(block["text"]), np.empty(0, "V16"), cache=None, desc=None, **self.spec,
                               **block["kw"])


class CrossEncodeKernel:
    """Scores (query, document) pairs with a cross-encoder (``negmine.score.cross_encoder.predict_pairs``)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from negmine.score.cross_encoder import load_teacher_model

        self.spec = spec
        load_teacher_model(spec["model"], spec["device"], spec["max_length"], spec.get("backend", "torch"))

    def __call__(self, block: dict[str, Any]) -> np.ndarray:
        from negmine.score.cross_encoder import predict_pairs

        return predict_pairs(list(zip(block["query"], block["doc"], strict=True)), **self.spec)


class SearchKernel:
    """Searches query-vector blocks in a copy of the driver's faiss index: an IVF / HNSW index, built on the driver
    because it trains on every vector (copied to the worker's GPUs when faiss sees some and the index type has a GPU
    implementation). A flat index is never copied whole: :class:`FlatSearchKernel`."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import faiss

        from negmine.retrieve.dense import FaissSearch

        cpu = faiss.deserialize_index(np.asarray(spec["index"], dtype=np.uint8))
        accel = None
        if spec["gpu"] and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
            accel = faiss.index_cpu_to_all_gpus(cpu)
        self.search = FaissSearch(cpu, accel, spec["k_limit"], exact=False)

    def __call__(self, block: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return self.search.search(np.asarray(block["xq"], dtype=np.float32), int(block["k"]))


class FlatSearchKernel:
    """Searches a query block over a flat index's vectors, which are blocks in the Ray object store (put there by
    :class:`RayFlatIndex` as they were embedded). Each call maps them (a worker on the node that holds them reads
    the shared memory, no copy; another node fetches them once) and runs faiss's brute-force search per block,
    cut by :func:`negmine.retrieve.dense.exact_knn`, as the local engine's one index is: the same rows, bit for bit.
    Nothing is kept between calls, so the store frees the vectors once the driver drops them. On a worker with GPUs
    the vectors are copied to a GPU flat index once per index (and kept)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import faiss

        self.k_limit = spec["k_limit"]
        self.gpu = bool(spec["gpu"]) and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
        self.gpu_index: tuple[Any, Any] | None = None  # (the vectors' refs, the GPU index)

    def __call__(self, block: dict[str, Any]) -> Any:
        """The block's (indices, scores), cut; with ``raw``, faiss's (scores, local indices) per document block."""
        import faiss
        import ray

        from negmine.retrieve.dense import exact_knn

        refs, firsts = block["vectors"], block["firsts"]
        vectors = ray.get(list(refs))
        q, k = np.asarray(block["xq"], dtype=np.float32), int(block["k"])
        parts: list[Any] = []
        for first, xb in zip(firsts, vectors, strict=True):
            def search(q: np.ndarray, kk: int, xb: np.ndarray = xb) -> tuple[np.ndarray, np.ndarray]:
                return faiss.knn(q, xb, kk, metric=faiss.METRIC_INNER_PRODUCT)

            parts.append((first, len(xb), search))
        if block.get("raw"):  # each block's own lists, asked as exact_knn asks them, for the driver to cut
            return [search(q, min(k, n)) for _, n, search in parts]  # (RayEngine._search_flat)
        if self.gpu:
            parts = self._gpu_parts(refs, vectors, parts)
        return exact_knn(parts, q, k)

    def _gpu_parts(self, refs: Any, vectors: list[np.ndarray], cpu_parts: list[Any]) -> list[Any]:
        import faiss

        from negmine.retrieve.dense import exact_knn

        key = [r.hex() for r in refs]
        if self.gpu_index is None or self.gpu_index[0] != key:
            self.gpu_index = None
            index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(vectors[0].shape[1]))
            for xb in vectors:
                index.add(xb)
            self.gpu_index = (key, index)
        gpu, limit, n = self.gpu_index[1], self.k_limit, sum(len(x) for x in vectors)

        def search(q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
            if kk <= limit:
                return gpu.search(q, kk)
            i, s = exact_knn(cpu_parts, q, kk)  # deeper than faiss' GPU k-selection: the CPU blocks
            return s, i

        return [(0, n, search)]


KERNELS: dict[str, type] = {"encode": EncodeKernel, "cross-encode": CrossEncodeKernel, "search": SearchKernel,
                            "flat-search": FlatSearchKernel}


class _Worker:
    """The actor: builds each kernel (model) it is asked for once and keeps it, so one pool of workers serves every
    model of a stage run (the bi-encoder, the faiss index, the cross-encoder) without holding more CPUs."""

    def __init__(self) -> None:
        logging.getLogger("negmine").setLevel(logging.WARNING)
        self.kernels: dict[str, Any] = {}

    def run(self, kernel: type, key: str, spec: dict[str, Any], block: dict[str, Any]) -> Any:
        k = self.kernels.get(key)
        if k is None:
            k = self.kernels[key] = kernel(spec)
        return k(block)

    def pid(self) -> int:
        return os.getpid()


# -- the engine -------------------------------------------------------------------------------------------------


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class _Pool:
    """The worker actors; ``map`` sends blocks for one kernel and yields ``(block index, result)`` as they finish,
    replacing a dead actor and sending its blocks again."""

    def __init__(self, ray: Any, size: int, options: dict[str, Any]) -> None:
        self.ray, self.options = ray, options
        self.remote = ray.remote(_Worker)
        self.actors = [self._new() for _ in range(size)]
        self.restarts = 0

    def _new(self) -> Any:
        return self.remote.options(**self.options).remote()

    def map(self, kernel: type, key: str, spec_ref: Any, blocks: Sequence[dict[str, Any]]) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        died = tuple(getattr(ray.exceptions, n) for n in ("ActorDiedError", "ActorUnavailableError", "RayActorError",
                                                           "WorkerCrashedError") if hasattr(ray.exceptions, n))
        todo = list(range(len(blocks)))[::-1]
        tries = [0] * len(blocks)
        running: dict[Any, tuple[int, int]] = {}  # object ref -> (block, actor slot)
        load = [0] * len(self.actors)

        def submit() -> None:
            while todo:
                slot = min(range(len(self.actors)), key=load.__getitem__)
                if load[slot] >= IN_FLIGHT:
                    return
                b = todo.pop()
                running[self.actors[slot].run.remote(kernel, key, spec_ref, blocks[b])] = (b, slot)
                load[slot] += 1

        submit()
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            b, slot = running.pop(ref)
            load[slot] -= 1
            try:
                result = ray.get(ref)
            except died as e:
                tries[b] += 1
                if tries[b] > MAX_RETRIES:
                    raise RuntimeFailure(f"ray: block {b} failed {tries[b]} times, its worker died each time "
                                         f"({_first_line(e)})") from None
                log.warning("ray: a worker died (%s); starting a new one and sending its blocks again",
                            _first_line(e))
                self._replace(slot, running, todo)
                load[slot] = 0
                todo.append(b)
                submit()
                continue
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, (InputError, RuntimeFailure)):
                    raise cause from None
                raise RuntimeFailure(f"ray: a {kernel.__name__} worker failed: {_first_line(e)}") from None
            submit()
            yield b, result

    def _replace(self, slot: int, running: dict[Any, tuple[int, int]], todo: list[int]) -> None:
        """A fresh actor in ``slot``; blocks queued on the dead one go back to ``todo``."""
        dead = self.actors[slot]
        for ref, (b, s) in list(running.items()):
            if s == slot:
                running.pop(ref)
                todo.append(b)
        try:
            self.ray.kill(dead)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.actors[slot] = self._new()
        self.restarts += 1

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        self.actors = []


class RayFlatIndex:
    """A flat index on the Ray engine: each block of document vectors the driver embeds is put in the object store
    as it comes (``add``), and the driver keeps only the references. The workers search the blocks where they are
    (:class:`FlatSearchKernel`): a local cluster's workers share the one copy in shared memory, and no process
    holds the vectors twice (before, the driver built a faiss index, serialised it and each worker deserialised
    its own copy: 5.21 GiB in one process at 1M x 384). The store frees the blocks when this object is dropped."""

    def __init__(self, engine: RayEngine, use_gpu: bool) -> None:
        from negmine.retrieve.dense import GPU_K_LIMIT

        self.engine, self.use_gpu, self.k_limit = engine, use_gpu, GPU_K_LIMIT
        self.refs: list[Any] = []
        self.firsts: list[int] = []
        self.ntotal = 0

    def add(self, vecs: np.ndarray) -> None:
        if not len(vecs):
            return
        self.refs.append(self.engine.ray().put(np.ascontiguousarray(vecs, dtype=np.float32)))
        self.firsts.append(self.ntotal)
        self.ntotal += len(vecs)

    def finish(self) -> RayFlatIndex:
        return self


class RayEngine(LocalEngine):
    """Model work on Ray actors; everything else as the local engine (which it extends)."""

    name = "ray"

    def __init__(self, params: EngineParams) -> None:
        self.params = params
        self._ray: Any = None
        self._owns_cluster = False
        self._pool_: _Pool | None = None
        self._specs: dict[Any, tuple[str, Any, Any]] = {}  # spec key -> (kernel key, spec object ref, what it holds)

    # -- cluster --------------------------------------------------------------------------------------------------
    def ray(self) -> Any:
        """The ``ray`` module, connected (a local cluster is started when no address is given)."""
        if self._ray is not None:
            return self._ray
        try:
            import ray
        except ImportError:
            raise InputError("the Ray engine needs Ray: pip install 'negmine[ray]'", "--engine") from None
        if not ray.is_initialized():
            address = self.params.address or os.environ.get("RAY_ADDRESS") or None
            if address and address != "auto" and not address.startswith("ray://"):
                _check_reachable(address)
            t0 = time.time()
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, configure_logging=True)
            except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:
                raise InputError(f"cannot connect to the Ray cluster at {address}: {_first_line(e)}",
                                 "--engine-address") from None
            self._owns_cluster = address is None
            log.info("ray: %s in %.1f s (%s)", "local cluster started" if address is None else f"connected to "
                     f"{address}", time.time() - t0, _resources(ray))
        self._ray = ray
        return ray

    def _options(self) -> dict[str, Any]:
        ray = self.ray()
        gpus = self.params.num_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        return {"num_cpus": self.params.num_cpus, "num_gpus": gpus, "max_restarts": 0}

    def _pool(self) -> _Pool:
        if self._pool_ is not None:
            return self._pool_
        opts = self._options()
        size = self.params.workers
        if size is None:
            res = self.ray().cluster_resources()
            by_cpu = int(res.get("CPU", 1) // self.params.num_cpus)
            size = int(res.get("GPU", 0) // opts["num_gpus"]) if opts["num_gpus"] else by_cpu
        self._pool_ = _Pool(self.ray(), max(1, size), opts)
        log.info("ray: %d worker(s), %s CPU and %s GPU each", max(1, size), opts["num_cpus"], opts["num_gpus"])
        return self._pool_

    def _map(self, kind: str, spec: dict[str, Any], blocks: Sequence[dict[str, Any]],
             hold: Any = None) -> Iterator[tuple[int, Any]]:
        """Run the kernel ``kind`` built from ``spec`` over ``blocks`` on the workers (``hold``: an object the
        spec was made from, kept alive while the spec is cached under its id)."""
        skey = (kind, id(hold)) if hold is not None else (kind, repr(sorted(spec.items())))
        known = self._specs.get(skey)
        if known is None:
            known = self._specs[skey] = (f"{kind}-{len(self._specs)}", self.ray().put(spec), hold)
        return self._pool().map(KERNELS[kind], known[0], known[1], blocks)

    def _backend(self, backend: str, model: str, device: str | None, kind: str) -> str:
        """The encoder backend ``backend`` means on the *workers*, resolved once on the driver so that every worker
        runs the same one (and the embedding cache is keyed by it): ``auto`` is fp16 torch when the workers get
        GPUs, whatever the driver has, and the CPU choice otherwise (without importing torch here to ask CUDA)."""
        from negmine.encode.backends import resolve_backend

        where = device or ("cuda" if self._options()["num_gpus"] else "cpu")
        return resolve_backend(backend, model, where, kind)

    def _blocks(self, n: int) -> list[tuple[int, int]]:
        step = self.params.batch_size
        return [(s, min(s + step, n)) for s in range(0, n, step)]

    # -- the model work ---------------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], *, model: str, kind: str, prompt: str | None = None,  # type: ignore[override]
               prompt_name: str | None = None, max_seq_length: int | None = None, batch_size: int = 64,
               device: str | None = None, normalize: bool = True, use_cache: bool = True,
               desc: str | None = None, backend: str = "auto") -> np.ndarray:
        """Texts the embedding cache does not hold are embedded on the workers and appended to the cache here;
        then :func:`encode_texts` reads every row from the cache: the same vectors a local run returns."""
        from negmine.encode.cache import EmbeddingCache, text_keys
        from negmine.encode.embed import CHUNK_ROWS, COUNTERS, cache_key, encode_texts

        backend = self._backend(backend, model, device, "bi")
        model_spec = {"model": model, "device": device, "max_seq_length": max_seq_length, "backend": backend}
        call = {"kind": kind, "prompt": prompt, "prompt_name": prompt_name, "batch_size": batch_size,
                "normalize": normalize}
        kw: dict[str, Any] = model_spec | call
        if not use_cache or not len(texts):
            return encode_texts(texts, use_cache=use_cache, desc=desc, **kw)  # (nothing to keep the rows in)
        cache = EmbeddingCache.for_key(cache_key(model, kind, prompt, prompt_name, max_seq_length, normalize,
                                                   backend))
        keys = text_keys(texts)
        found, _ = cache.lookup(keys)
        missing = np.nonzero(~found)[0]
        if len(missing):
            uniq, first = np.unique(keys[missing], return_index=True)
            todo = [texts[i] for i in missing[first]]
            spans = self._blocks(len(todo))
            t0 = time.time()
            log.info("embed %s on ray: %d texts, %d to encode (%s)", desc or kind, len(texts), len(todo), model)
            got_k: list[np.ndarray] = []
            got_v: list[np.ndarray] = []
            for b, vec in self._map("encode", model_spec, [{"text": todo[s:e], "kw": call} for s, e in spans]):
                s, e = spans[b]
                got_k.append(uniq[s:e])
                got_v.append(vec)
                if sum(len(k) for k in got_k) >= CHUNK_ROWS:
                    cache.append(np.concatenate(got_k), np.concatenate(got_v))
                    got_k, got_v = [], []
            if got_k:
                cache.append(np.concatenate(got_k), np.concatenate(got_v))
            log.info("embed %s on ray: %d texts in %.1f s", desc or kind, len(todo), time.time() - t0)
            COUNTERS["encoded"] += len(todo)
            COUNTERS["cached"] -= len(todo)  # (encode_texts counts them as cached below)
        return encode_texts(texts, desc=desc, **kw)

    def cross_encode(self, pairs: Sequence[tuple[str, str]], *, model: str, device: str | None,
                     max_length: int | None, batch_size: int, activation: str, backend: str = "torch") -> np.ndarray:
        out = np.empty(len(pairs), dtype=np.float32)
        if not len(pairs):
            return out
        spec = {"model": model, "device": device, "max_length": max_length, "batch_size": batch_size,
                "activation": activation, "backend": self._backend(backend, model, device, "cross")}
        spans = self._blocks(len(pairs))
        blocks = [{"query": [q for q, _ in pairs[s:e]], "doc": [d for _, d in pairs[s:e]]} for s, e in spans]
        for b, scores in self._map("cross-encode", spec, blocks):
            s, e = spans[b]
            out[s:e] = scores
        return out

    def flat_index(self, cfg: Any, n_total: int, use_gpu: bool) -> RayFlatIndex:
        return RayFlatIndex(self, use_gpu)

    def search(self, index: Any, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Blocks of ``SEARCH_BATCH`` queries (not ``engine.batch_size``): the faiss calls the local engine makes,
        because faiss's scores depend in the last bit on how many queries one call holds (BLAS); other blocks gave
        other near-ties at the depth cut (docs/BENCHMARKS.md, "Scale"). A flat index (:class:`RayFlatIndex`) is
        searched where its vectors are (:meth:`_search_flat`); an IVF / HNSW index is sent to the workers whole."""
        from negmine.retrieve.dense import SEARCH_BATCH

        flat = isinstance(index, RayFlatIndex)
        k = min(k, index.ntotal if flat else index.cpu.ntotal)
        idx = np.empty((len(xq), k), dtype=np.int64)
        scores = np.empty((len(xq), k), dtype=np.float32)
        if not len(xq) or not k:
            return np.full_like(idx, -1), np.zeros_like(scores)
        spans = [(s, min(s + SEARCH_BATCH, len(xq))) for s in range(0, len(xq), SEARCH_BATCH)]
        if flat:
            return self._search_flat(index, xq, k, spans, idx, scores)
        found = self._map("search", self._index_spec(index), [{"xq": xq[s:e], "k": k} for s, e in spans], hold=index)
        for b, (bi, bs) in found:  # (each block sorted by its worker: FaissSearch.search)
            s, e = spans[b]
            idx[s:e], scores[s:e] = bi, bs
        return idx, scores

    def _search_flat(self, index: RayFlatIndex, xq: np.ndarray, k: int, spans: list[tuple[int, int]],
                     idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query block goes whole to one worker, which searches every document block and cuts the lists
        (:func:`exact_knn`), except the last ones when fewer query blocks are left than CPU workers (a small query
        set, or a shard's last block, which one worker would search while the others wait): those are searched by
        several workers, each over a run of the document blocks, returning faiss's own lists per document block,
        and the driver cuts them with the same :func:`exact_knn`. The faiss calls are the same, so the rows are the
        same bit for bit. A query whose tie at the cut runs past the margin is then asked again, block by block."""
        from negmine.retrieve.dense import TIE_PAD, Part, exact_knn

        spec = {"gpu": index.use_gpu, "k_limit": index.k_limit}
        workers = len(self._pool().actors)
        whole = len(spans) - len(spans) % workers
        groups = min(len(index.refs), workers // max(1, len(spans) - whole))
        if groups < 2 or self._options()["num_gpus"]:  # (a GPU worker searches its whole copy at once)
            whole = len(spans)
        runs = [g.tolist() for g in np.array_split(np.arange(len(index.refs)), max(groups, 1))]
        sizes = np.diff([*index.firsts, index.ntotal]).tolist()

        def raw(q: np.ndarray, kk: int, blocks: list[int]) -> dict[str, Any]:
            return {"xq": q, "k": kk, "raw": True, "vectors": [index.refs[j] for j in blocks],
                    "firsts": [index.firsts[j] for j in blocks]}

        tasks: list[dict[str, Any]] = [{"xq": xq[s:e], "k": k, "vectors": index.refs, "firsts": index.firsts}
                                       for s, e in spans[:whole]]
        tasks += [raw(xq[s:e], k + TIE_PAD, run) for s, e in spans[whole:] for run in runs]
        hits: dict[tuple[int, int], Any] = {}  # the split query blocks' lists, by (document block, query block)
        for t, got in self._map("flat-search", spec, tasks):
            if t < whole:  # (sorted and cut by the worker)
                s, e = spans[t]
                idx[s:e], scores[s:e] = got
            else:
                b, r = divmod(t - whole, len(runs))
                hits.update({(j, whole + b): h for j, h in zip(runs[r], got, strict=True)})
        for b in range(whole, len(spans)):
            s, e = spans[b]
            q0: np.ndarray = tasks[whole + (b - whole) * len(runs)]["xq"]

            def search(q: np.ndarray, kk: int, j: int, b: int = b,
                       q0: np.ndarray = q0) -> tuple[np.ndarray, np.ndarray]:
                if q is q0 and kk == min(k + TIE_PAD, sizes[j]):
                    return hits[j, b]
                [(_, (again,))] = list(self._map("flat-search", spec, [raw(q, kk, [j])]))
                return again

            parts: list[Part] = [(index.firsts[j], sizes[j], functools.partial(search, j=j))
                                 for j in range(len(index.refs))]
            idx[s:e], scores[s:e] = exact_knn(parts, q0, k)
        return idx, scores

    def _index_spec(self, index: Any) -> dict[str, Any]:
        known = self._specs.get(("search", id(index)))
        if known is not None:
            return {}  # (already put in the object store under this index's id: not serialised again)
        import faiss

        return {"index": faiss.serialize_index(index.cpu), "k_limit": index.k_limit, "gpu": index.gpu_ok}

    def close(self) -> None:
        if self._pool_ is not None:
            self._pool_.close()
        self._pool_ = None
        self._specs.clear()
        if self._ray is not None and self._owns_cluster:
            self._ray.shutdown()
        self._ray = None


def _resources(ray: Any) -> str:
    res = ray.cluster_resources()
    return f"{res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU"


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ``host:port`` that accepts no connection is bad input (Ray itself would retry for a minute)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        raise InputError(f"no Ray cluster at {address} ({getattr(e, 'strerror', None) or _first_line(e)})",
                         "--engine-address") from None

