"""`aib` commands a newcomer types first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aibackend.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # `--state-dir` exports AIB_STATE_DIR for the process; undo it after each test.
    monkeypatch.setenv("AIB_STATE_DIR", ".aib")


def test_functions_lists_each_function_with_routes_access_and_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--functions", str(ROOT / "functions"), "functions"]) == 0
    out = capsys.readouterr().out
    assert "fraud_score  (python3.12, arm64, 1769 MB, 10 s)" in out
    assert "http  POST   /v1/fraud/score  [api_key]" in out
    assert "model  fraud" in out
    assert 'event  aib: {"source": ["aib.shop"], "detail-type": ["Product Viewed"]}' in out
    # a queue a rule fills: the rule's pattern under the queue
    assert (
        "  queue  fraud-events-transactions  (batch 10, dlq after 3)\n"
        '    <- event  aib: {"source": ["aib.payments"], "detail-type": ["Transaction Created"]}\n'
    ) in out


def test_models_list_on_an_empty_state_says_how_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--state-dir", str(tmp_path), "models", "list"]) == 0
    assert "train one with `aib train fraud`" in capsys.readouterr().out


def test_promote_moves_the_pointer_and_refuses_unknown_versions(
    tmp_path: Path,
    tiny_model_factory: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aibackend.adapters import model_registry
    from aibackend.settings import PlatformSettings

    reg = model_registry(PlatformSettings(state_dir=tmp_path))
    reg.register(tiny_model_factory(tmp_path / "a", name="tiny"))
    reg.register(tiny_model_factory(tmp_path / "b", name="tiny"))
    promote = ["--state-dir", str(tmp_path), "models", "promote", "tiny"]
    # A promotion without a reason is refused: the audit trail records why
    assert main([*promote, "2"]) == 2
    assert "needs --reason" in capsys.readouterr().err
    assert reg.production("tiny") is None
    assert main([*promote, "2", "--reason", "better"]) == 0
    assert reg.production("tiny").version == 2  # type: ignore[union-attr]
    assert main(["--state-dir", str(tmp_path), "models", "list"]) == 0
    out = capsys.readouterr().out
    assert "* tiny v2  production pending" in out
    assert "  tiny v1  candidate  pending" in out
    assert main([*promote, "9", "--reason", "x"]) == 1
    assert "has no version 9" in capsys.readouterr().err


def test_secrets_set_stores_a_local_value_that_get_secret_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from aibackend.secrets import get_secret
    from aibackend.settings import PlatformSettings

    # WHEN a secret's value is piped in (kept out of the shell history)
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cr3t\n"))
    assert main(["--state-dir", str(tmp_path), "secrets", "set", "webhook_token", "-"]) == 0
    # THEN the local runtime's functions read it, and the command does not echo it
    assert "s3cr3t" not in capsys.readouterr().out
    settings = PlatformSettings(state_dir=tmp_path)
    assert get_secret("webhook_token", settings=settings, env={}) == "s3cr3t"


def test_a_shadow_promotion_against_aws_is_refused_with_the_alternative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the CLI pointed at the AWS registry (no call is made: it refuses first)
    monkeypatch.setenv("AIB_ADAPTERS", "aws")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    # WHEN a shadow is asked for: a Lambda alias answers each request with one version
    code = main(["models", "promote", "fraud", "2", "--shadow", "--reason", "look at v2"])
    # THEN it is refused, saying why and what to use instead
    assert code == 2
    err = capsys.readouterr().err
    assert "--shadow runs under `aib dev` only" in err and "use --canary" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["put-events", "--source", "s", "--detail-type", "t", "--detail", "@missing.json"],
            "--detail: no file 'missing.json'",
        ),
        (["invoke", "fraud_score", "--event", "missing.json"], "--event: no file 'missing.json'"),
        (["send", "some-queue", "@missing.txt"], "body: no file 'missing.txt'"),
    ],
)
def test_a_file_named_on_the_command_line_that_is_missing_is_named_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    # GIVEN a command that reads a file the user names, and no such file
    # WHEN it runs
    code = main(["--state-dir", str(tmp_path), "--functions", str(ROOT / "functions"), *argv])
    # THEN it fails with the file's name, not a FileNotFoundError traceback
    assert code == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "--scopes", "predict:fraud", "--ttl", "-1"],
        ["events", "list", "--limit", "0"],
        ["simulate", "--scenario", "iot", "--rate", "0"],
        ["simulate", "--scenario", "iot", "--duration", "-5"],
        ["pipeline", "runs", "--limit", "0"],
    ],
)
def test_counts_that_must_be_positive_are_refused_by_the_parser(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a token that would be expired when issued, or an empty listing
    # WHEN it is asked for THEN the parser refuses it (exit status 2) and says why
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "must be above 0" in capsys.readouterr().err


def test_times_that_do_not_parse_are_refused_with_the_form_to_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a replay window in words instead of ISO 8601 THEN the parser says what to type
    with pytest.raises(SystemExit) as exit_:
        main(["events", "replay", "--since", "yesterday", "--until", "now"])
    assert exit_.value.code == 2
    assert "'yesterday' is not an ISO 8601 time" in capsys.readouterr().err
    # GIVEN a --since for logs and metrics that is neither a duration nor a time (and the
    # log in the --state-dir folder: every subcommand reads that folder, not $AIB_STATE_DIR)
    for argv in (["metrics", "--since", "soon"], ["logs", "fraud_score", "--since", "soon"]):
        (tmp_path / "logs").mkdir(exist_ok=True)
        (tmp_path / "logs" / "fraud_score.log").touch()
        # THEN it fails with the accepted forms, not a ValueError traceback
        assert main(["--state-dir", str(tmp_path), *argv]) == 1
        assert "give a duration such as 15m, 2h, 1d" in capsys.readouterr().err


def test_simulate_without_an_aib_dev_on_the_folder_is_refused_before_it_puts_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a state folder no `aib dev` serves (none ever did, or it stopped)
    # WHEN a stream is simulated on it
    code = main(["--state-dir", str(tmp_path), "simulate", "--scenario", "iot", "--duration", "1"])
    # THEN it is refused at once, saying what to start, and no event was put on its bus
    assert code == 1
    err = capsys.readouterr().err
    assert f"aib simulate needs an `aib dev` serving {tmp_path.resolve()}" in err
    assert "start `aib dev` first" in err
    assert not (tmp_path / "events.db").exists()


def test_put_events_with_a_detail_that_is_not_json_fails_like_any_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a detail that does not parse
    argv = ["--state-dir", str(tmp_path), "put-events", "--source", "s", "--detail-type", "t"]
    # WHEN it is put THEN the command fails as `aib invoke --event` does, naming where
    assert main([*argv, "--detail", "{not json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aib: --detail is not valid JSON: Expecting property name")
