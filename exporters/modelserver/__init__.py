"""The simulated model server (instrumented with ``exporters.instrument``) and its load generator."""
