"""The benchmark harness of ``make bench`` (``python -m tests.bench``); see docs/benchmarks.md.

It lives beside the tests because it measures the same real things they use (the
real OPA binary on loopback, policies signed with the test vectors' key), but it
asserts nothing about time: it reports.
"""
