"""`storage:`: a SQLite path or a PostgreSQL URL; a password in it is never shown."""

from __future__ import annotations

import pytest

from linqwatch.config import ConfigError, parse_config
from linqwatch.store import PostgresStore, SQLiteStore, open_store
from linqwatch.store.dsn import parse_postgres_url, redact_url, scrub

K = "linq: {api_key: k}\n"
SECRET = "hunter2-Very-Secret"


def storage_problems(value: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(K + f"storage: '{value}'\n", env={})
    return caught.value.errors


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://linqwatch@db.example.com/linqwatch",
        "postgres://linqwatch@db.example.com:6432/linqwatch?schema=lw&sslmode=require",
        "postgresql:///linqwatch?host=/run/postgresql",
        "postgresql://db/linqwatch?options=-c%20search_path%3Dlw",
    ],
)
def test_postgresql_urls_are_accepted_and_open_the_postgres_store(url: str) -> None:
    config = parse_config(K + f"storage: '{url}'\n", env={})
    assert config.storage == url
    assert isinstance(open_store(config.storage), PostgresStore)


def test_a_path_still_means_sqlite() -> None:
    config = parse_config(K + "storage: ./state.db\n", env={})
    assert isinstance(open_store(config.storage), SQLiteStore)


def test_repr_of_the_config_hides_the_password() -> None:
    url = f"postgresql://linqwatch:{SECRET}@db/linqwatch?schema=lw&sslpassword={SECRET}"
    config = parse_config(K + "storage: '${DB_URL}'\n", env={"DB_URL": url})
    assert config.storage == url  # what the store connects with
    for shown in (repr(config), str(config), repr(config.storage)):
        assert SECRET not in shown
    assert repr(config.storage) == repr(
        "postgresql://linqwatch:***@db/linqwatch?schema=lw&sslpassword=***"
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            f"postgresql://u:{SECRET}@/linqwatch",
            "a PostgreSQL URL needs a host, like postgresql://linqwatch@db.example.com/linqwatch",
        ),
        (
            f"postgresql://u:{SECRET}/x@db:5432/linqwatch",  # an unencoded / in the password
            "the port must be a number from 1 to 65535 (percent-encode any : / @ ? # in the"
            " password)",
        ),
        (
            f"postgresql://u:{SECRET}@db/linqwatch?schema=my-schema",
            "schema must be a plain name (letters, digits, _; at most 63), like linqwatch",
        ),
        (f"mysql://u:{SECRET}@db/x", "give a file path (SQLite) or a postgresql:// URL"),
    ],
)
def test_bad_urls_are_refused_without_echoing_them(url: str, problem: str) -> None:
    assert storage_problems(url) == [f"storage: {problem}"]


def test_the_schema_comes_from_schema_or_search_path_and_leaves_the_url() -> None:
    target = parse_postgres_url("postgresql://u:p%40ss@db/x?schema=lw&sslmode=require")
    assert (target.schema, target.password) == ("lw", "p@ss")
    assert target.dsn == "postgresql://u:p%40ss@db/x?sslmode=require"
    target = parse_postgres_url("postgresql://db/x?options=-c%20search_path%3Dlw%20-c%20geqo%3Doff")
    assert target.schema == "lw"
    assert target.dsn == "postgresql://db/x?options=-c+geqo%3Doff"  # the rest is kept
    with pytest.raises(ValueError, match="give the schema once"):
        parse_postgres_url("postgresql://db/x?schema=a&options=-csearch_path%3Db")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
        ("postgresql://u:p/w#x@db/x", "postgresql://u:***@db/x"),
        ("postgresql://db/x?password=pw&a=1", "postgresql://db/x?password=***&a=1"),
        ("postgresql://u:p?w@db/x", "postgresql://***"),
        ("/var/lib/linqwatch/state.db", "/var/lib/linqwatch/state.db"),
    ],
)
def test_redacted_urls(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scrub_removes_the_password_in_both_spellings() -> None:
    assert scrub("bad p@ss and p%40ss", "p@ss") == "bad *** and ***"
    assert scrub("nothing to hide", None) == "nothing to hide"
