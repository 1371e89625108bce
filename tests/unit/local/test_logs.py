"""Per-function log files and the metrics read back from them (`aib logs`, `aib metrics`)."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aibackend.local.logs import (
    LogSink,
    follow,
    parse_line,
    pretty,
    read_lines,
    report_line,
    routed,
)
from aibackend.local.metrics import aggregate, parse_since, samples


def lines_of(path: Path) -> list[str]:
    return [line.text for line in read_lines(path)]


def test_lines_written_by_routed_threads_land_in_their_own_function_files(tmp_path: Path) -> None:
    # GIVEN two functions' sinks and two threads, each running "inside" one function
    a, b = LogSink(tmp_path / "a.log"), LogSink(tmp_path / "b.log")
    barrier = threading.Barrier(2)

    def work(sink: LogSink, name: str) -> None:
        with routed(sink):
            barrier.wait()
            for i in range(200):
                print(f"{name} {i}")  # print writes the text and the newline separately
            sys.stderr.write(f"{name} err ")
            sys.stderr.write("continued\n")
            print(f"{name} no newline at the end", end="")

    # WHEN both write to stdout and stderr at the same time
    threads = [threading.Thread(target=work, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("outside any function")
    # THEN each file has exactly its function's lines, whole, in order, and nothing else
    for sink, name in ((a, "a"), (b, "b")):
        got = lines_of(sink.path)
        assert got == [
            *(f"{name} {i}" for i in range(200)),
            f"{name} err continued",
            f"{name} no newline at the end",
        ]


def test_the_routed_stream_still_echoes_to_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a routed thread WHEN it prints THEN the console (here: pytest's capture) sees it too
    with routed(LogSink(tmp_path / "f.log")):
        print("hello")
    assert "hello" in capsys.readouterr().out
    assert lines_of(tmp_path / "f.log") == ["hello"]


def test_a_file_past_its_size_is_rotated_once_and_read_back_in_order(tmp_path: Path) -> None:
    # GIVEN a sink that rotates past 1 KB
    sink = LogSink(tmp_path / "f.log", max_bytes=1024)
    # WHEN 100 lines of ~40 bytes are written
    for i in range(100):
        sink.write_line(f"line {i:03d}")
    # THEN the current file and one previous generation remain, below the limit each
    assert (tmp_path / "f.log.1").exists()
    assert (tmp_path / "f.log.1").stat().st_size <= 1024 + 64
    # AND reading gives the newest lines in order, ending with the last one
    got = lines_of(tmp_path / "f.log")
    assert got == sorted(got) and got[-1] == "line 099"


def test_follow_prints_new_lines_across_a_rotation(tmp_path: Path) -> None:
    # GIVEN a follower started on a file with old content
    sink = LogSink(tmp_path / "f.log", max_bytes=400)
    sink.write_line("old")
    stop = threading.Event()
    seen: list[str] = []

    def tail() -> None:
        for line in follow(sink.path, stop, interval=0.01):
            seen.append(line.text)
            if line.text == "line 29":
                stop.set()

    t = threading.Thread(target=tail)
    t.start()
    # WHEN 30 lines are appended, rotating the file on the way
    threading.Event().wait(0.2)
    for i in range(30):
        sink.write_line(f"line {i}")
        threading.Event().wait(0.005)
    t.join(timeout=10)
    stop.set()
    # THEN the follower saw the new lines only, the last one included, none twice
    assert "old" not in seen and seen[-1] == "line 29"
    assert len(seen) == len(set(seen))
    assert (tmp_path / "f.log.1").exists()


def test_pretty_shows_message_and_extras_and_hides_emf() -> None:
    # GIVEN a Powertools line, an EMF document and a traceback line
    at = "2026-11-27T10:00:00.123Z"
    doc = {"level": "INFO", "message": "scored", "service": "x", "correlation_id": "c-1", "n": 3}
    line = parse_line(f"{at}\t{json.dumps(doc)}")
    emf = parse_line(f'{at}\t{{"_aws": {{"CloudWatchMetrics": []}}, "X": 1}}')
    raw = parse_line(f"{at}\tTraceback (most recent call last):")
    assert line is not None and emf is not None and raw is not None
    # THEN the JSON line reads as time level message key=value, the EMF one is skipped
    assert pretty(line) == "10:00:00.123 INFO  scored  correlation_id=c-1 n=3"
    assert pretty(emf) is None
    assert pretty(raw) == "10:00:00.123 Traceback (most recent call last):"


def emf(at: datetime, **metrics: float | list[float]) -> str:
    doc = {
        "_aws": {
            "Timestamp": int(at.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": "aibackend",
                    "Dimensions": [["service", "decision"]],
                    "Metrics": [{"Name": k, "Unit": "Count"} for k in metrics],
                }
            ],
        },
        "service": "fraud_score",
        "decision": "approve",
        **metrics,
    }
    return json.dumps(doc)


def test_metrics_aggregate_emf_values_and_report_lines_per_function(tmp_path: Path) -> None:
    # GIVEN a function log with two EMF documents and three REPORT lines (one cold, one error)
    sink = LogSink(tmp_path / "logs" / "fraud_score.log")
    now = datetime.now(UTC)
    sink.write_line(emf(now, Predictions=[1.0, 1.0, 1.0]))
    sink.write_line(emf(now, Predictions=2.0))
    sink.write_line(report_line("r1", 12.5, 300.0, error=False))
    sink.write_line(report_line("r2", 2.0, None, error=False))
    sink.write_line(report_line("r3", 4.0, None, error=True))
    # AND an old line outside the window
    sink.write_line(emf(now, Predictions=100.0), at=(now - timedelta(hours=3)).timestamp())
    # WHEN the last hour is aggregated
    series = {s.name: s.summary() for s in aggregate(samples(tmp_path, since=parse_since("1h")))}
    # THEN EMF values add up with their dimensions, the old line is out
    assert series["Predictions"]["sum"] == 5.0 and series["Predictions"]["samples"] == 4
    assert series["Predictions"]["dimensions"] == {"decision": "approve"}
    # AND the REPORT lines give Lambda's own metrics
    assert series["Invocations"]["sum"] == 3
    assert series["Errors"]["sum"] == 1
    assert series["ColdStarts"]["sum"] == 1
    assert (series["Duration"]["p50"], series["Duration"]["max"]) == (4.0, 12.5)


@pytest.mark.parametrize(
    ("text", "back"),
    [("15m", timedelta(minutes=15)), ("2h", timedelta(hours=2)), ("1d", timedelta(days=1))],
)
def test_since_accepts_durations(text: str, back: timedelta) -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert parse_since(text, now) == now - back


def test_since_refuses_what_it_cannot_read_with_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="15m, 2h, 1d or an ISO 8601 time"):
        parse_since("yesterday")
