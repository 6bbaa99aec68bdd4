"""Evaluation of synthesised speech."""
