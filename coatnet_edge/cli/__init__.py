"""The command line: a click group and one module per verb family; it only parses and calls the API."""

from coatnet_edge.cli.app import main

__all__ = ["main"]
