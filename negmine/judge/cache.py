"""Response cache: SQLite in WAL mode, one row per answered request.

The key is a hash of the model, the messages, the generation parameters and the prompt version — never of the
endpoint or the key. Every answer is committed as soon as it arrives, so a run killed midway loses nothing it paid
for, and a finished re-run sends no request at all. Batch mode uses the same key as the batch ``custom_id``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from negmine.io.store import hash_json


def request_key(model: str, messages: list[dict[str, str]], params: dict[str, Any], prompt_version: str) -> str:
    return hash_json({"model": model, "messages": messages, "params": params, "prompt_version": prompt_version})


# the largest answer stored: a judge's answer is a few KB (a listwise answer with logprobs of 512 tokens ~200 KB); a
# server that sends megabytes is broken, and caching its answers would grow the cache without bound
MAX_ANSWER_BYTES = 1 << 20


class ResponseCache:
    def __init__(self, path: str | Path, max_answer_bytes: int = MAX_ANSWER_BYTES):
        self.path = Path(path)
        self.max_answer_bytes = max_answer_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS responses (
            key TEXT PRIMARY KEY, model TEXT NOT NULL, response TEXT NOT NULL,
            prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL, source TEXT, created REAL)""")

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT response, cost_usd FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        out = json.loads(row[0])
        out["_cost_usd"] = row[1]
        return out

    def has(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None

    def put(self, key: str, model: str, response: dict[str, Any], prompt_tokens: int, completion_tokens: int,
            cost_usd: float, source: str = "online") -> bool:
        """Store an answer; False (nothing stored) when it is larger than ``max_answer_bytes``."""
        text = json.dumps(response, separators=(",", ":"))
        if len(text.encode("utf-8")) > self.max_answer_bytes:
            return False
        self.db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, model, text, prompt_tokens, completion_tokens, cost_usd, source, time.time()))
        return True

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self.db.close()
