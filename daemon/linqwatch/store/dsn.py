"""PostgreSQL URLs in `storage:`: recognise, parse and show them without the password.

Pure string handling, shared by the config schema (validation, `repr`) and
the PostgreSQL store (connecting, error messages), so that both agree on
what a URL means and neither ever prints a password.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["PostgresTarget", "is_postgres_url", "parse_postgres_url", "redact_url", "scrub"]

SCHEMES = ("postgresql://", "postgres://")
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # 63 bytes: PostgreSQL's NAMEDATALEN
# Query parameters libpq and asyncpg read a secret from.
_SECRET_PARAMS = re.compile(r"([?&](?:ssl)?password=)[^&#]*", re.IGNORECASE)
_HIDDEN = "***"


def is_postgres_url(value: str) -> bool:
    return value.lower().startswith(SCHEMES)


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """Where to connect and which schema holds linqwatch's tables."""

    dsn: str  # for asyncpg: the URL without linqwatch's own `schema` parameter
    schema: str | None  # None: the server's default (the first of search_path)
    password: str | None  # only to scrub it from messages
    application_name: str | None = None  # as given in the URL, to name a replica


def parse_postgres_url(url: str) -> PostgresTarget:
    """Split off `?schema=NAME` or `options=-csearch_path=NAME`; check the rest roughly.

    Raises ValueError with a message that never contains the URL itself.
    """
    if not is_postgres_url(url):
        raise ValueError("not a postgresql:// URL")
    # Python's own messages would quote parts of the URL: ours never do.
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        raise ValueError("not a valid URL") from None
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(
            "the port must be a number from 1 to 65535"
            " (percent-encode any : / @ ? # in the password)"
        )
    params = dict(query)
    if not parts.hostname and not params.get("host"):
        raise ValueError(
            "a PostgreSQL URL needs a host, like postgresql://linqwatch@db.example.com/linqwatch"
        )
    schema = params.get("schema")
    kept: list[tuple[str, str]] = []
    for key, value in query:
        if key == "schema":
            continue
        if key == "options":
            found, value = _search_path_option(value)
            if found is not None:
                if schema is not None and schema != found:
                    raise ValueError("give the schema once: `schema=` and search_path differ")
                schema = found
            if not value:
                continue
        kept.append((key, value))
    if schema is not None and not _SCHEMA.fullmatch(schema):
        raise ValueError(
            "schema must be a plain name (letters, digits, _; at most 63), like linqwatch"
        )
    password = unquote(parts.password) if parts.password else params.get("password")
    dsn = urlunsplit(parts._replace(query=urlencode(kept)))
    return PostgresTarget(
        dsn=dsn,
        schema=schema,
        password=password or None,
        application_name=params.get("application_name") or None,
    )


def _search_path_option(options: str) -> tuple[str | None, str]:
    """libpq's `options=-c search_path=NAME`: the schema, and the other options."""
    try:
        words = shlex.split(options)
    except ValueError:
        return None, options
    schema: str | None = None
    rest: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        setting = None
        if word == "-c" and i + 1 < len(words):
            setting, i = words[i + 1], i + 1
        elif word.startswith("-c") or word.startswith("--"):
            setting = word[2:]
        name, eq, value = (setting or "").partition("=")
        if eq and name.strip().replace("-", "_") == "search_path":
            schema = value.strip().strip('"')
        elif setting is not None:
            rest += ["-c", setting]
        else:
            rest.append(word)
        i += 1
    return schema, " ".join(shlex.quote(w) for w in rest)


def redact_url(value: str) -> str:
    """The URL with any password replaced by ***; other text unchanged."""
    if not is_postgres_url(value):
        return value
    text = _SECRET_PARAMS.sub(r"\1" + _HIDDEN, value)
    scheme, _, rest = text.partition("://")
    # The userinfo ends at the last "@" before the query: a password with a
    # raw "/" or "#" (which should have been percent-encoded) is still hidden.
    query_at = rest.find("?")
    at = rest.rfind("@", 0, query_at if query_at >= 0 else len(rest))
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user}:{_HIDDEN}{rest[at:]}"
    elif "@" in rest and ":" in rest.split("@", 1)[0]:
        # An "@" only after the "?": the password itself has a raw "?".
        return f"{scheme}://{_HIDDEN}"
    return f"{scheme}://{rest}"


def scrub(message: str, password: str | None) -> str:
    """`message` without `password` in it, whatever a driver put in its text."""
    if password:
        for form in {password, quote(password, safe="")}:
            message = message.replace(form, _HIDDEN)
    return message
