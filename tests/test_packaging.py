"""The container image and the systemd unit, checked without Docker or systemd.

The slow half does what the Dockerfile does, step by step, on this machine:
the build context as `.dockerignore` leaves it, the builder's `COPY`s and its
`RUN` (the wheel), the runtime's `RUN` that makes the venv and installs the
wheel with its dependencies from the package index; then runs the installed
`linqwatch` (`--version`, `check-config`, `run` with the image's HEALTHCHECK
command against it). The commands are taken from the Dockerfile itself, with
its absolute paths moved under a temporary directory.

The fast half checks that the Dockerfile and the unit agree with the daemon:
the port, the state directory, the user, the command line, the stop timeout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from linqwatch.config import parse_config
from tests.examples import EXAMPLE, EXAMPLE_ENV, EXAMPLE_SUMMARY
from tests.test_cli_check_config import BROKEN

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "systemd" / "linqwatch.service"
DEFAULTS = parse_config("poll: {interval: 0}\n", env={})  # every default that matters here
AIOHTTP_DRAIN = 5.0  # web.AppRunner(shutdown_timeout=...) in daemon.py


# -- reading the Dockerfile, .dockerignore and the unit -------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def json(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword}: use the exec (JSON) form"
        return [str(item) for item in value]


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """Instructions per stage; continuation lines joined, comment lines dropped."""
    stages: list[list[Instruction]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        instruction = Instruction(keyword.upper(), " ".join(args.split()))
        if instruction.keyword == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def one(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, got {found}"
    return found[0]


def healthcheck_command(stage: list[Instruction]) -> list[str]:
    options, _, command = one(stage, "HEALTHCHECK").args.partition(" CMD ")
    assert options.startswith("--"), "HEALTHCHECK takes options, then CMD"
    return Instruction("CMD", command).json()


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: * and ? stay within one path
    segment, ** spans any number of them; a leading / and a trailing / are dropped."""
    glob = glob.strip("/")
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        elif glob[i] == "[":
            end = glob.index("]", i)
            out, i = out + glob[i : end + 1], end + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out)


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern(line.removeprefix("!"))))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for negated, pattern in rules:
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            result = not negated
    return result


def build_context(dest: Path) -> None:
    """Copy the source tree as `.dockerignore` lets it into the build context."""
    rules = dockerignore()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel = Path(dirpath).relative_to(ROOT)
        # Skip what no pattern lets back in (.git, .venv): walking them is slow.
        dirnames[:] = [d for d in dirnames if not (ignored((rel / d).as_posix(), rules))]
        for name in filenames:
            path = (rel / name).as_posix()
            if not ignored(path, rules):
                (dest / rel).mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / path, dest / path)


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def seconds(value: str) -> float:
    units = {"min": 60.0, "ms": 0.001, "s": 1.0, "h": 3600.0}
    for unit, factor in units.items():
        if value.endswith(unit):
            return float(value.removesuffix(unit)) * factor
    return float(value)


# -- the image's steps, run here --------------------------------------------------------


@dataclass(frozen=True)
class Image:
    root: Path  # stands for / inside the image
    venv: Path  # /opt/linqwatch
    runtime: list[Instruction]

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: nothing of the development venv or of systemd."""
        drop = {"VIRTUAL_ENV", "PYTHONPATH", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
        env = {k: v for k, v in os.environ.items() if k not in drop and k not in EXAMPLE_ENV}
        return {**env, **extra}

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "linqwatch"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,
            env=env or self.env(),
        )


def _localize(command: str, paths: dict[str, Path]) -> str:
    for absolute in sorted(paths, key=len, reverse=True):
        command = command.replace(absolute, str(paths[absolute]))
    return command


def _shell(command: str, cwd: Path) -> None:
    # `python` and `pip` are the base image's; here, this interpreter's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env={**env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    root = tmp_path_factory.mktemp("image")
    context = tmp_path_factory.mktemp("context")
    build_context(context)
    builder, runtime = dockerfile_stages(DOCKERFILE.read_text())

    # The builder stage: WORKDIR, COPY from the context, RUN (the wheel).
    workdir = root / one(builder, "WORKDIR").args.lstrip("/")
    workdir.mkdir(parents=True)
    paths = {"/dist": root / "dist"}
    for step in builder:
        if step.keyword == "COPY":
            *sources, dest = shlex.split(step.args)
            for source in sources:
                target = workdir / dest
                if (context / source).is_dir():
                    shutil.copytree(context / source, target)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(context / source, target)
        elif step.keyword == "RUN":
            _shell(_localize(step.args, paths), workdir)
    assert [p.name for p in (root / "dist").iterdir()] != []

    # The runtime stage: COPY --from=builder, then the RUN that installs.
    copy = next(s for s in runtime if s.keyword == "COPY" and "--from=builder" in s.args)
    source, dest = shlex.split(copy.args)[1:]
    shutil.copytree(root / source.strip("/"), root / dest.strip("/"))
    paths = {"/opt/linqwatch": root / "opt" / "linqwatch", "/tmp/dist": root / dest.strip("/")}
    install = next(s for s in runtime if s.keyword == "RUN" and "pip install" in s.args)
    _shell(_localize(install.args, paths), root)
    return Image(root=root, venv=root / "opt" / "linqwatch", runtime=runtime)


def test_the_installed_package_reports_its_version(image: Image) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = image.run("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"linqwatch {version}\n", "")
    where = subprocess.run(
        [str(image.venv / "bin" / "python"), "-c", "import linqwatch; print(linqwatch.__file__)"],
        capture_output=True,
        text=True,
        cwd=image.root,
        env=image.env(),
        check=True,
    ).stdout.strip()
    package = Path(where).parent
    assert package.is_relative_to(image.venv), "imported from the source tree, not the wheel"
    assert (package / "py.typed").is_file()
    assert not (image.root / "tmp" / "dist").exists(), "the runtime RUN removes the wheel"


def test_the_installed_package_checks_the_example_config(image: Image) -> None:
    result = image.run("check-config", str(EXAMPLE), env=image.env(**EXAMPLE_ENV))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{EXAMPLE}: ok; {EXAMPLE_SUMMARY}\n"


def test_the_installed_package_refuses_a_broken_config(image: Image) -> None:
    broken = image.root / "broken.yaml"
    broken.write_text(BROKEN)
    result = image.run("check-config", str(broken))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == f"{broken}: 3 problems; nothing was started"


def test_the_healthcheck_passes_while_the_daemon_runs_and_fails_after(image: Image) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = image.root / "run.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        "poll: {interval: 0}\n"
        f"storage: {image.root / 'state.db'}\n"
        "notifiers: {terminal: {type: console}}\n"
        "rules: [{name: flagged, when: {status: FLAGGED}, notify: [terminal]}]\n"
    )
    command = healthcheck_command(image.runtime)
    assert command[0] == "python"
    check = [
        str(image.venv / "bin" / "python"),
        *(arg.replace(f":{DEFAULTS.listen_port}/", f":{port}/") for arg in command[1:]),
    ]
    assert check[1:] != command[1:], "the HEALTHCHECK must name the default port"

    def healthy() -> bool:
        result = subprocess.run(check, capture_output=True, timeout=10, env=image.env())
        return result.returncode == 0

    daemon = subprocess.Popen(
        [str(image.venv / "bin" / "linqwatch"), "run", "-c", str(config)],
        cwd=image.root,
        env=image.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not healthy():
            assert daemon.poll() is None, f"the daemon exited: {daemon.communicate()[0]}"
            assert time.monotonic() < deadline, "no healthy /healthz within 30s"
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)  # what STOPSIGNAL sends
        output, _ = daemon.communicate(timeout=DEFAULTS.shutdown_grace + AIOHTTP_DRAIN + 5)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, output
    assert not healthy()


# -- the files agree with the daemon ----------------------------------------------------


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return dockerfile_stages(DOCKERFILE.read_text())


def test_both_stages_use_one_pinned_python_311_slim(stages: list[list[Instruction]]) -> None:
    images = [stage[0].args.split()[0] for stage in stages]
    assert len(images) == 2
    assert images[0] == images[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", images[0]), images[0]
    assert stages[0][0].args.endswith(" AS builder")


def test_the_image_runs_as_a_fixed_unprivileged_user(stages: list[list[Instruction]]) -> None:
    runtime = stages[-1]
    user = [i for i in runtime if i.keyword == "USER"][-1].args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) >= 1000 and int(gid) >= 1000
    setup = next(i.args for i in runtime if i.keyword == "RUN" and "useradd" in i.args)
    assert f"--uid {uid}" in setup and f"--gid {gid}" in setup
    state = PurePosixPath(DEFAULTS.storage).parent
    assert f"install -d -o linqwatch -g linqwatch -m 0700 {state}" in setup


def test_state_port_and_health_match_the_daemon_defaults(
    stages: list[list[Instruction]],
) -> None:
    runtime = stages[-1]
    state = PurePosixPath(DEFAULTS.storage).parent
    assert one(runtime, "VOLUME").args == str(state)
    assert one(runtime, "WORKDIR").args == str(state)
    assert one(runtime, "EXPOSE").args == str(DEFAULTS.listen_port)
    assert DEFAULTS.listen_host == "0.0.0.0"  # reachable through the published port
    url = f"http://127.0.0.1:{DEFAULTS.listen_port}/healthz"
    assert any(url in arg for arg in healthcheck_command(runtime))
    assert one(runtime, "STOPSIGNAL").args == "SIGTERM"
    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert f"/var/lib/{unit_settings()['StateDirectory'][0]}" == str(state)


def test_the_image_and_the_unit_run_the_same_command(stages: list[list[Instruction]]) -> None:
    runtime = stages[-1]
    command = one(runtime, "ENTRYPOINT").json() + one(runtime, "CMD").json()
    assert command == ["/opt/linqwatch/bin/linqwatch", "run", "-c", "/etc/linqwatch/config.yaml"]
    assert unit_settings()["ExecStart"] == [" ".join(command)]


def test_the_unit_gives_shutdown_time_to_finish() -> None:
    settings = unit_settings()
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    needed = DEFAULTS.shutdown_grace + AIOHTTP_DRAIN
    assert seconds(settings["TimeoutStopSec"][0]) > needed
    assert seconds(settings["WatchdogSec"][0]) >= 2  # the daemon pings every second


def test_dockerignore_lets_in_the_sources_only(stages: list[list[Instruction]]) -> None:
    rules = dockerignore()
    copied = [
        source
        for stage in stages
        for step in stage
        if step.keyword == "COPY" and "--from" not in step.args
        for source in shlex.split(step.args)[:-1]
    ]
    for path in [*copied, "daemon/linqwatch/cli.py", "daemon/linqwatch/py.typed"]:
        assert not ignored(path.rstrip("/"), rules), path
    for path in [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_packaging.py",
        "state.db",
        "daemon/state.db-wal",
        "daemon/linqwatch/__pycache__/cli.cpython-311.pyc",
        "daemon/linqwatch.egg-info/PKG-INFO",
        "config.yaml",
        "linqwatch.env",
        "Dockerfile",
    ]:
        assert ignored(path, rules), path
