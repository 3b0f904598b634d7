"""Arrow schemas of the relabel artifact (RUN/relabel). export reads `negatives` and `positives`."""

import pyarrow as pa

# relabel (LLM judge cascade): surviving negatives, promoted positives, one audit row per (query, doc, tier) and
# the queries dropped for having too many false negatives. export reads `negatives` and `positives`.
RELABEL_NEGATIVES = pa.schema([
    ("query_id", pa.string()),
    ("doc_id", pa.string()),
    ("rank", pa.int32()),
    ("teacher_score", pa.float32()),
    ("pos_score", pa.float32()),
    ("reason_kept", pa.string()),   # select's reason, or "refill" for a candidate taken to keep k
    ("filled", pa.bool_()),
    ("label", pa.string()),         # final label: not_relevant | partial (when kept) | null = unjudged
    ("status", pa.string()),        # judged | unjudged
    ("refill_round", pa.int16()),   # 0 = mined by select, r > 0 = refill round r
])
RELABEL_POSITIVES = pa.schema([
    ("query_id", pa.string()),
    ("doc_id", pa.string()),
    ("label", pa.string()),         # relevant
    ("tier", pa.int16()),           # 1-based tier whose verdict promoted it
    ("model", pa.string()),
])
RELABEL_AUDIT = pa.schema([
    ("query_id", pa.string()),
    ("doc_id", pa.string()),
    ("refill_round", pa.int16()),
    ("tier", pa.int16()),           # 1-based
    ("model", pa.string()),
    ("label", pa.string()),         # null = unjudged at this tier
    ("prob", pa.float32()),         # P(relevant or partial) from logprobs, when available
    ("status", pa.string()),        # judged | unjudged
    ("error", pa.string()),         # why unjudged (never null when label is null)
    ("prompt_version", pa.string()),
    ("prompt_hash", pa.string()),
    ("request_key", pa.string()),   # cache key = Batch API custom_id
    ("cached", pa.bool_()),
    ("prompt_tokens", pa.int32()),  # of the request(s) this doc was judged in
    ("completion_tokens", pa.int32()),
    ("group_size", pa.int16()),     # documents in that request
    ("cost_usd", pa.float64()),     # this doc's share of the request cost
    ("finish_reason", pa.string()),
    ("attempts", pa.int16()),
    ("reasked", pa.bool_()),
    ("action", pa.string()),        # on the last tier's row: keep | remove | promote | drop_query
])
RELABEL_DROPPED_QUERIES = pa.schema([
    ("query_id", pa.string()),
    ("reason", pa.string()),
    ("false_negatives", pa.int32()),
])
# one row per query: negatives before / after relabel (coverage of k) and, when short of k, why
RELABEL_QUERIES = pa.schema([
    ("query_id", pa.string()),
    ("negatives_before", pa.int32()),   # from select
    ("negatives_after", pa.int32()),    # kept after relabel (survivors + refills); 0 for a dropped query
    ("promoted", pa.int32()),
    ("removed", pa.int32()),            # removed (partial / unjudged per policy) or discarded with a dropped query
    ("refill_judged", pa.int32()),      # refill candidates judged for this query
    ("refill_rounds", pa.int16()),      # refill rounds that took candidates for this query
    ("short_reason", pa.string()),      # null = k reached; dropped | pool_exhausted | round_cap | refill_off |
                                        # no_scores
])
