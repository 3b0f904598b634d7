"""A local OpenAI-compatible judge that answers from qrels: for tests, benchmarks and dry runs before paying.

It is a real HTTP server (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive) on 127.0.0.1 speaking
``POST /v1/chat/completions`` and the Batch API (``POST /v1/files``, ``GET /v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches/{id}``).

How it judges, honestly: it reads the prompt as a model would. It parses the JSON inside the ``<data>`` block that
negmine's prompts send, maps the query text back to query ids (queries file) and every passage back to document ids
(corpus file: the passage is the document's text, truncated, so the server looks it up by a normalized prefix of
``doc_text(title, text)``), and labels a passage relevant when the qrels say so for any document with that text.
With probability ``1 - accuracy`` (seeded per model, query and passage, so the same judge always answers the same
way) it gives a wrong label, with lower confidence (its logprobs show it). It is *gullible*: instruction-like text
("ignore the instructions …") found in the prompt OUTSIDE the quoted data makes it label every candidate relevant;
the same text inside the quoted data is only data. That is how the prompt-injection test can fail. With
``obeys_data`` it is weaker still: an instruction inside a quoted passage flips every label of the request too (the
judge relabel's canary check guards against).
It answers the listwise prompt, the yes/no pointwise prompt, and `negmine score`'s graded prompt (a digit 0-3: 3 or
2 for relevant, 0 or 1 for not relevant, the lower grade when its confidence is lower); ``logprobs=False`` makes it
ignore requests for logprobs, like servers that do not support them.

Faults (``faults`` = probability per request, kinds drawn uniformly from ``fault_kinds``): ``429`` with
Retry-After, ``500``, ``stall`` (answers after ``stall_seconds``, past the client's timeout), ``bad_body``
(malformed JSON body), ``bad_json`` (the answer text is not JSON), ``truncated`` (answer cut,
``finish_reason=length``), ``bad_ids`` (an out-of-range id and a duplicated id with a conflicting label).
A retried request draws again, so a fault is transient, as on a real service.
"""

from __future__ import annotations

import bisect
import email
import email.policy
import hashlib
import json
import logging
import random
import re
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("negmine")

FAULT_KINDS = ("429", "500", "stall", "bad_body", "bad_json", "truncated", "bad_ids")
PREFIX_CHARS = 200  # Cranfield: 1,398 texts → 1,397 distinct 200-char prefixes (100 chars: 1,377)
INJECTION = re.compile(r"ignore\s+(all\s+|the\s+|any\s+)?(previous\s+|above\s+|prior\s+)?instructions", re.I)
_DATA = re.compile(r"<data>\s*(.*?)\s*</data>", re.S)
OTHER = {"relevant": ("not_relevant", "partial"), "partial": ("not_relevant", "relevant"),
         "not_relevant": ("relevant", "partial")}


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


@dataclass
class Truth:
    """Qrels with the text → id maps the server needs to read prompts."""

    qrels: dict[str, dict[str, float]]             # query_id → {doc_id: grade}
    query_ids: dict[str, list[str]]                # normalized query text → ids
    doc_ids: dict[str, list[str]]                  # normalized doc_text prefix → ids
    min_grade: float = 1.0
    _sorted: list[str] | None = field(default=None, repr=False)

    @classmethod
    def from_files(cls, qrels: str | Path, corpus: str | Path | None = None, queries: str | Path | None = None,
                   min_grade: float = 1.0) -> Truth:
        from negmine.models import doc_text

        qrels = Path(qrels)
        base = qrels.parent.parent if qrels.parent.name == "qrels" else qrels.parent
        corpus = Path(corpus) if corpus else base / "corpus.jsonl"
        queries = Path(queries) if queries else base / "queries.jsonl"
        rel: dict[str, dict[str, float]] = {}
        for n, line in enumerate(qrels.read_text(encoding="utf-8").splitlines()):
            parts = line.split("\t")
            if len(parts) < 3 or (n == 0 and not parts[2].strip().lstrip("-").replace(".", "").isdigit()):
                continue
            rel.setdefault(parts[0], {})[parts[1]] = float(parts[2])
        qids: dict[str, list[str]] = {}
        for line in queries.read_text(encoding="utf-8").splitlines():
            if line.strip():
                q = json.loads(line)
                qids.setdefault(_norm(q["text"]), []).append(str(q["_id"]))
        dids: dict[str, list[str]] = {}
        for line in corpus.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                t = _norm(doc_text(d.get("title") or "", d.get("text") or ""))
                if t:
                    dids.setdefault(t[:PREFIX_CHARS], []).append(str(d["_id"]))
        return cls(rel, qids, dids, min_grade)

    def docs_of(self, passage: str) -> list[str]:
        """Documents whose text starts like the passage (a passage truncated below PREFIX_CHARS matches every
        document it is a prefix of)."""
        key = _norm(passage)[:PREFIX_CHARS]
        hit = self.doc_ids.get(key)
        if hit is not None or len(key) >= PREFIX_CHARS or not key:
            return hit or []
        if self._sorted is None:
            self._sorted = sorted(self.doc_ids)
        out: list[str] = []
        i = bisect.bisect_left(self._sorted, key)
        while i < len(self._sorted) and self._sorted[i].startswith(key):
            out += self.doc_ids[self._sorted[i]]
            i += 1
        return out

    def label(self, query: str, passage: str) -> str:
        qids = self.query_ids.get(_norm(query), [])
        docs = self.docs_of(passage)
        for q in qids:
            grades = self.qrels.get(q, {})
            if any(grades.get(d, 0.0) >= self.min_grade for d in docs):
                return "relevant"
        return "not_relevant"


@dataclass
class ServerState:
    truth: Truth
    accuracy: float = 0.9
    faults: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    latency_ms: float = 0.0
    stall_seconds: float = 30.0
    retry_after: float = 0.2
    seed: int = 0
    logprobs: bool = True             # False: ignore requests for logprobs, like servers without logprobs support
    reject_response_format: int = 0   # HTTP status for a rejected response_format (llama.cpp's server: 500)
    rejected_formats: tuple[str, ...] = ("json_schema", "json_object")
    obeys_data: bool = False          # a weaker judge: instructions INSIDE the quoted passages also flip it
    # observability (tests and benchmarks read these)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    answered: int = 0
    statuses: Counter = field(default_factory=Counter)
    faults_injected: Counter = field(default_factory=Counter)
    seen: Counter = field(default_factory=Counter)          # body hash → times received
    answered_keys: list[str] = field(default_factory=list)  # body hashes answered with 200 in order
    received_keys: list[str] = field(default_factory=list)
    auth_headers: set = field(default_factory=set)
    judgments: int = 0
    inflight: int = 0
    max_inflight: int = 0
    admitted: int = 0
    hold_after: int | None = None  # test hook: after this many admitted requests every request stalls until release
    stop: threading.Event = field(default_factory=threading.Event)
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)

    def reset_counters(self) -> None:
        with self.lock:
            self.requests = self.answered = self.judgments = self.admitted = 0
            self.statuses.clear()
            self.faults_injected.clear()
            self.answered_keys.clear()
            self.received_keys.clear()


def body_key(body: dict[str, Any]) -> str:
    """Identity of a request as the client's cache sees it (model + messages + sampling params)."""
    core = {k: v for k, v in body.items() if k not in ("response_format", "stream")}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


# ---- the judge ------------------------------------------------------------------------------------------------

def _read_prompt(messages: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, bool, bool]:
    """(data of the first <data> block, gullible: injection outside the data, pointwise?)."""
    data = None
    outside = []
    pointwise = False
    for msg in messages:
        content = msg.get("content") or ""
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if msg.get("role") == "assistant":
            continue
        if "yes or no" in content.lower():
            pointwise = True
        found = _DATA.search(content)
        if found and data is None:
            try:
                data = json.loads(found.group(1))
            except json.JSONDecodeError:
                data = None
            outside.append(content[:found.start()] + content[found.end():])
        else:
            outside.append(_DATA.sub(" ", content))
    gullible = any(INJECTION.search(t) for t in outside)
    return data, gullible, pointwise


def _graded(messages: list[dict[str, Any]]) -> bool:
    """negmine score's graded prompt ("... a grade from 0 to 3 ...") rather than a yes/no or listwise one."""
    return any("grade from 0 to 3" in str(m.get("content") or "").lower() for m in messages
               if m.get("role") != "assistant")


def _judge_one(st: ServerState, model: str, query: str, passage: str) -> tuple[str, float]:
    truth = st.truth.label(query, passage)
    rng = random.Random(_seed(st.seed, model, _norm(query), _norm(passage)[:PREFIX_CHARS]))
    if rng.random() < st.accuracy:
        return truth, 0.7 + 0.3 * rng.random()
    return OTHER[truth][0] if rng.random() < 0.8 else OTHER[truth][1], 0.5 + 0.3 * rng.random()


def _logprob_entry(token: str, chosen: str, conf: float, alts: dict[str, str]) -> dict[str, Any]:
    """A logprobs content entry for a label token: the chosen label with probability conf, the others share rest."""
    import math

    others = [a for a in alts if a != chosen]
    tops = [{"token": alts[chosen], "logprob": math.log(conf)}]
    for a in others:
        tops.append({"token": alts[a], "logprob": math.log(max(1e-6, (1 - conf) / len(others)))})
    return {"token": token, "logprob": math.log(conf), "top_logprobs": tops}


def judge_completion(st: ServerState, body: dict[str, Any], rng: random.Random,
                     fault: str | None) -> dict[str, Any]:
    model = str(body.get("model", ""))
    messages = body.get("messages") or []
    data, gullible, pointwise = _read_prompt(messages)
    if st.obeys_data and data is not None:
        gullible = gullible or bool(INJECTION.search(json.dumps(data, ensure_ascii=False)))
    want_lp = bool(body.get("logprobs")) and st.logprobs
    finish = "stop"
    lp_content: list[dict[str, Any]] | None = None
    n = 0
    if data is None or "query" not in data:
        content = "I could not find the passages to judge."
    elif not pointwise and "passage" in data and _graded(messages):  # score's graded prompt: a digit 0-3
        label, conf = ("relevant", 0.99) if gullible else _judge_one(st, model, data["query"], data["passage"])
        grade = (3 if conf >= 0.85 else 2) if label != "not_relevant" else (0 if conf >= 0.85 else 1)
        content = str(grade)
        n = 1
        if want_lp:
            lp_content = [_logprob_entry(content, content, conf, {g: g for g in "0123"})]
        if fault in ("bad_json", "truncated"):  # an unusable answer: prose, or cut before the digit
            content, finish = (("The passage is somewhat related.", "stop") if fault == "bad_json" else
                               ("", "length"))
            lp_content = None
    elif pointwise or "passage" in data:
        label, conf = ("relevant", 0.99) if gullible else _judge_one(st, model, data["query"], data["passage"])
        word = "yes" if label != "not_relevant" else "no"
        content = word
        n = 1
        if want_lp:
            lp_content = [_logprob_entry(word, word, conf, {"yes": "yes", "no": "no"})]
    else:
        cands = data.get("candidates") or []
        labels = []
        for c in cands:
            lab, conf = ("relevant", 0.99) if gullible else _judge_one(st, model, data["query"],
                                                                      str(c.get("passage", "")))
            labels.append((c.get("id"), lab, conf))
        n = len(labels)
        if fault == "bad_ids" and len(labels) >= 2:
            m = len(labels)
            labels[-1] = (m + 1, labels[-1][1], labels[-1][2])  # out of range: id m is then missing
            labels.append((labels[0][0], OTHER[labels[0][1]][0], 0.9))  # a duplicate id, conflicting label
        parts = [f'{{"id": {i}, "label": "' for i, _, _ in labels]
        content = '{"judgments": [' + ", ".join(f'{p}{lab}"}}' for p, (_, lab, _) in zip(parts, labels, strict=True)) + "]}"
        if want_lp:
            alts = {"relevant": "relevant", "partial": "partial", "not_relevant": "not"}
            toks: list[tuple[str, tuple[str, float] | None]] = [('{"judgments": [', None)]
            for k, (p, (_, lab, conf)) in enumerate(zip(parts, labels, strict=True)):
                toks.append(((", " if k else "") + p, None))
                toks.append((alts[lab], (lab, conf)))          # the label's first token carries the logprobs
                toks.append((lab[len(alts[lab]):] + '"}', None))
            toks.append(("]}", None))
            lp_content = [_logprob_entry(t, info[0], info[1], alts) if info else
                          {"token": t, "logprob": 0.0, "top_logprobs": []} for t, info in toks if t]
        if fault == "bad_json":
            content = "Sure! Here are my judgments: " + content.replace('"', "'")[:-2]
            lp_content = None
        elif fault == "truncated":
            content = content[: max(1, len(content) // 2)]
            finish = "length"
            lp_content = None
    with st.lock:
        st.judgments += n
    prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": finish}
    if lp_content is not None:
        choice["logprobs"] = {"content": lp_content}
    return {"id": "chatcmpl-" + uuid.uuid4().hex[:12], "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [choice],
            "usage": {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(content) // 4 + 1,
                      "total_tokens": prompt_chars // 4 + len(content) // 4 + 2}}


# ---- HTTP ------------------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "negmine-judge/1"
    st: ServerState  # set on the subclass made by make_server
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's, written in one piece by _send

    def setup(self) -> None:
        super().setup()
        # no Nagle: with delayed ACKs on the client, a response split over two writes waits ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None, raw: bytes | None = None):
        body = raw if raw is not None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self._headers_buffer.append(b"\r\n")  # end of headers, sent together with the body: one write
            self.wfile.write(b"".join(self._headers_buffer) + body)
            self._headers_buffer = []
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        with self.st.lock:
            self.st.statuses[status] += 1

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = {400: "invalid_request_error", 404: "not_found", 429: "rate_limit_exceeded"}.get(status,
                                                                                             "server_error")
        self._send(status, {"error": {"message": message, "type": kind, "code": None}}, headers)

    def _read(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        m = re.fullmatch(r"/v1/batches/([\w-]+)", path)
        if m and m.group(1) in self.st.batches:
            return self._send(200, self.st.batches[m.group(1)])
        m = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
        if m and m.group(1) in self.st.files:
            return self._send(200, None, raw=self.st.files[m.group(1)])
        if path == "/v1/models":
            return self._send(200, {"object": "list", "data": []})
        self._error(404, f"no such resource {path}")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        raw = self._read()
        if path == "/v1/chat/completions":
            return self._chat(raw)
        if path == "/v1/files":
            return self._upload(raw)
        if path == "/v1/batches":
            return self._batch(raw)
        self._error(404, f"no such endpoint {path}")

    def _chat(self, raw: bytes) -> None:
        st = self.st
        with st.lock:
            st.inflight += 1
            st.max_inflight = max(st.max_inflight, st.inflight)
        try:
            self._chat_inner(raw)
        finally:
            with st.lock:
                st.inflight -= 1

    def _chat_inner(self, raw: bytes) -> None:
        st = self.st
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return self._error(400, "request body is not JSON")
        key = body_key(body)
        with st.lock:
            st.requests += 1
            st.seen[key] += 1
            occurrence = st.seen[key]
            st.received_keys.append(key)
            auth = self.headers.get("Authorization")
            if auth:
                st.auth_headers.add(auth)
            hold = st.hold_after is not None and st.admitted >= st.hold_after
            if not hold:
                st.admitted += 1  # counted at admission, so at most hold_after requests are ever answered
        if hold:
            st.stop.wait(3600)
            return self._error(503, "server stopping")
        if st.latency_ms:
            time.sleep(st.latency_ms / 1000.0)
        fmt = (body.get("response_format") or {}).get("type")
        if st.reject_response_format and fmt in st.rejected_formats:
            return self._error(st.reject_response_format, f"response_format type {fmt!r} is not supported by this "
                               "server")
        rng = random.Random(_seed(st.seed, key, occurrence))
        fault = None
        if st.faults and rng.random() < st.faults:
            fault = rng.choice(st.fault_kinds)
            with st.lock:
                st.faults_injected[fault] += 1
        if fault == "429":
            return self._error(429, "rate limited (injected)", {"Retry-After": f"{st.retry_after:g}",
                                                                "retry-after-ms": str(int(st.retry_after * 1000))})
        if fault == "500":
            return self._error(500, "internal error (injected)")
        if fault == "stall":
            st.stop.wait(st.stall_seconds)
        if fault == "bad_body":
            return self._send(200, None, raw=b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "rel')
        payload = judge_completion(st, body, rng, fault)
        with st.lock:
            st.answered += 1
            st.answered_keys.append(key)
        self._send(200, payload)

    def _upload(self, raw: bytes) -> None:
        ctype = self.headers.get("Content-Type", "")
        msg = email.message_from_bytes(f"Content-Type: {ctype}\r\n\r\n".encode() + raw, policy=email.policy.HTTP)
        content: Any = None
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                content = part.get_payload(decode=True)
        if content is None:
            return self._error(400, "multipart upload without a 'file' part")
        fid = "file-" + uuid.uuid4().hex[:16]
        self.st.files[fid] = content
        self._send(200, {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                         "filename": "input.jsonl", "purpose": "batch", "status": "processed"})

    def _batch(self, raw: bytes) -> None:
        st = self.st
        req = json.loads(raw or b"{}")
        src = st.files.get(req.get("input_file_id", ""))
        if src is None:
            return self._error(400, "unknown input_file_id")
        out_lines = []
        ok = 0
        for line in src.decode("utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            body = item.get("body") or {}
            rng = random.Random(_seed(st.seed, body_key(body), "batch"))
            res = judge_completion(st, body, rng, None)
            ok += 1
            out_lines.append(json.dumps({"id": "batch_req_" + uuid.uuid4().hex[:8], "custom_id": item["custom_id"],
                                         "response": {"status_code": 200, "request_id": res["id"], "body": res},
                                         "error": None}))
        out_id = "file-" + uuid.uuid4().hex[:16]
        st.files[out_id] = ("\n".join(out_lines) + "\n").encode()
        bid = "batch_" + uuid.uuid4().hex[:16]
        now = int(time.time())
        st.batches[bid] = {"id": bid, "object": "batch", "endpoint": req.get("endpoint"), "errors": None,
                           "input_file_id": req.get("input_file_id"), "completion_window": "24h",
                           "status": "completed", "output_file_id": out_id, "error_file_id": None,
                           "created_at": now, "completed_at": now,
                           "request_counts": {"total": ok, "completed": ok, "failed": 0},
                           "metadata": req.get("metadata")}
        self._send(200, st.batches[bid])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen backlog: the default 5 makes bursts of new connections wait for SYN retries


class JudgeServer:
    """A running server in a background thread: ``with JudgeServer(state) as srv: srv.base_url``."""

    def __init__(self, state: ServerState, host: str = "127.0.0.1", port: int = 0):
        handler = type("BoundHandler", (Handler,), {"st": state})
        self.state = state
        self.httpd = _Server((host, port), handler)
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> JudgeServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()
        return self

    def release(self) -> None:
        """Let held / stalled requests finish."""
        self.state.stop.set()

    def close(self) -> None:
        self.state.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> JudgeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
