"""Reliability kit (issue 9): the bad-input corpus, its runner, and fault/load helpers.

Used by ``tests/unit/test_corpus_*.py``, ``tests/integration/test_reliability_*.py`` and
``benchmarks/reliability/run.py`` (the full run behind ``make reliability``).
"""
