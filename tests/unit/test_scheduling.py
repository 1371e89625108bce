"""`make test`'s pytest-xdist scheduling (tests/scheduling.py): a run in which a worker dies
still ends, with that test failed and every other one run once."""

from __future__ import annotations

import textwrap

import pytest

from tests.support import ROOT

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest

from tests.scheduling import FolderScheduling


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return FolderScheduling(config, log, lambda nodeid: nodeid.split("::", 1)[0])
"""


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_whose_worker_dies_ends_with_that_test_failed_and_the_others_run_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    # GIVEN units of work (one a file) of which one kills its worker process mid-way (as a
    # segfault does), finished units before it, and a unit of a single test after it
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_a="def test_one(): pass\ndef test_two(): pass\ndef test_three(): pass\n",
        test_b=textwrap.dedent(
            """
            import os

            def test_before(): pass
            def test_crash(): os._exit(1)
            def test_after(): pass
            """
        ),
        test_c="def test_alone(): pass\n",
        test_d="def test_four(): pass\ndef test_five(): pass\n",
    )
    # WHEN the suite runs as `make test` runs it (loadscope, collection order)
    result = pytester.runpytest_subprocess(
        "-n", str(workers), "--dist", "loadscope", "--no-loadscope-reorder", "-p", "xdist",
        timeout=120,
    )  # fmt: skip
    # THEN it ends (pytest-xdist's own scheduler waited for ever here), the crashed test is
    # the one failure, and every other test ran exactly once, those after the crash included
    result.assert_outcomes(passed=8, failed=1)
    assert "test_b.py::test_crash" in result.stdout.str()
