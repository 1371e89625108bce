"""`aib dev` re-imports a function whose code was edited, keeps serving the previous code when
the edit does not import, and says that an edited declaration takes a restart."""

from __future__ import annotations

import logging
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from aibackend.errors import ConfigError
from aibackend.local.isolation import FunctionInitError
from tests.support import running_runtime

HANDLER = "def handler(event, context):\n    return {{'version': {v}}}\n"


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    root = tmp_path / "functions"
    (root / "echo").mkdir(parents=True)
    (root / "echo" / "__init__.py").write_text("")
    (root / "echo" / "handler.py").write_text(HANDLER.format(v=1))
    (root / "echo" / "function.toml").write_text(
        textwrap.dedent(
            """
            description = "Answers which version of its code runs."
            handler = "handler.handler"
            """
        )
    )
    return root


@pytest.mark.parametrize("isolate", [False, True], ids=["one process", "isolated"])
def test_edited_code_is_reloaded_and_broken_code_leaves_the_previous_serving(
    functions: Path,
    tmp_path: Path,
    isolate: bool,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Bytecode written as on a developer's machine (CI may turn it off), in this process and
    # in the workers, so that a stale `.pyc` would show
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    handler = functions / "echo" / "handler.py"
    with running_runtime(functions, tmp_path / "state", isolate=isolate, sources=False) as rt:
        host = rt.hosts["echo"]
        assert host.invoke({}) == {"version": 1}
        assert rt.poll_code() == []
        # GIVEN the handler edited (same size, within the same second: the cached bytecode
        # must not answer for it)
        handler.write_text(HANDLER.format(v=2))
        # WHEN the runtime polls THEN the new code serves
        assert rt.poll_code() == ["echo"]
        assert host.invoke({}) == {"version": 2}
        # GIVEN an edit that does not import
        handler.write_text("def handler(event, context:\n")
        with caplog.at_level(logging.ERROR, logger="aib.runtime"):
            assert rt.poll_code() == []
            assert rt.poll_code() == []  # tried once per save, not on every poll
        # THEN the error is logged once and the previous code keeps serving
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert "the edited code does not load; the previous code keeps serving" in (
            errors[0].getMessage()
        )
        assert host.invoke({}) == {"version": 2}
        # GIVEN the mistake fixed THEN the next poll serves it
        handler.write_text(HANDLER.format(v=3))
        assert rt.poll_code() == ["echo"]
        assert host.invoke({}) == {"version": 3}


def test_an_edited_declaration_is_reported_once_as_needing_a_restart(
    functions: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running_runtime(functions, tmp_path / "state", sources=False) as rt:
        toml = functions / "echo" / "function.toml"
        toml.write_text(toml.read_text() + "timeout_s = 5\n")
        with caplog.at_level(logging.WARNING, logger="aib.runtime"):
            assert rt.poll_code() == []
            assert rt.poll_code() == []
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "function.toml changed; restart `aib dev` to apply the declaration" in warnings[0]
        # The code did not change: nothing was re-imported
        assert rt.hosts["echo"].invoke({}) == {"version": 1}


def test_a_removed_function_folder_is_reported_once_and_keeps_serving_until_a_restart(
    functions: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running_runtime(functions, tmp_path / "state", sources=False) as rt:
        # GIVEN a served function whose folder is moved away
        moved = tmp_path / "elsewhere"
        (functions / "echo").rename(moved)
        # WHEN the runtime polls, twice
        with caplog.at_level(logging.WARNING, logger="aib.runtime"):
            assert rt.poll_code() == []
            assert rt.poll_code() == []
        # THEN one warning says what happened (no "does not load" traceback, no "declaration
        # changed"), and what it loaded keeps serving
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warnings == [
            f"function folder {functions / 'echo'} was removed: echo keeps serving what it "
            "loaded until `aib dev` restarts"
        ]
        assert rt.hosts["echo"].invoke({}) == {"version": 1}
        # AND once it is back with new code, that code is loaded
        moved.rename(functions / "echo")
        (functions / "echo" / "handler.py").write_text(HANDLER.format(v=22))
        assert rt.poll_code() == ["echo"]
        assert rt.hosts["echo"].invoke({}) == {"version": 22}


@pytest.mark.parametrize("isolate", [False, True], ids=["one process", "isolated"])
def test_a_function_that_cannot_start_leaves_the_others_serving_until_its_fix_is_saved(
    functions: Path, tmp_path: Path, isolate: bool
) -> None:
    # GIVEN a second function whose code does not import
    broken = functions / "broken"
    shutil.copytree(functions / "echo", broken)
    (broken / "handler.py").write_text("def handler(event, context:\n")
    # WHEN the runtime starts
    with running_runtime(functions, tmp_path / "state", isolate=isolate, sources=False) as rt:
        # THEN the other function serves, and the broken one's invocations name its INIT error
        assert rt.hosts["echo"].invoke({}) == {"version": 1}
        with pytest.raises(RuntimeError, match=r"function broken is not loaded: its INIT failed"):
            rt.hosts["broken"].invoke({})
        # AND the runtime's health says which function is down, and why
        health = rt.health()
        assert health["status"] == "degraded"
        down = {f["name"]: f["error"] for f in health["functions"] if "error" in f}
        assert list(down) == ["broken"] and "SyntaxError" in down["broken"]
        # AND once its fix is saved, the next poll loads it
        (broken / "handler.py").write_text(HANDLER.format(v=7))
        assert rt.poll_code() == ["broken"]
        assert rt.hosts["broken"].invoke({}) == {"version": 7}
        assert rt.health()["status"] == "ok"


@pytest.mark.parametrize("isolate", [False, True], ids=["one process", "isolated"])
def test_a_refusal_of_the_platform_at_init_still_stops_the_start(
    functions: Path, tmp_path: Path, isolate: bool
) -> None:
    # GIVEN a function whose INIT raises one of the platform's refusals (as a model that fails
    # its checksum does: a ModelLoadError; here a ConfigError)
    (functions / "echo" / "handler.py").write_text(
        "from aibackend.errors import ConfigError\nraise ConfigError('AIB_X must be set')\n"
    )
    # WHEN the runtime starts THEN the start fails with that message, not a half-served state
    with (
        pytest.raises((ConfigError, FunctionInitError), match="AIB_X must be set"),
        running_runtime(functions, tmp_path / "state", isolate=isolate, sources=False),
    ):
        pass
