"""The ingest stage (``ingest.py``, ``readers/``, config section ``input``), the Arrow schemas of the stage tables and
the artifact store every stage writes and reads through (``store.py``; see docs/ARCHITECTURE.md)."""
