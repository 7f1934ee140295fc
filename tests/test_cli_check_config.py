"""`linqwatch check-config` and the command line around it, in and out of process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from linqwatch import __version__
from linqwatch.cli import main
from tests.examples import EXAMPLE, EXAMPLE_ENV
from tests.examples import EXAMPLE_SUMMARY as SUMMARY

BROKEN = """\
linq:
  api_key: ${LINQ_API_KEY}
poll: {interval: 5 minutes}
notifiers:
  terminal: {type: console}
rules:
  - {name: flagged, when: {status: FLAGGED}, notify: [pagr]}
"""
BROKEN_ERRORS = [
    "linq.api_key: environment variable LINQ_API_KEY is not set",
    'poll.interval: invalid duration "5 minutes" (use e.g. 30s, 5m, 4h, 7d)',
    'rules[0].notify[0]: undefined notifier "pagr"',
]


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LINQ_API_KEY", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(BROKEN)
    return path


@pytest.mark.usefixtures("example_env")
def test_a_valid_file_prints_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{EXAMPLE}: ok; {SUMMARY}\n"
    assert err == ""


def test_an_invalid_file_lists_every_problem(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(broken)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [*BROKEN_ERRORS, f"{broken}: 3 problems; nothing was started"]


def test_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check-config", str(missing)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{missing}: cannot read the file: No such file or directory",
        f"{missing}: 1 problem; nothing was started",
    ]


def test_run_refuses_an_invalid_file_before_starting(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "-c", str(broken)]) == 2
    assert capsys.readouterr().err.splitlines()[:-1] == BROKEN_ERRORS


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"linqwatch {__version__}\n"


@pytest.mark.parametrize("argv", [[], ["check-config"], ["run"], ["frobnicate"]])
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: linqwatch" in capsys.readouterr().err


def _check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in EXAMPLE_ENV}
    return subprocess.run(
        [sys.executable, "-m", "linqwatch", "check-config", str(path)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_python_dash_m_check_config(broken: Path) -> None:
    done = _check_config(EXAMPLE, EXAMPLE_ENV)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{EXAMPLE}: ok; {SUMMARY}\n", "")

    done = _check_config(broken, {})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        *BROKEN_ERRORS,
        f"{broken}: 3 problems; nothing was started",
    ]
    for secret in EXAMPLE_ENV.values():
        assert secret not in done.stderr
