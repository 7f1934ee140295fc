"""The command line: `linqwatch run`, `check-config`, `test-notify` and `demo`.

The operator's commands (`lines`, `alerts`, `silence`, `history`, `report`)
talk to a running daemon and live in operator_cli.py; `routes test` reads the
config file alone and lives in routes.py.

`main` returns the exit status; only the entry points turn it into an exit.
Exit status 2 means the config was refused (or the command line was wrong);
the daemon and the demo decide their own statuses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .config import Config, ConfigError, load_config
from .operator_cli import (
    CLIENT_COMMANDS,
    add_client_commands,
    label_arg,
    number_arg,
    run_client_command,
)
from .routes import add_routes_command, run_routes_test

__all__ = ["main"]

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linqwatch",
        description="On-call alerting for the phone lines of a Linq partner account.",
    )
    parser.add_argument("--version", action="version", version=f"linqwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="the config file")
    check = commands.add_parser(
        "check-config", help="validate a config file; exit 0, or 2 with every problem"
    )
    check.add_argument("file", metavar="FILE", help="the config file")
    test = commands.add_parser(
        "test-notify", help="send one marked test notification through one notifier"
    )
    test.add_argument("name", metavar="NAME", help="the notifier's name in the config")
    test.add_argument("-c", "--config", required=True, metavar="FILE", help="the config file")
    commands.add_parser("demo", help="run the whole pipeline against a simulated Linq")
    add_client_commands(commands)
    add_routes_command(commands, number=number_arg, label=label_arg)
    return parser


def _load(path: str) -> Config | None:
    """The config, or None after printing every problem to stderr."""
    try:
        return load_config(path)
    except ConfigError as error:
        for line in error.errors:
            print(line, file=sys.stderr)
        count = len(error.errors)
        noun = "problem" if count == 1 else "problems"
        print(f"{path}: {count} {noun}; nothing was started", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_CONFIG
    if args.command == "check-config":
        config = _load(args.file)
        if config is None:
            return EXIT_CONFIG
        print(f"{args.file}: ok; {config.summary()}")
        return 0
    if args.command == "run":
        config = _load(args.config)
        if config is None:
            return EXIT_CONFIG
        # Imported here: check-config must work without the daemon's imports.
        from .daemon import run_daemon

        return run_daemon(config, config_path=args.config)
    if args.command in CLIENT_COMMANDS:
        return run_client_command(args)
    if args.command == "routes":
        config = _load(args.config)
        if config is None:
            return EXIT_CONFIG
        return run_routes_test(config, args)
    if args.command == "test-notify":
        config = _load(args.config)
        if config is None:
            return EXIT_CONFIG
        return _test_notify(config, args.name)
    from .demo import run_demo

    return run_demo()


def _test_notify(config: Config, name: str) -> int:
    import asyncio

    from .testnotify import send_test

    ok, message = asyncio.run(send_test(config, name))
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
