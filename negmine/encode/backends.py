"""Encoder backends: the same sentence-transformers model run by PyTorch, ONNX Runtime or OpenVINO.

Names (``retrieve.encoder_backend``, ``score.encoder_backend``, ``select.encoder_backend``):

* ``torch`` – sentence-transformers as it is (fp32 on CPU);
* ``onnx`` – the model's transformer exported with ``torch.onnx.export`` and run by ONNX Runtime (fp32);
* ``onnx-int8`` – that export with dynamically quantised int8 MatMul weights (per channel, reduced range);
* ``openvino`` – the fp32 ONNX export compiled by OpenVINO with its default inference precision for the device
  (bfloat16 on CPUs with AMX / AVX512-BF16, else fp32; the precision is part of the embedding-cache key);
* ``openvino-int8`` – OpenVINO with int8 activations and weights (``nncf.quantize``, optional: needs ``nncf``);
* ``auto`` (default) – on CUDA: ``torch`` in fp16 (concrete name ``torch-fp16``); on CPU: the first of
  :data:`CPU_PREFERENCE` (fastest first, measured by ``scripts/bench_encode.py``) that can be built and passes the
  quality gate, else ``torch``.

Exports are built once from the LOCAL model directory (nothing is downloaded) into
``cache_dir("encoders")/<key>/`` where the key hashes (model identity, revision, kind, backend, quantisation
config, export format). Each directory also holds ``gate.json``: the backend's agreement with PyTorch fp32 on
:data:`PROBE_TEXTS` (minimum cosine for a bi-encoder, maximum score difference for a cross-encoder), measured once
when the directory is built. ``auto`` reads it and never benchmarks at run time.

The exported bi-encoder reproduces sentence-transformers' module stack from the model's own configuration:
``modules.json`` (Transformer → Pooling → optional Normalize; anything else is not exportable and stays on
torch), ``1_Pooling/config.json`` (mean / cls / max / mean-sqrt-len), ``sentence_bert_config.json``
(``max_seq_length``, ``do_lower_case``) and the prompts of ``config_sentence_transformers.json``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from negmine.errors import InputError, RuntimeFailure
from negmine.retrieve.params import ENCODER_BACKENDS as BACKENDS

log = logging.getLogger("negmine")

CONCRETE = ("torch", "torch-fp16", "onnx", "onnx-int8", "openvino", "openvino-int8")
# auto on CPU, fastest first (docs/BENCHMARKS.md "Encoder backends"): the first that builds and passes the gate
CPU_PREFERENCE = ("openvino", "onnx-int8", "onnx")
EXPORT_FORMAT = 1
# quantisation configs (part of the export key and of the embedding-cache key)
QUANT: dict[str, dict[str, Any]] = {
    "onnx-int8": {"method": "ort-dynamic", "weights": "int8", "per_channel": True, "reduce_range": True,
                  "ops": ["MatMul"]},
    "openvino-int8": {"method": "nncf-static", "model_type": "transformer", "calibration": "probe-texts"},
}
GATE_MIN_COSINE = 0.99      # bi-encoder: every probe vector's cosine with torch fp32
GATE_MAX_SCORE_DIFF = 0.02  # cross-encoder: max |score - torch score| (after the model's activation)

# fixed probe texts of the quality gate (and the calibration set of openvino-int8): short and long, several topics
PROBE_TEXTS = (
    "what is the boiling point of water at high altitude",
    "Aspirin reduces the risk of heart attack in adults with cardiovascular disease.",
    "The transonic flow past a thin airfoil was computed with a relaxation method and compared with experiment.",
    "how do vaccines train the immune system",
    "Stock markets fell sharply after the central bank raised interest rates by half a percentage point.",
    "A library classification scheme groups books by subject so that related works stand together on the shelves.",
    "python list comprehension vs generator expression memory",
    "Mitochondria produce most of the chemical energy needed to power the biochemical reactions of the cell.",
    "The heat transfer coefficient of a laminar boundary layer decreases along a flat plate as the layer thickens.",
    "who wrote the novel war and peace",
    "Information retrieval systems rank documents by their estimated relevance to a user's query, using term "
    "statistics, link structure or learned representations of meaning; evaluation relies on test collections "
    "with relevance judgements made by human assessors for a fixed set of queries.",
    "Deep brain stimulation of the subthalamic nucleus improves motor symptoms in advanced Parkinson's disease, "
    "but cognitive and psychiatric side effects have been reported in a minority of patients. " * 6,
    "rain",
    "Quantum entanglement links the states of two particles so that measuring one determines the other.",
    "Buckling loads of cylindrical shells under axial compression are highly sensitive to initial imperfections.",
    "best way to learn a new language as an adult",
)


class BackendUnavailable(RuntimeFailure):
    """A backend that cannot be built for this model or machine (a missing package, an unsupported module)."""


def check_backend(name: str, flag: str = "--encoder-backend") -> str:
    if name not in BACKENDS and name != "torch-fp16":
        raise InputError(f"unknown encoder backend '{name}': use one of {', '.join(BACKENDS)}", flag)
    return name


# ----------------------------------------------------------------------------------------------------------------
# resolution


def _on_cuda(device: str | None) -> bool:
    if device:
        return device.startswith("cuda")
    from negmine.encode.models import pick_device

    return pick_device(None).startswith("cuda")


@functools.lru_cache(maxsize=64)
def resolve_backend(backend: str, model: str, device: str | None = None, kind: str = "bi") -> str:
    """The concrete backend ``backend`` means for ``model`` on ``device``. ``auto`` builds (once, cached on disk)
    the CPU candidates in preference order and takes the first whose stored gate passed."""
    check_backend(backend)
    if backend != "auto":
        return backend
    if _on_cuda(device):
        return "torch-fp16"
    if device not in (None, "cpu"):
        return "torch"
    for cand in CPU_PREFERENCE:
        try:
            gate = ensure_built(model, cand, kind)
        except BackendUnavailable as e:
            log.info("encoder backend auto: %s unavailable for %s (%s)", cand, model, e)
            continue
        if gate["passed"]:
            log.info("encoder backend auto: %s for %s (gate %s)", cand, model, _gate_summary(gate))
            return cand
        log.info("encoder backend auto: %s failed the quality gate for %s (%s)", cand, model, _gate_summary(gate))
    return "torch"


def _gate_summary(gate: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in gate.items() if k in ("min_cosine", "max_score_diff"))


@functools.lru_cache(maxsize=64)
def backend_identity(backend: str) -> dict[str, Any]:
    """What a concrete backend adds to the embedding-cache key: its name, quantisation and (OpenVINO) the
    inference precision this device runs at. ``torch`` adds nothing (keys of earlier versions stay valid)."""
    if backend == "torch":
        return {}
    out: dict[str, Any] = {"backend": backend}
    if backend in QUANT:
        out["quant"] = QUANT[backend]
    if backend.startswith("openvino"):
        out["precision"] = _ov_precision()
    if backend == "torch-fp16":
        out["precision"] = "f16"
    return out


def _ov_precision() -> str:
    try:
        import openvino as ov
    except ImportError:
        return "unavailable"
    hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    return str(hint.get_type_name() if hasattr(hint, "get_type_name") else hint)


# ----------------------------------------------------------------------------------------------------------------
# the model's sentence-transformers configuration


def _read_json(p: Path) -> dict[str, Any]:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


@functools.lru_cache(maxsize=16)
def st_config(model: str) -> dict[str, Any]:
    """Pooling, normalisation, truncation and prompts of a local sentence-transformers directory; raises
    BackendUnavailable for a module stack the exported runner does not reproduce."""
    from negmine.models import resolve_model

    root = Path(resolve_model(model))
    if not root.is_dir():
        raise BackendUnavailable(f"'{model}' is not a local model directory (exports are built offline only)")
    modules = _read_json(root / "modules.json")
    if not isinstance(modules, list) or not modules:
        raise BackendUnavailable(f"{root} has no modules.json")
    types = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if types[:2] != ["Transformer", "Pooling"] or any(t != "Normalize" for t in types[2:]):
        raise BackendUnavailable(f"module stack {types} is not Transformer → Pooling [→ Normalize]")
    if modules[0].get("path"):
        raise BackendUnavailable("the transformer is not at the model directory's root")
    pool = _read_json(root / modules[1].get("path", "1_Pooling") / "config.json")
    modes = [k[len("pooling_mode_"):] for k, v in pool.items() if k.startswith("pooling_mode_") and v]
    if len(modes) != 1 or modes[0] not in ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens"):
        raise BackendUnavailable(f"pooling {modes} is not supported by the exported runner")
    sb = _read_json(root / "sentence_bert_config.json")
    cst = _read_json(root / "config_sentence_transformers.json")
    return {"root": str(root), "pooling": modes[0], "normalize": len(types) > 2,
            "max_seq_length": sb.get("max_seq_length"), "do_lower_case": bool(sb.get("do_lower_case")),
            "prompts": cst.get("prompts") or {}, "default_prompt_name": cst.get("default_prompt_name")}


def cross_activation(model: str) -> str:
    """The activation CrossEncoder applies by default: 'sigmoid' or 'none'."""
    from negmine.models import resolve_model

    cfg = _read_json(Path(resolve_model(model)) / "config.json")
    name = ((cfg.get("sentence_transformers") or {}).get("activation_fn") or "").rsplit(".", 1)[-1]
    if name == "Sigmoid":
        return "sigmoid"
    if name == "Identity":
        return "none"
    if name:
        raise BackendUnavailable(f"cross-encoder activation {name} is not supported by the exported runner")
    return "sigmoid" if len(cfg.get("id2label") or {"0": "", "1": ""}) == 1 else "none"


# ----------------------------------------------------------------------------------------------------------------
# building


def export_key(model: str, backend: str, kind: str) -> dict[str, Any]:
    from negmine.encode.embed import model_identity

    name, rev = model_identity(model)
    return {"model": name, "revision": rev, "kind": kind, "backend": backend, "quant": QUANT.get(backend),
            "format": EXPORT_FORMAT}


def export_dir(model: str, backend: str, kind: str) -> Path:
    from negmine.cache import cache_dir

    key = export_key(model, backend, kind)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir("encoders") / digest


def ensure_built(model: str, backend: str, kind: str = "bi") -> dict[str, Any]:
    """Build ``backend``'s files for ``model`` (once) and return its stored quality gate."""
    if backend in ("torch", "torch-fp16"):
        return {"passed": True}
    d = export_dir(model, backend, kind)
    gate_file = d / "gate.json"
    if gate_file.is_file():
        return json.loads(gate_file.read_text())
    _require(backend)
    if kind == "bi":
        st_config(model)  # unsupported module stacks fail before any work
    else:
        cross_activation(model)
    d.mkdir(parents=True, exist_ok=True)
    (d / "key.json").write_text(json.dumps(export_key(model, backend, kind), indent=2, sort_keys=True))
    if backend == "onnx":
        _onnx_path(model, kind)
    elif backend == "onnx-int8":
        _quantize_ort(Path(_onnx_path(model, kind)), d / "model.onnx")
    elif backend == "openvino-int8":
        _quantize_ov(model, kind, Path(_onnx_path(model, kind)), d / "model.xml")
    gate = _measure_gate(model, backend, kind)
    _atomic_text(gate_file, json.dumps(gate, indent=2, sort_keys=True))
    return gate


def _require(backend: str) -> None:
    mods = {"onnx": ["onnxruntime", "onnx"], "onnx-int8": ["onnxruntime", "onnx"], "openvino": ["openvino", "onnx"],
            "openvino-int8": ["openvino", "onnx", "nncf"]}[backend]
    import importlib.util

    missing = [m for m in mods if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(f"encoder backend {backend} needs the package(s) {', '.join(missing)} "
                                 f"(pip install {' '.join(missing)})")


def _onnx_path(model: str, kind: str) -> str:
    """The fp32 ONNX export (built when missing): the base of onnx-int8, openvino and openvino-int8."""
    d = export_dir(model, "onnx", kind)
    p = d / "model.onnx"
    if not p.is_file():
        d.mkdir(parents=True, exist_ok=True)
        (d / "key.json").write_text(json.dumps(export_key(model, "onnx", kind), indent=2, sort_keys=True))
        _export_onnx(model, kind, p)
    return str(p)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _hf_inputs(tok: Any, model_forward_args: Sequence[str]) -> list[str]:
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tok.model_input_names
             or n == "input_ids"]
    return [n for n in names if n in model_forward_args]


def _export_onnx(model: str, kind: str, out: Path) -> None:
    import inspect
    import time
    import warnings

    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from negmine.models import resolve_model

    root = resolve_model(model)
    t0 = time.perf_counter()
    try:
        cls = AutoModel if kind == "bi" else AutoModelForSequenceClassification
        hf = cls.from_pretrained(root, attn_implementation="eager").eval()
        tok = AutoTokenizer.from_pretrained(root)
    except (OSError, ValueError) as e:
        raise BackendUnavailable(f"cannot load {root} for export: {str(e).splitlines()[0][:160]}") from None
    names = _hf_inputs(tok, list(inspect.signature(hf.forward).parameters))
    field = "last_hidden_state" if kind == "bi" else "logits"

    class Wrapped(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, *args: Any) -> Any:
            return getattr(self.m(**dict(zip(names, args, strict=True))), field)

    sample = tok(["an example input", "a second, somewhat longer example input"], padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "seq"} for n in [*names, "output"]}
    if kind != "bi":
        axes["output"] = {0: "batch"}
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapped(hf), tuple(sample[n] for n in names), str(tmp), input_names=names,
                          output_names=["output"], dynamic_axes=axes, opset_version=17, dynamo=False)
    os.replace(tmp, out)
    log.info("encoder export: %s (%s) → %s in %.1fs", model, kind, out, time.perf_counter() - t0)


def _quantize_ort(src: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q = QUANT["onnx-int8"]
    tmp = out.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{out.name}")
    root = logging.getLogger()
    was = root.disabled
    root.disabled = True  # quantize_dynamic logs a "run pre-processing" warning on the root logger
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=q["per_channel"],
                         reduce_range=q["reduce_range"], op_types_to_quantize=q["ops"])
    finally:
        root.disabled = was
    os.replace(tmp, out)


def _quantize_ov(model: str, kind: str, src: Path, out: Path) -> None:
    import nncf
    import openvino as ov

    runner = ExportedModel(model, kind, str(src), "openvino")
    calib = []
    texts = list(PROBE_TEXTS)
    for s in range(0, len(texts), 4):
        batch = texts[s:s + 4]
        calib.append(runner.tokenize(batch if kind == "bi" else [(t, u) for t, u in zip(batch, batch[1:] + batch[:1],
                                                                                            strict=True)]))
    core = ov.Core()
    q = nncf.quantize(core.read_model(str(src)), nncf.Dataset(calib), model_type=nncf.ModelType.TRANSFORMER,
                      subset_size=len(calib))
    tmp_dir = out.parent / f".tmp-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    ov.save_model(q, str(tmp_dir / out.name))
    for f in tmp_dir.iterdir():
        os.replace(f, out.parent / f.name)
    shutil.rmtree(tmp_dir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# the quality gate


def _probe_pairs() -> list[tuple[str, str]]:
    t = list(PROBE_TEXTS)
    return [(a, b) for a, b in zip(t, t[1:] + t[:1], strict=True)] + [(a, a) for a in t[:4]]


def _measure_gate(model: str, backend: str, kind: str) -> dict[str, Any]:
    from negmine.encode.models import load_bi_encoder, load_cross_encoder

    runner = load_runner(model, backend, kind)
    if kind == "bi":
        ref = load_bi_encoder(model, "cpu", None).encode(list(PROBE_TEXTS), batch_size=8, convert_to_numpy=True,
                                                         normalize_embeddings=True, show_progress_bar=False)
        got = runner.encode(list(PROBE_TEXTS), kind="doc", batch_size=8, normalize=True)
        cos = float(np.min(np.sum(ref * got, axis=1)))
        return {"passed": cos >= GATE_MIN_COSINE, "min_cosine": round(cos, 6), "threshold": GATE_MIN_COSINE,
                "probes": len(PROBE_TEXTS), "identity": backend_identity(backend)}
    pairs = _probe_pairs()
    ref = np.asarray(load_cross_encoder(model, "cpu", None).predict(pairs, batch_size=8, show_progress_bar=False,
                                                                      convert_to_numpy=True), dtype=np.float32)
    got = runner.predict(pairs, batch_size=8, activation="default")
    diff = float(np.max(np.abs(ref.reshape(-1) - got)))
    return {"passed": diff <= GATE_MAX_SCORE_DIFF, "max_score_diff": round(diff, 6),
            "threshold": GATE_MAX_SCORE_DIFF, "probes": len(pairs), "identity": backend_identity(backend)}


# ----------------------------------------------------------------------------------------------------------------
# running


def _threads() -> int:
    """Inference threads: the CPUs this process may use, capped by ``OMP_NUM_THREADS`` when set (Ray sets it to a
    worker's CPU share, so several workers on one machine do not oversubscribe it)."""
    try:
        n = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        n = max(1, os.cpu_count() or 1)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return min(n, int(omp)) if omp.isdigit() and int(omp) > 0 else n


class ExportedModel:
    """An exported model (ONNX file or OpenVINO IR) behind its fast tokenizer, with sentence-transformers' pooling
    and normalisation (bi-encoder) or the CrossEncoder's activation (cross-encoder) done in numpy."""

    def __init__(self, model: str, kind: str, path: str, engine: str, max_length: int | None = None) -> None:
        from transformers import AutoTokenizer

        from negmine.models import resolve_model

        self.kind = kind
        self.cfg: dict[str, Any] = st_config(model) if kind == "bi" else {"max_seq_length": None, "do_lower_case": False}
        self.tok = AutoTokenizer.from_pretrained(resolve_model(model))
        limit = max_length or self.cfg["max_seq_length"] or self.tok.model_max_length
        self.max_length = int(min(limit, self.tok.model_max_length)) if self.tok.model_max_length else int(limit)
        self.activation = cross_activation(model) if kind == "cross" else None
        self.num_labels = 0 if kind == "bi" else len(_read_json(Path(resolve_model(model)) / "config.json")
                                                     .get("id2label") or {"0": "", "1": ""})
        if engine == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = _threads()
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            self.inputs = [i.name for i in sess.get_inputs()]
            self._run = lambda feed: sess.run(None, feed)[0]
        else:
            import openvino as ov

            compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": _threads(),
                                                             "PERFORMANCE_HINT": "LATENCY"})
            req = compiled.create_infer_request()
            self.inputs = [i.get_any_name() for i in compiled.inputs]
            self._run = lambda feed: np.array(req.infer(feed)[0], copy=True)

    def tokenize(self, batch: Sequence[Any]) -> dict[str, np.ndarray]:
        if self.kind == "bi":
            texts = [t.lower() for t in batch] if self.cfg["do_lower_case"] else list(batch)
            enc = self.tok(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        else:
            enc = self.tok([a for a, _ in batch], [b for _, b in batch], padding=True, truncation=True,
                           max_length=self.max_length, return_tensors="np")
        return {n: enc[n].astype(np.int64) for n in self.inputs}

    def _prompt(self, kind: str, prompt: str | None, prompt_name: str | None) -> str:
        if prompt is not None:
            return prompt
        prompts = self.cfg["prompts"]
        name = prompt_name or ("query" if kind == "query" and "query" in prompts else None) or \
            ("document" if kind == "doc" and "document" in prompts else None) or self.cfg["default_prompt_name"]
        if prompt_name and prompt_name not in prompts:
            raise InputError(f"prompt name '{prompt_name}' not in the model's prompts {sorted(prompts)}",
                             "prompt_name")
        return prompts.get(name, "") if name else ""

    def encode(self, texts: Sequence[str], *, kind: str, prompt: str | None = None, prompt_name: str | None = None,
               batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        pre = self._prompt(kind, prompt, prompt_name)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first: least padding
        out: np.ndarray | None = None
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            feed = self.tokenize([pre + texts[i] for i in idx])
            hidden = np.asarray(self._run(feed), dtype=np.float32)
            vec = self._pool(hidden, feed["attention_mask"])
            if normalize or self.cfg["normalize"]:
                vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
            if out is None:
                out = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
            out[idx] = vec
        return out if out is not None else np.empty((0, 0), dtype=np.float32)

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mode = self.cfg["pooling"]
        m = mask[..., None].astype(np.float32)
        if mode == "cls_token":
            return hidden[:, 0].copy()
        if mode == "max_tokens":
            return np.where(m > 0, hidden, -1e9).max(axis=1)
        summed, counts = (hidden * m).sum(axis=1), np.maximum(m.sum(axis=1), 1e-9)
        return summed / (np.sqrt(counts) if mode == "mean_sqrt_len_tokens" else counts)

    def predict(self, pairs: Sequence[tuple[str, str]], *, batch_size: int = 32,
                activation: str = "default") -> np.ndarray:
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        out = np.empty(len(pairs), dtype=np.float32)
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            logits = np.asarray(self._run(self.tokenize([pairs[i] for i in idx])), dtype=np.float32).reshape(-1)
            out[idx] = logits
        act = self.activation if activation == "default" else activation
        return 1.0 / (1.0 + np.exp(-out)) if act == "sigmoid" else out


@functools.lru_cache(maxsize=8)
def load_runner(model: str, backend: str, kind: str = "bi", max_length: int | None = None) -> ExportedModel:
    """The runner of an exported backend (its files are built first when missing, without the gate)."""
    _require(backend)
    if backend in ("onnx", "openvino"):
        path = _onnx_path(model, kind)
    else:
        d = export_dir(model, backend, kind)
        name = "model.onnx" if backend == "onnx-int8" else "model.xml"
        path = str(d / name)
        if not Path(path).is_file():
            ensure_built(model, backend, kind)
    engine = "onnxruntime" if backend.startswith("onnx") else "openvino"
    return ExportedModel(model, kind, path, engine, max_length)
