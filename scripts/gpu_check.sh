#!/usr/bin/env bash
# A check a machine with a GPU runs in under 5 minutes (not in CI): the GPU is found by torch and faiss, a faiss GPU
# index returns the CPU index's top-100, and encoding runs on CUDA (fp32 and fp16 throughput against the CPU).
#
#   scripts/gpu_check.sh            # exit 0: all good; 1: a check failed; 0 with a message when there is no GPU
#   N_DOCS=50000 scripts/gpu_check.sh
#
# On a machine without a GPU it says so and exits 0 without running anything heavy.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export N_DOCS=${N_DOCS:-20000} N_QUERIES=${N_QUERIES:-1000} N_ENCODE=${N_ENCODE:-2000}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}

exec timeout 300 "$PYTHON" - <<'EOF'
import os
import sys
import time

import numpy as np


def say(msg):
    print(f"gpu_check: {msg}", flush=True)


try:
    import torch
except ImportError:
    say("torch is not installed; nothing to check")
    sys.exit(0)
if not torch.cuda.is_available():
    say("no CUDA GPU found (torch.cuda.is_available() is False): nothing to check on this machine")
    sys.exit(0)
ok = True
say(f"torch {torch.__version__}: {torch.cuda.device_count()} GPU(s), 0 = {torch.cuda.get_device_name(0)}")

# -- faiss: GPU index vs CPU index, top-100 overlap -------------------------------------------------------------
import faiss

n_docs, n_q, dim, k = int(os.environ["N_DOCS"]), int(os.environ["N_QUERIES"]), 384, 100
ngpu = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
if ngpu == 0:
    say("FAIL faiss sees no GPU (install faiss-gpu: pip install 'negmine[gpu]')")
    ok = False
else:
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((n_docs, dim), dtype=np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq = xb[rng.choice(n_docs, n_q, replace=False)] + 0.1 * rng.standard_normal((n_q, dim), dtype=np.float32)
    cpu = faiss.IndexFlatIP(dim)
    cpu.add(xb)
    t0 = time.time()
    _, i_cpu = cpu.search(xq, k)
    t_cpu = time.time() - t0
    gpu = faiss.index_cpu_to_all_gpus(cpu)
    gpu.search(xq[:8], k)  # warm up
    t0 = time.time()
    _, i_gpu = gpu.search(xq, k)
    t_gpu = time.time() - t0
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(i_cpu, i_gpu)])
    say(f"faiss {faiss.__version__}: {ngpu} GPU(s); flat top-{k} of {n_q} queries over {n_docs} docs: "
        f"CPU {t_cpu:.2f} s, GPU {t_gpu:.2f} s, overlap {overlap:.4f}")
    if overlap < 0.99:
        say("FAIL GPU and CPU top-100 differ (overlap < 0.99)")
        ok = False

# -- encode throughput: CPU vs CUDA fp32 vs CUDA fp16 -------------------------------------------------------------
from negmine.encode.models import load_bi_encoder
from negmine.models import resolve_model

n_enc = int(os.environ["N_ENCODE"])
words = "the of retrieval model negative hard query passage document training embedding".split()
rng = np.random.default_rng(1)
texts = [" ".join(rng.choice(words, 120)) for _ in range(n_enc)]
name = resolve_model("all-MiniLM-L6-v2")


def rate(device, half, n):
    m = load_bi_encoder(name, device)
    if half:
        m = m.half()
    m.encode(texts[:64], batch_size=64)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.time()
    v = m.encode(texts[:n], batch_size=128, convert_to_numpy=True, normalize_embeddings=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.time() - t0), v


cpu_rate, v_cpu = rate("cpu", False, min(n_enc, 256))
fp32_rate, v32 = rate("cuda", False, n_enc)
load_bi_encoder.cache_clear()  # fp16 on a fresh copy
fp16_rate, v16 = rate("cuda", True, n_enc)
m = min(len(v_cpu), len(v32))
cos32 = float(np.mean(np.sum(v_cpu[:m] * v32[:m], axis=1)))
cos16 = float(np.mean(np.sum(v32 * v16.astype(np.float32), axis=1)))
say(f"encode all-MiniLM-L6-v2 (120-word texts): CPU {cpu_rate:.0f}/s, CUDA fp32 {fp32_rate:.0f}/s, "
    f"CUDA fp16 {fp16_rate:.0f}/s; cosine CPU vs CUDA {cos32:.5f}, fp32 vs fp16 {cos16:.5f}")
if fp32_rate < cpu_rate:
    say("FAIL CUDA encoding is slower than the CPU")
    ok = False
if cos32 < 0.999 or cos16 < 0.995:
    say("FAIL CUDA embeddings differ from the CPU's")
    ok = False
say("all checks passed" if ok else "some checks FAILED")
sys.exit(0 if ok else 1)
EOF
