"""LLM relabelling of mined negatives (`negmine relabel`) and the local judge server (`negmine judge-server`).

Layout: ``params`` (config section ``relabel``), ``prompts`` (versioned, injection-safe), ``parse`` (strict answer
parsing, pure), ``cascade`` (routing and action policy, pure), ``tokens`` (offline tiktoken), ``cache`` (SQLite WAL
response cache), ``client`` (the only HTTP client: AsyncOpenAI, retries, budget, Batch API), ``engine`` (prompts →
client → parse → routing), ``stage`` (RUN/negatives → RUN/relabel), ``server`` (OpenAI-compatible judge answering
from qrels, with faults), ``simulate`` (hidden-positives runs for tests and scripts).
"""
