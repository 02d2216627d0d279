"""Calibration sets and INT8 quantization (PTQ, QAT) with NNCF."""
