"""Recipes, hash-keyed stages and the verbs that compose the lower layers: run, and export (quantize + adapter)."""
