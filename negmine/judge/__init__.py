"""LLM relabelling of mined negatives (`negmine relabel`), and the judge client that calibrate and the LLM teacher
share.

Layout: ``params`` (config section ``relabel``), ``prompts`` (versioned, injection-safe), ``parse`` (strict answer
parsing, pure), ``cascade`` (routing and action policy, pure), ``tokens`` (offline tiktoken), ``cache`` (SQLite WAL
response cache), ``client`` (the only HTTP client: AsyncOpenAI, retries, budget, Batch API), ``engine`` (prompts →
client → parse → routing), ``stage`` (RUN/negatives → RUN/relabel). The local judge server (`negmine judge-server`)
and the hidden-positives simulation are test tooling, in ``negmine.testing``.
"""
