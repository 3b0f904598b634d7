"""Readers, Arrow schemas and the artifact store: the only package that touches files."""
