"""The operator's commands, a client of a running daemon's admin API.

    linqwatch lines | alerts | history | report | silence add/list/expire

Where the daemon is and the token: `--url`/`--token`, else the environment
(`LINQWATCH_URL`, `LINQWATCH_TOKEN`), else the config file given with `-c`
(its `listen` and `admin.token`; nothing else of the file is read, so the
daemon's other secrets need not be set). Tables are for people, `--json` for
scripts. Exit status: 0, 1 when the daemon refused or could not be reached,
2 for a wrong command line or an unreadable config file.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .config.errors import ConfigError, problems_from
from .config.schema import AdminSettings, ListenAddress, is_e164
from .config.source import interpolate, read_yaml
from .durations import parse_duration
from .report import Report, render_csv, render_table, table
from .texts import format_duration, format_number

__all__ = [
    "CLIENT_COMMANDS",
    "ClientError",
    "add_client_commands",
    "label_arg",
    "number_arg",
    "run_client_command",
]

CLIENT_COMMANDS = frozenset({"lines", "alerts", "silence", "history", "report"})
DEFAULT_URL = "http://127.0.0.1:8080"
EXIT_FAILED, EXIT_USAGE = 1, 2
_RANK = {"FLAGGED": 0, "CRITICAL": 1, "AT_RISK": 2}


class ClientError(Exception):
    """A request that failed; the message is what the operator reads."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# -- where and who --------------------------------------------------------------


def _client_settings(path: str, *, token: bool) -> tuple[str, str | None]:
    """The daemon's URL (and admin token, if wanted) from its config file, nothing else."""
    try:
        tree, _ = read_yaml(Path(path).read_text(encoding="utf-8"), path)
    except OSError as error:
        raise ClientError(f"{path}: cannot read the file: {error.strerror}", EXIT_USAGE) from None
    except ConfigError as error:
        raise ClientError("\n".join(error.errors), EXIT_USAGE) from None
    tree = tree if isinstance(tree, dict) else {}
    wanted = ("listen", "admin") if token else ("listen",)
    part = {k: tree[k] for k in wanted if k in tree}
    expanded = interpolate(part, os.environ)
    problems = [p.render() for p in expanded.problems]
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    admin = AdminSettings()
    try:
        listen = TypeAdapter(ListenAddress).validate_python(
            expanded.tree.get("listen", "0.0.0.0:8080")
        )
        admin = AdminSettings.model_validate(expanded.tree.get("admin") or {})
    except ValidationError as error:
        problems += [p.render() for p in problems_from(error)]
    if problems:
        raise ClientError("\n".join(f"{path}: {p}" for p in problems), EXIT_USAGE)
    host, port = listen
    # A daemon listening on every address is reached on loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}", admin.token.get_secret_value() if admin.token else None


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Client:
        url, token = args.url or os.environ.get("LINQWATCH_URL"), args.token
        token = token or os.environ.get("LINQWATCH_TOKEN")
        if args.config and (url is None or token is None):
            file_url, file_token = _client_settings(args.config, token=token is None)
            url, token = url or file_url, token or file_token
        return cls(url or DEFAULT_URL, token)

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise ClientError(_refusal(error)) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClientError(
                f"cannot reach linqwatch at {self.url}: {reason} "
                "(is it running? give its address with --url or -c FILE)"
            ) from None
        except json.JSONDecodeError:
            raise ClientError(f"{self.url} answered something that is not JSON") from None


def _refusal(error: urllib.error.HTTPError) -> str:
    if error.code == 401:
        return "401: wrong or missing admin token; set admin.token or --token"
    try:
        reason = json.loads(error.read()).get("error") or error.reason
    except (json.JSONDecodeError, AttributeError):
        reason = error.reason
    if error.code == 404 and reason == "Not Found":
        reason = "this daemon has no admin API (is it linqwatch, and recent enough?)"
    return f"{error.code}: {reason}"


# -- shared shapes ----------------------------------------------------------------


def _ago(iso: str | None, now: float) -> str:
    if iso is None:
        return "-"
    seconds = now - datetime.fromisoformat(iso).timestamp()
    if seconds < 0:
        return f"in {format_duration(-seconds)}"
    return "just now" if seconds < 1 else f"{format_duration(seconds)} ago"


def _line(number: str) -> str:
    return format_number(number) if number.startswith("+") else number


def _labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or "-"


def number_arg(text: str) -> str:
    """`+1 (202) 555-1234` as typed, to `+12025551234`."""
    number = "".join(ch for ch in text if ch not in " -().")
    if not is_e164(number):
        raise argparse.ArgumentTypeError(f"{text!r} is not an E.164 number (like +12025551234)")
    return number


def label_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def _duration_arg(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _time_arg(text: str) -> str:
    """An ISO time; without a zone it is the local time of this machine."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        message = f"{text!r}: expected an ISO time like 2026-12-04T18:00"
        raise argparse.ArgumentTypeError(message) from None
    return parsed.astimezone().isoformat()


def _print(args: argparse.Namespace, data: object, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(text, end="")


# -- commands -------------------------------------------------------------------------


def _lines(client: Client, args: argparse.Namespace, now: float) -> None:
    data = client.call("GET", "/api/v1/lines")
    lines = sorted(
        data["lines"],
        key=lambda ln: (min(_RANK.get(ln["status"], 9), _RANK.get(ln["health"], 9)), ln["number"]),
    )
    head = ("LINE", "NAME", "STATUS", "HEALTH", "SINCE", "SENDABLE", "LABELS")
    rows = [
        (
            _line(ln["number"]),
            ln["name"] or "-",
            ln["status"] or "unknown",
            ln["health"] or "-",
            _ago(ln["since"], now),
            "yes" if ln["sendable"] else "NO",
            _labels(ln["labels"]),
        )
        for ln in lines
    ]
    _print(args, data, table(head, rows) if rows else "No line seen yet.\n")


def _alerts(client: Client, args: argparse.Namespace, now: float) -> None:
    data = client.call("GET", "/api/v1/alerts")

    def heard(alert: dict[str, Any]) -> str:
        said = [
            n["notifier"] + ("" if n["heard"] else " (dropped)" if n["dropped"] else " (held)")
            for n in alert["notifiers"]
        ]
        return ", ".join(said) or "-"

    head = ("LINE", "NAME", "RULE", "STATE", "SINCE", "NOTIFIERS", "SILENCED BY")
    rows = [
        (
            _line(a["number"]),
            a["name"] or "-",
            a["rule"],
            a["state"],
            _ago(a["since"], now),
            heard(a),
            ", ".join(a["silenced_by"]) or "-",
        )
        for a in data["alerts"]
    ]
    _print(args, data, table(head, rows) if rows else "No open alert.\n")


def _silence_matches(s: dict[str, Any]) -> str:
    parts = [f"line {_line(s['number'])}"] if s["number"] else []
    parts += [f'rule "{s["rule"]}"'] if s["rule"] else []
    parts += [f"{k}={v}" for k, v in s["labels"].items()]
    return ", ".join(parts)


def _silence(client: Client, args: argparse.Namespace, now: float) -> None:
    if args.action == "add":
        if not (args.line or args.rule or args.label):
            raise ClientError(
                "give --line, --rule or --label: a silence must not match everything", EXIT_USAGE
            )
        body: dict[str, Any] = {
            "created_by": args.author or os.environ.get("USER") or getpass.getuser(),
            "comment": args.comment,
            "labels": dict(args.label or []),
        }
        if args.line:
            body["number"] = args.line
        if args.rule:
            body["rule"] = args.rule
        body["duration" if args.duration else "ends_at"] = args.duration or args.until
        made = client.call("POST", "/api/v1/silences", body)
        ends = f"{made['ends_at']} ({_ago(made['ends_at'], now)})"
        _print(args, made, f"Silence {made['id']} created: {_silence_matches(made)}; ends {ends}\n")
    elif args.action == "expire":
        gone = client.call("DELETE", f"/api/v1/silences/{urllib.parse.quote(args.id)}")
        _print(args, gone, f"Silence {gone['id']} expired.\n")
    else:
        query = "?state=all" if args.all else ""
        data = client.call("GET", f"/api/v1/silences{query}")
        head = ("ID", "STATE", "MATCHES", "ENDS", "BY", "COMMENT")
        rows = [
            (
                s["id"],
                s["state"],
                _silence_matches(s),
                _ago(s["expired_at"] or s["ends_at"], now),
                s["created_by"],
                s["comment"],
            )
            for s in data["silences"]
        ]
        _print(args, data, table(head, rows) if rows else "No silence.\n")


def _history(client: Client, args: argparse.Namespace, now: float) -> None:
    entries: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None and len(entries) < args.limit:
        query = {"limit": min(args.limit - len(entries), 1000), "offset": offset}
        query |= {"line": args.line} if args.line else {}
        query |= {"since": args.since} if args.since else {}
        page = client.call("GET", "/api/v1/history?" + urllib.parse.urlencode(query))
        entries += page["history"]
        offset = page["next_offset"]

    def change(new: str | None, old: str | None) -> str:
        # `previous_*` is the value before the current one began, not
        # necessarily what this entry changed (it may change health alone).
        return f"{new or '-'} (was {old})" if old and old != new else new or "-"

    head = ("WHEN", "LINE", "NAME", "STATUS", "HEALTH", "SOURCE")
    rows = [
        (
            f"{e['at']} ({_ago(e['at'], now)})",
            _line(e["number"]),
            e["name"] or "-",
            "released" if e["released"] else change(e["status"], e["previous_status"]),
            change(e["health"], e["previous_health"]),
            e["source"],
        )
        for e in entries
    ]
    _print(args, {"history": entries}, table(head, rows) if rows else "No history.\n")


def _report(client: Client, args: argparse.Namespace, now: float) -> None:
    query = urllib.parse.urlencode({"since": args.since})
    data = client.call("GET", f"/api/v1/report?{query}")
    report = Report.from_json(data)
    if args.csv:
        print(render_csv(report), end="")
    else:
        _print(args, data, render_table(report))


_COMMANDS = {
    "lines": _lines,
    "alerts": _alerts,
    "silence": _silence,
    "history": _history,
    "report": _report,
}


def run_client_command(args: argparse.Namespace) -> int:
    try:
        _COMMANDS[args.command](Client.from_args(args), args, datetime.now(UTC).timestamp())
    except ClientError as error:
        print(error, file=sys.stderr)
        return error.code
    except BrokenPipeError:  # `linqwatch history | head`
        sys.stderr.close()
    return 0


def add_client_commands(commands: Any) -> None:
    """The client commands, on `linqwatch`'s subcommand parser."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("which daemon")
    where.add_argument("-c", "--config", metavar="FILE", help="its config: listen and admin.token")
    where.add_argument("--url", help=f"its address (env LINQWATCH_URL; default {DEFAULT_URL})")
    where.add_argument("--token", help="the admin token (better: env LINQWATCH_TOKEN)")
    common.add_argument("--json", action="store_true", help="print the API's JSON, for scripts")

    commands.add_parser("lines", parents=[common], help="every line, flagged first")
    commands.add_parser("alerts", parents=[common], help="open alerts and who heard")
    history = commands.add_parser("history", parents=[common], help="line transitions")
    history.add_argument("--line", type=number_arg, metavar="NUMBER", help="one line only")
    history.add_argument(
        "--since", type=_duration_arg, metavar="DURATION", help="this long ago, like 7d"
    )
    history.add_argument(
        "--limit", type=int, default=50, metavar="N", help="at most N (default 50)"
    )
    report = commands.add_parser("report", parents=[common], help="availability per line")
    report.add_argument(
        "--since",
        type=_duration_arg,
        default="30d",
        metavar="DURATION",
        help="window (default 30d)",
    )
    report.add_argument("--csv", action="store_true", help="CSV, one row per line")

    silence = commands.add_parser("silence", help="hold notifications back for a while")
    actions = silence.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", parents=[common], help="create a silence")
    add.add_argument("--line", type=number_arg, metavar="NUMBER", help="match this line")
    add.add_argument("--rule", help="match this rule's alerts")
    add.add_argument(
        "--label", type=label_arg, action="append", metavar="KEY=VALUE", help="match this label"
    )
    until = add.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="duration", type=_duration_arg, help="how long, like 2h")
    until.add_argument(
        "--until", type=_time_arg, metavar="TIME", help="until this time (ISO; local if no zone)"
    )
    add.add_argument("--comment", required=True, metavar="TEXT", help="why, for the next on call")
    add.add_argument("--author", metavar="NAME", help="who (default $USER)")
    listing = actions.add_parser("list", parents=[common], help="silences not yet ended")
    listing.add_argument("--all", action="store_true", help="ended ones too")
    expire = actions.add_parser("expire", parents=[common], help="end a silence now")
    expire.add_argument("id", metavar="ID")
