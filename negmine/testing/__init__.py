"""Test tooling that ships with negmine (the tests, the benchmark scripts and `make test-llm-local` use it; the
product does not): ``judge_server`` is the OpenAI-compatible judge answering from qrels behind `negmine
judge-server`, ``simulate`` builds hidden-positives runs with hand-made select artifacts."""
