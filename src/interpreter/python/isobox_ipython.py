"""Loaded into every Isobox python kernel at start (runpy, so the user namespace stays clean).

Registers two display formatters that E2B's code-interpreter clients read:
  e2b/data   a pandas DataFrame as {column: [values]}
  e2b/chart  a matplotlib Figure described as data (isobox_charts.py)
"""
