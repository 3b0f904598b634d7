"""The encoder: turning texts into vectors (and pairs into scores) for retrieve, score and select.

One package owns model loading, batching and the persistent embedding cache so every stage embeds the same way and
a text embedded by one stage is free for the next. Heavy libraries (torch, sentence-transformers) are imported
inside the functions that need them, never at import time.
"""

from negmine.encode.embed import COUNTERS, cache_key, encode_texts, model_identity

__all__ = ["COUNTERS", "cache_key", "encode_texts", "model_identity"]
