"""Teacher scoring: every candidate and every positive of each query gets a ``teacher_score``.

Teachers are registered by name (``bi-encoder``, ``cross-encoder``) in ``negmine.score.stage.TEACHERS``; the stage
(:func:`negmine.score.stage.run_score`) reads the candidates and writes ``RUN/scores``.
"""
