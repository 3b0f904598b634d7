#!/usr/bin/env bash
# A check a machine with a GPU runs in under 5 minutes (not in CI): the GPU is found by torch and faiss, a faiss GPU
# index returns the CPU index's top-100, encoding runs on CUDA (fp32 and fp16 throughput against the CPU), and, when
# Ray is installed, the Ray engine's workers get the GPU: its flat search over object-store blocks and its fp16
# encode agree with the CPU's.
#
#   scripts/gpu_check.sh            # exit 0: all good; 1: a check failed; 0 with a message when there is no GPU
#   N_DOCS=50000 scripts/gpu_check.sh
#   GPU_CHECK_RAY_ON_CPU=1 scripts/gpu_check.sh   # only the Ray section, workers on CPUs (checks this script itself)
#
# On a machine without a GPU it says so and exits 0 without running anything heavy.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export N_DOCS=${N_DOCS:-20000} N_QUERIES=${N_QUERIES:-1000} N_ENCODE=${N_ENCODE:-2000}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
export GPU_CHECK_RAY_ON_CPU=${GPU_CHECK_RAY_ON_CPU:-0}

exec timeout 300 "$PYTHON" - <<'EOF'
import os
import sys
import tempfile
import time

import numpy as np


def say(msg):
    print(f"gpu_check: {msg}", flush=True)


N_DOCS, N_QUERIES, N_ENCODE, DIM, K = (int(os.environ["N_DOCS"]), int(os.environ["N_QUERIES"]),
                                       int(os.environ["N_ENCODE"]), 384, 100)
RAY_ON_CPU = os.environ["GPU_CHECK_RAY_ON_CPU"] == "1"


def vectors():
    """Normalised random documents, and queries near some of them (no ties: the CPU top-100 is unique)."""
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((N_DOCS, DIM), dtype=np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq = xb[rng.choice(N_DOCS, N_QUERIES, replace=False)] + 0.1 * rng.standard_normal((N_QUERIES, DIM), dtype=np.float32)
    return xb, xq


def overlap(a, b):
    return float(np.mean([len(set(x) & set(y)) / K for x, y in zip(a, b)]))


def texts():
    words = "the of retrieval model negative hard query passage document training embedding".split()
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(words, 120)) for _ in range(N_ENCODE)]


def check_faiss(xb, xq, i_cpu, t_cpu):
    """faiss's own GPU index against its CPU index."""
    import faiss

    ngpu = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if ngpu == 0:
        say("FAIL faiss sees no GPU (install faiss-gpu: pip install 'negmine[gpu]')")
        return False
    cpu = faiss.IndexFlatIP(DIM)
    cpu.add(xb)
    gpu = faiss.index_cpu_to_all_gpus(cpu)
    gpu.search(xq[:8], K)  # warm up
    t0 = time.time()
    _, i_gpu = gpu.search(xq, K)
    t_gpu = time.time() - t0
    ov = overlap(i_cpu, i_gpu)
    say(f"faiss {faiss.__version__}: {ngpu} GPU(s); flat top-{K} of {N_QUERIES} queries over {N_DOCS} docs: "
        f"CPU {t_cpu:.2f} s, GPU {t_gpu:.2f} s, overlap {ov:.4f}")
    if ov < 0.99:
        say("FAIL GPU and CPU top-100 differ (overlap < 0.99)")
        return False
    return True


def check_encode(name, docs):
    """CPU vs CUDA fp32 vs CUDA fp16 throughput and agreement; returns (ok, the CPU vectors of the first texts)."""
    import torch

    from negmine.encode.models import load_bi_encoder

    def rate(device, half, n):
        m = load_bi_encoder(name, device)
        if half:
            m = m.half()
        m.encode(docs[:64], batch_size=64)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.time()
        v = m.encode(docs[:n], batch_size=128, convert_to_numpy=True, normalize_embeddings=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return n / (time.time() - t0), v

    cpu_rate, v_cpu = rate("cpu", False, min(N_ENCODE, 256))
    fp32_rate, v32 = rate("cuda", False, N_ENCODE)
    load_bi_encoder.cache_clear()  # fp16 on a fresh copy
    fp16_rate, v16 = rate("cuda", True, N_ENCODE)
    m = min(len(v_cpu), len(v32))
    cos32 = float(np.mean(np.sum(v_cpu[:m] * v32[:m], axis=1)))
    cos16 = float(np.mean(np.sum(v32 * v16.astype(np.float32), axis=1)))
    say(f"encode all-MiniLM-L6-v2 (120-word texts): CPU {cpu_rate:.0f}/s, CUDA fp32 {fp32_rate:.0f}/s, "
        f"CUDA fp16 {fp16_rate:.0f}/s; cosine CPU vs CUDA {cos32:.5f}, fp32 vs fp16 {cos16:.5f}")
    ok = True
    if fp32_rate < cpu_rate:
        say("FAIL CUDA encoding is slower than the CPU")
        ok = False
    if cos32 < 0.999 or cos16 < 0.995:
        say("FAIL CUDA embeddings differ from the CPU's")
        ok = False
    return ok, v_cpu


def check_ray(xb, xq, i_cpu, name, docs, v_cpu, gpu):
    """The Ray engine on a local cluster of this machine, one worker with a GPU (``gpu``) or on the CPU: the flat
    index's blocks in the object store searched by the worker (a faiss GPU index there), and the encoder's ``auto``
    backend, which on GPU workers is fp16 torch, however the driver resolves it."""
    try:
        import ray
    except ImportError:
        say("ray is not installed: the Ray engine's GPU workers not checked (pip install 'negmine[ray]')")
        return True
    os.environ["NEGMINE_CACHE_DIR"] = tempfile.mkdtemp(prefix="negmine-gpu-check-")  # embed, do not read a cache
    from negmine.engine import use_engine
    from negmine.engine.params import EngineParams
    from negmine.retrieve.params import RetrieverConfig

    ok = True
    with use_engine(EngineParams(kind="ray", num_gpus=1.0 if gpu else 0.0, workers=1)) as eng:
        t0 = time.time()
        eng.ray()
        res = ray.cluster_resources()
        say(f"ray {ray.__version__}: local cluster in {time.time() - t0:.1f} s, {res.get('CPU', 0):.0f} CPU(s), "
            f"{res.get('GPU', 0):.0f} GPU(s)")
        if gpu and res.get("GPU", 0) < 1:
            say("FAIL Ray's local cluster sees no GPU")
            return False
        flat = eng.flat_index(RetrieverConfig(), len(xb), use_gpu=gpu)
        for s in range(0, len(xb), 8192):  # blocks of the object store, as a retrieve puts them
            flat.add(xb[s:s + 8192])
        index = flat.finish()
        t0 = time.time()
        i_ray, _ = eng.search(index, xq, K)
        t_search = time.time() - t0
        ov = overlap(i_cpu, i_ray)
        t0 = time.time()
        v_ray = eng.encode(docs, model=name, kind="doc", batch_size=128, backend="auto" if gpu else "torch")
        t_enc = time.time() - t0
    m = min(len(v_cpu), len(v_ray))
    cos = float(np.mean(np.sum(v_cpu[:m] * v_ray[:m], axis=1)))
    where = "GPU" if gpu else "CPU"
    say(f"ray engine, one worker on the {where}: flat top-{K} over {len(index.refs)} "
        f"object-store blocks {t_search:.2f} s, overlap with the CPU {ov:.4f}; encode {len(docs)} texts "
        f"{len(docs) / t_enc:.0f}/s (first call: worker start and model load included), cosine with the CPU {cos:.5f}")
    if ov < 0.99:
        say(f"FAIL the Ray engine's top-{K} differs from the CPU index's (overlap < 0.99)")
        ok = False
    if cos < 0.995:
        say("FAIL the Ray workers' embeddings differ from the CPU's")
        ok = False
    return ok


def main():
    try:
        import torch
    except ImportError:
        say("torch is not installed; nothing to check")
        return 0
    gpu = torch.cuda.is_available()
    if not gpu and not RAY_ON_CPU:
        say("no CUDA GPU found (torch.cuda.is_available() is False): nothing to check on this machine")
        return 0
    import faiss

    from negmine.models import resolve_model

    name = resolve_model("all-MiniLM-L6-v2")
    docs = texts()
    xb, xq = vectors()
    cpu = faiss.IndexFlatIP(DIM)
    cpu.add(xb)
    t0 = time.time()
    _, i_cpu = cpu.search(xq, K)
    t_cpu = time.time() - t0
    ok = True
    if RAY_ON_CPU:  # this script's own check, on a machine without a GPU: the Ray section on CPU workers
        say("GPU_CHECK_RAY_ON_CPU=1: the Ray section only, its worker on the CPU")
        from negmine.encode.models import load_bi_encoder

        v_cpu = load_bi_encoder(name, "cpu").encode(docs[:64], batch_size=64, normalize_embeddings=True)
        ok = check_ray(xb, xq, i_cpu, name, docs, v_cpu, gpu=False)
    else:
        say(f"torch {torch.__version__}: {torch.cuda.device_count()} GPU(s), 0 = {torch.cuda.get_device_name(0)}")
        ok = check_faiss(xb, xq, i_cpu, t_cpu)
        enc_ok, v_cpu = check_encode(name, docs)
        ok = check_ray(xb, xq, i_cpu, name, docs, v_cpu, gpu=True) and enc_ok and ok
    say("all checks passed" if ok else "some checks FAILED")
    return 0 if ok else 1


sys.exit(main())
EOF
