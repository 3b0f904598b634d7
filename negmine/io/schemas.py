"""Arrow schemas of the artifacts: the contract between stages. Ids are strings everywhere."""

import pyarrow as pa

CORPUS = pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
QUERIES = pa.schema([("query_id", pa.string()), ("text", pa.string())])
POSITIVES = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("grade", pa.float32())])
GIVEN_NEGATIVES = pa.schema([("query_id", pa.string()), ("doc_id", pa.string())])

# retrieve: one row per (query, candidate); `retrievers` lists every retriever that found the doc (hybrid)
CANDIDATES = pa.schema([
    ("query_id", pa.string()),
    ("doc_id", pa.string()),
    ("rank", pa.int32()),          # 1-based rank in the (fused) candidate list
    ("retriever", pa.string()),    # "bm25" | "dense" | "hybrid"
    ("retriever_score", pa.float32()),
    ("retrievers", pa.list_(pa.string())),
])

# score: candidates (is_positive false unless the candidate is a labelled positive) + positives
SCORES = pa.schema([
    ("query_id", pa.string()),
    ("doc_id", pa.string()),
    ("rank", pa.int32()),          # candidate rank; null for a positive that the retriever did not return
    ("retriever_score", pa.float32()),
    ("teacher_score", pa.float32()),
    ("is_positive", pa.bool_()),
    ("corpus_row", pa.int32()),    # the document's row in RUN/ingest's corpus (its shards in order): select joins
                                   # by it instead of looking the doc id up again; null when not known
])

# select: kept negatives and, in a side table, every dropped candidate with its reason
NEGATIVES = pa.schema([
    ("query_id", pa.string()),
    ("doc_id", pa.string()),
    ("rank", pa.int32()),
    ("teacher_score", pa.float32()),
    ("pos_score", pa.float32()),   # the reference positive score s+ used by the filters
    ("reason_kept", pa.string()),  # "sampled" | "filled"
    ("filled", pa.bool_()),        # true when taken from beyond the filter to reach k (fill policy)
    ("fill_reason", pa.string()),  # filled rows: the rule the candidate failed (e.g. "above_perc"); else null
])
DROPPED = pa.schema([
    ("query_id", pa.string()),
    ("doc_id", pa.string()),
    ("rank", pa.int32()),
    ("teacher_score", pa.float32()),
    ("pos_score", pa.float32()),
    ("reason_dropped", pa.string()),  # first failing rule, "not_sampled", or "query_short" (query dropped)
    ("duplicate_of", pa.string()),    # duplicate_of_positive: the positive's doc id
    ("similarity", pa.float32()),     # duplicate_of_positive: shingle Jaccard with that positive
])
# select side tables: the positives of each query with their teacher scores (what export pairs with the
# negatives) and one summary row per query
SELECT_POSITIVES = pa.schema([
    ("query_id", pa.string()),
    ("doc_id", pa.string()),
    ("rank", pa.int32()),             # null when the retriever did not return it
    ("teacher_score", pa.float32()),  # null when the score stage did not score it
    ("grade", pa.float32()),
])
SELECT_QUERIES = pa.schema([
    ("query_id", pa.string()),
    ("pos_score", pa.float32()),      # reference s+ (null without a scored positive)
    ("candidates", pa.int32()),
    ("eligible", pa.int32()),         # passed every rule
    ("kept", pa.int32()),             # negatives written (sampled + filled)
    ("filled", pa.int32()),
    ("short", pa.bool_()),            # fewer than num_negatives eligible
    ("dropped", pa.bool_()),          # removed by short_policy "drop"
])

# retrieve side table: where each given positive was found (rank null = not in the candidates), and by which
# retrievers (within each retriever's own depth)
POSITIVE_RANKS = pa.schema([
    ("query_id", pa.string()),
    ("doc_id", pa.string()),
    ("rank", pa.int32()),
    ("found_by", pa.list_(pa.string())),
])
