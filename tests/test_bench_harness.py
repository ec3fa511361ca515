"""The benchmark harness (``python -m tests.bench``): its statistics, and a quick run of one row group.

Nothing here asserts a duration: the harness reports numbers, these tests check
that it computes and reports them correctly.
"""

from __future__ import annotations

import json
import math

import pytest

from .bench.__main__ import main
from .bench.report import Report, Row, render_ratio
from .bench.stats import growth_exponent, percentile, summarize, time_calls


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 99, 7.0),
        ([1.0, 2.0], 50, 1.5),
        ([float(i) for i in range(1, 101)], 50, 50.5),
        ([float(i) for i in range(1, 101)], 99, 99.01),
        ([float(i) for i in range(1, 101)], 100, 100.0),
        ([float(i) for i in range(1, 101)], 0, 1.0),
    ],
)
def test_percentile_interpolates_between_ranks(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 100.5)])
def test_percentile_refuses_what_has_none(values, q):
    with pytest.raises(ValueError):
        percentile(values, q)


def test_summarize_sorts_first():
    summary = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (summary.n, summary.median, summary.min, summary.max, summary.mean) == (5, 3.0, 1.0, 5.0, 3.0)
    assert summary.p99 == pytest.approx(4.96)


@pytest.mark.parametrize(("power", "expected"), [(0, 0.0), (1, 1.0), (2, 2.0), (0.5, 0.5)])
def test_growth_exponent_recovers_the_power(power, expected):
    sizes = [10, 1_000, 10_000, 100_000]
    assert growth_exponent(sizes, [3.0 * size**power for size in sizes]) == pytest.approx(expected)


@pytest.mark.parametrize(("sizes", "values"), [([10], [1.0]), ([10, 10], [1.0, 2.0]), ([0, 10], [1.0, 2.0]), ([1, 2], [1.0])])
def test_growth_exponent_needs_two_distinct_positive_points(sizes, values):
    with pytest.raises(ValueError):
        growth_exponent(sizes, values)


def test_time_calls_times_only_the_iterations_after_the_warmup():
    calls = []
    summary = time_calls(lambda: calls.append(1), warmup=7, iterations=50)
    assert len(calls) == 57
    assert summary.n == 50
    assert 0 <= summary.min <= summary.median <= summary.p99 <= summary.max


def test_ratios_read_as_speedups_only_for_durations():
    assert render_ratio(0.05, "opa-rest/tool", unit="us") == "20.0x faster than opa-rest/tool"
    assert render_ratio(1.42, "opa-rest/tool", unit="us") == "1.42x opa-rest/tool"
    assert render_ratio(0.999, "lookup/10/api", unit="us") == "1.00x lookup/10/api"
    assert render_ratio(0.5, "tput/opa-rest/1t", unit="ops/s", higher_is_better=True) == "0.50x tput/opa-rest/1t"
    assert render_ratio(0.97, "opa-bundle/10", unit="KiB") == "0.97x opa-bundle/10"


def test_rows_compare_only_like_with_like():
    anchor = Row("a", "g", "anchor", "us", 500.0)
    row = Row("b", "g", "row", "us", 5.0)
    assert row.compare(anchor) == pytest.approx(0.01)
    assert row.ratios == {"a": pytest.approx(0.01)}
    with pytest.raises(ValueError):
        Row("c", "g", "rate", "ops/s", 1.0).compare(anchor)
    with pytest.raises(ValueError):
        row.compare(Row("z", "g", "zero", "us", 0.0))
    report = Report({}, {"g": "the group"})
    report.add(anchor)
    with pytest.raises(ValueError):
        report.add(Row("a", "g", "again", "us", 1.0))


def test_quick_run_of_the_embedded_rows_reports_ratios_to_real_opa(opa_bin, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["--quick", "--only", "embedded", "--actions", "tool", "--out", str(out), "--opa", opa_bin]) == 0

    results = json.loads(out.read_text(encoding="utf-8"))
    rows = {row["id"]: row for row in results["rows"]}
    assert set(rows) == {"opa-rest/tool", "opa-bench/tool", "embedded-cold/tool", "embedded-warm/tool"}
    assert results["meta"]["opa"] and results["meta"]["settings"]["quick"] is True
    for row in rows.values():
        assert row["unit"] == "us"
        assert math.isfinite(row["value"]) and row["value"] > 0
        for anchor, ratio in row["ratios"].items():
            assert ratio == pytest.approx(row["value"] / rows[anchor]["value"])
    assert rows["embedded-cold/tool"]["n"] == 500
    assert rows["embedded-cold/tool"]["p99"] >= rows["embedded-cold/tool"]["value"]
    assert set(rows["embedded-cold/tool"]["ratios"]) == {"opa-rest/tool", "opa-bench/tool"}
    assert set(rows["embedded-warm/tool"]["ratios"]) == {"opa-rest/tool"}
    targets = [target for row in rows.values() for target in row["targets"]]
    assert len(targets) == 3 and all(isinstance(target["met"], bool) for target in targets)

    table = capsys.readouterr().out
    assert "| `embedded-warm/tool` |" in table and "### targets" in table
    assert out.with_suffix(".md").read_text(encoding="utf-8") in table


def test_quick_run_of_the_list_growth_and_decision_log_rows(opa_bin, tmp_path, capsys):
    """Every size of a family is timed in turn and compared with the smallest; decision-log rows with the plain."""
    out = tmp_path / "results.json"
    assert main(["--quick", "--only", "lookups", "decision_log", "--actions", "tool", "--out", str(out),
                 "--opa", opa_bin]) == 0
    rows = {row["id"]: row for row in json.loads(out.read_text(encoding="utf-8"))["rows"]}
    families = {"lookup": ("10", "1000"), "globs": ("10", "100"), "cidrs": ("10", "100")}
    for family, (small, large) in families.items():
        suffixes = ("tool",) if family == "lookup" else ("allowed", "denied")
        for suffix in suffixes:
            anchor, row = rows[f"{family}/{small}/{suffix}"], rows[f"{family}/{large}/{suffix}"]
            assert row["ratios"] == {anchor["id"]: pytest.approx(row["value"] / anchor["value"])}
            assert [target["text"].split(" (")[0] for target in row["targets"]] == [f"at most 1.1x the cost at {small}"]
            assert not anchor["targets"] and row["n"] == anchor["n"] == 500
    assert rows["decision-log/file"]["ratios"].keys() == {"decision-log/none"}
    assert rows["decision-log/event"]["extra"]["event_cost_us"] == pytest.approx(
        rows["decision-log/event"]["value"] - rows["decision-log/none"]["value"])
    assert "### 2b. the cost of a decision-log event" in capsys.readouterr().out

