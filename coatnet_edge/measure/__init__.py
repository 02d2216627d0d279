"""Measure artifacts through runtime/: evaluate (accuracy), benchmark (latency), compare/report, predict."""
