"""The config layer: exact problem messages, interpolation, defaults, compiling."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from linqwatch.config import (
    Config,
    ConfigError,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)
from linqwatch.notifiers import REGISTRY
from linqwatch.rules import Matcher, Rule
from tests.examples import EXAMPLE, EXAMPLE_ENV, EXAMPLE_SUMMARY, SECRET

BASE = """
linq:
  api_key: k
notifiers:
  terminal: {type: console}
  ops-slack: {type: slack, token: xoxb-1, channel: "#ops"}
"""


def parse(text: str, **env: str) -> Config:
    return parse_config(textwrap.dedent(text), filename="config.yaml", env=env)


def problems(text: str, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, **env)
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


def with_rules(rules: str) -> str:
    return BASE + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  ")


# -- defaults and compiling ---------------------------------------------------


def test_defaults_fill_everything_not_given() -> None:
    config = parse("linq: {api_key: k}")
    assert config.linq.api_url == "https://api.linqapp.com/api/partner"
    assert config.linq.api_key is not None
    assert config.linq.api_key.get_secret_value() == "k"
    assert config.linq.webhook_secrets == ()
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 8080)
    assert (config.poll_interval, config.poll_timeout) == (60.0, 10.0)
    assert config.storage == "/var/lib/linqwatch/state.db"
    assert config.webhook_id_retention == 24 * 3600
    assert config.shutdown_grace == 10.0
    assert (config.log_level, config.log_format) == ("info", "auto")
    assert dict(config.lines) == {}
    assert config.rules == ()
    assert dict(config.notifiers) == {}


def test_empty_sections_mean_defaults() -> None:
    config = parse("linq: {api_key: k}\npoll:\nlog:\nlines:\nnotifiers:\nrules:\n")
    assert config.poll_interval == 60.0
    assert config.rules == ()


def test_settings_are_read() -> None:
    config = parse(
        f"""
        linq:
          api_url: http://127.0.0.1:9000/api/partner/
          webhook_secrets: ["{SECRET}", "${{OLD_SECRET:-}}"]
        listen: "[::1]:9090"
        poll: {{interval: 0}}
        storage: ./state.db
        webhook_id_retention: 2h
        shutdown_grace: 0
        log: {{level: DEBUG, format: json}}
        """
    )
    assert config.linq.api_url == "http://127.0.0.1:9000/api/partner"
    assert [s.get_secret_value() for s in config.linq.webhook_secrets] == [SECRET]
    assert config.linq.api_key is None
    assert (config.listen_host, config.listen_port) == ("::1", 9090)
    assert config.poll_interval == 0.0
    assert config.storage == "./state.db"
    assert (config.webhook_id_retention, config.shutdown_grace) == (7200.0, 0.0)
    assert (config.log_level, config.log_format) == ("debug", "json")


def test_an_unset_timeout_is_capped_at_the_interval() -> None:
    assert parse("linq: {api_key: k}\npoll: {interval: 5s}").poll_timeout == 5.0


def test_rules_compile_to_rule_objects() -> None:
    config = parse(
        BASE
        + """
lines:
  "+12025551234": {env: production}
rules:
  - name: production line flagged
    when: {status: FLAGGED, labels: {env: production}}
    notify: [ops-slack, terminal]
    severity: CRITICAL
  - name: at risk
    when: {health: [AT_RISK, CRITICAL], numbers: ["+12025551234"]}
    notify: terminal
    for: 2m
    repeat: 4h
    send_resolved: false
"""
    )
    assert config.rules == (
        Rule(
            name="production line flagged",
            when=Matcher(status=frozenset({"FLAGGED"}), labels=(("env", "production"),)),
            notify=("ops-slack", "terminal"),
            severity="critical",
        ),
        Rule(
            name="at risk",
            when=Matcher(
                health=frozenset({"AT_RISK", "CRITICAL"}), numbers=frozenset({"+12025551234"})
            ),
            notify=("terminal",),
            hold=120.0,
            repeat=4 * 3600.0,
            send_resolved=False,
        ),
    )


def test_notifiers_are_models_of_their_registered_kind() -> None:
    config = parse(BASE)
    for name, kind in (("terminal", "console"), ("ops-slack", "slack")):
        assert isinstance(config.notifiers[name], REGISTRY[kind].config_model)


def test_labels_merge_over_the_star_defaults() -> None:
    config = parse(
        """
        linq: {api_key: k}
        lines:
          "*": {env: staging, team: none}
          "+12025551234": {env: production, name: Growth outbound 1, weight: 5, canary: yes}
          "+12025550000":
        """
    )
    assert config.labels_for("+12025551234") == {
        "env": "production",
        "team": "none",
        "name": "Growth outbound 1",
        "weight": "5",
        "canary": "true",
    }
    assert config.labels_for("+12025550000") == {"env": "staging", "team": "none"}
    assert config.labels_for("+19995550000") == {"env": "staging", "team": "none"}
    assert config.name_for("+12025551234") == "Growth outbound 1"
    assert config.name_for("+19995550000") is None
    assert list(config.lines) == ["*", "+12025551234", "+12025550000"]


def test_config_is_frozen() -> None:
    config = parse("linq: {api_key: k}\nlines: {'*': {env: x}}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.storage = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.lines["*"]["env"] = "y"  # type: ignore[index]


def test_summary() -> None:
    config = parse(BASE + 'lines: {"*": {}, "+12025551234": {}}')
    assert config.summary() == "1 line, 0 rules, 2 notifiers (terminal: console, ops-slack: slack)"


# -- the example ----------------------------------------------------------------


def test_the_example_config_validates() -> None:
    config = load_config(EXAMPLE, env=EXAMPLE_ENV)
    assert config.summary() == EXAMPLE_SUMMARY
    assert config.name_for("+12025551234") == "Growth outbound 1"


def test_no_secret_in_repr_or_str() -> None:
    config = load_config(EXAMPLE, env=EXAMPLE_ENV)
    for shown in (repr(config), str(config)):
        for secret in EXAMPLE_ENV.values():
            assert secret not in shown
            assert secret.removeprefix("whsec_") not in shown


def test_example_without_environment_names_every_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(EXAMPLE, env={})
    assert caught.value.errors == [
        "linq.api_key: environment variable LINQ_API_KEY is not set",
        "linq.webhook_secrets[0]: environment variable LINQ_WEBHOOK_SECRET is not set",
        "notifiers.oncall.routing_key: environment variable PAGERDUTY_ROUTING_KEY is not set",
        "notifiers.ops-slack.token: environment variable SLACK_BOT_TOKEN is not set",
        "notifiers.ops-slack-hook.webhook_url: environment variable SLACK_WEBHOOK_URL is not set",
        "notifiers.ops-mail.password: environment variable SMTP_PASSWORD is not set",
        "notifiers.sender.secret: environment variable PAUSE_HOOK_SECRET is not set",
        "notifiers.sender.headers.Authorization: environment variable SENDER_TOKEN is not set",
    ]


# -- exact problem messages -------------------------------------------------------


# One mistake at a time, and the exact lines it produces.
K = "linq: {api_key: k}\n"
DOLLAR = 'storage: a "$" must start ${NAME}, ${NAME:-default} or $$ (a literal $)'
DURATION_HINT = "(use e.g. 30s, 5m, 4h, 7d)"
LISTEN = "listen: expected HOST:PORT, like 0.0.0.0:8080 or [::1]:8080, got"
CASES = [
    ("linq: {api_kye: k}\npoling: {}", ["poling: unknown key", "linq.api_kye: unknown key"]),
    (
        K + "poll: {interval: 5 minutes}",
        [f'poll.interval: invalid duration "5 minutes" {DURATION_HINT}'],
    ),
    (K + "poll: {interval: -5m}", ['poll.interval: invalid duration "-5m" (must not be negative)']),
    (K + 'poll: {interval: "30"}', [f'poll.interval: invalid duration "30" {DURATION_HINT}']),
    (
        K + "poll: {interval: [1]}",
        ["poll.interval: expected a duration like 30s or 5m, got a list"],
    ),
    (K + "poll: {interval: true}", ["poll.interval: expected a duration like 30s or 5m, got true"]),
    (
        K + "shutdown_grace: 30",
        [f"shutdown_grace: invalid duration 30: a number needs a unit {DURATION_HINT}"],
    ),
    (
        "linq: {api_key: '${LINQ_API_KEY}'}",
        ["linq.api_key: environment variable LINQ_API_KEY is not set"],
    ),
    (
        "linq:\n  api_key: k\nrules:\n  - name: [a, b\n  - name: c\n",
        [
            "config.yaml:5: expected ',' or ']', but got ':'"
            " (while parsing a flow sequence on line 4)"
        ],
    ),
    ("linq:\n  api_key: k\n  poll: a: b\n", ["config.yaml:3: mapping values are not allowed here"]),
    (
        K + "rules: []\nlog: {level: info, level: debug}\nrules: []\n",
        [
            'config.yaml:3: duplicate key "level" (first on line 3)',
            'config.yaml:4: duplicate key "rules" (first on line 2)',
        ],
    ),
    (K + "lines: &a {'*': *a}\n", ['lines."*": a YAML alias here contains itself']),
    ("- linq\n", ["config.yaml: expected a mapping of settings at the top, got a list"]),
    ("", ["linq.api_key: required when poll.interval is not 0"]),
    ("linq: {api_key: '${KEY:-}'}", ["linq.api_key: required when poll.interval is not 0"]),
    (
        K + "notifiers:\n  oncall: {type: pagerdutyy, routing_key: x}\n  x: {}\n",
        [
            'notifiers.oncall.type: unknown notifier type "pagerdutyy"'
            " (known: console, email, pagerduty, slack, webhook)",
            "notifiers.x.type: required (known: console, email, pagerduty, slack, webhook)",
        ],
    ),
    (
        K + "poll: {interval: 5s, timeout: 6s}",
        ["poll.timeout: must not be longer than poll.interval (5s)"],
    ),
    (K + "poll: {timeout: 0}", ["poll.timeout: must be more than 0"]),
    (
        K + "storage: postgresql:///x",
        [
            "storage: a PostgreSQL URL needs a host,"
            " like postgresql://linqwatch@db.example.com/linqwatch"
        ],
    ),
    (K + "storage: sqlite:///x.db", ["storage: give a file path (SQLite) or a postgresql:// URL"]),
    (K + "listen: 8080", [f"{LISTEN} 8080"]),
    (K + 'listen: ":8080"', [f'{LISTEN} ":8080"']),
    (K + "listen: '::1:8080'", [f'{LISTEN} "::1:8080"']),
    (K + "listen: '[x]:8080'", ["listen: [x] is not an IPv6 address"]),
    (K + "listen: host:70000", ["listen: port 70000 is out of range (0-65535)"]),
    (
        K + "webhook_id_retention: 10m",
        ["webhook_id_retention: must be at least 1h: Linq retries a webhook for about 30 minutes"],
    ),
    (K + "lines: {'${LINE}': {}}", ['lines."${LINE}": not an E.164 number (like +12025551234)']),
    *[
        (K + f"storage: '{bad}'", [DOLLAR])
        for bad in ("$HOME", "${HOME", "${1X}", "${A:-${B}}", "${A-b}", "a $ b")
    ],
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_problem_messages(text: str, expected: list[str]) -> None:
    assert problems(text, HOME="/root", LINE="+12025551234") == expected


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [("0.0.0.0:8080", "0.0.0.0", 8080), ("localhost:0", "localhost", 0), ("'[::]:80'", "::", 80)],
)
def test_listen(value: str, host: str, port: int) -> None:
    config = parse(f"linq: {{api_key: k}}\nlisten: {value}")
    assert (config.listen_host, config.listen_port) == (host, port)


def test_undefined_notifier() -> None:
    text = with_rules(
        """
        - {name: a, when: {status: FLAGGED}, notify: [terminal]}
        - {name: b, when: {status: FLAGGED}, notify: [pagr, ops-slack, ops-slack]}
        """
    )
    assert problems(text) == ['rules[1].notify[0]: undefined notifier "pagr"']


def test_a_notifier_listed_twice() -> None:
    text = with_rules("- {name: a, when: {status: FLAGGED}, notify: [terminal, terminal]}")
    assert problems(text) == ['rules[0].notify: "terminal" listed twice']


def test_non_e164_numbers() -> None:
    text = """
        linq: {api_key: k}
        lines:
          "12025551234": {}
          +12025555678: {}
          "+1 202 555 0000": {}
        rules:
          - {name: a, when: {status: FLAGGED, numbers: ["+1202555", "2025550000"]}, notify: []}
        """
    quote_it = "quote it, YAML reads an unquoted +12025551234 as the number 12025551234"
    assert problems(text) == [
        'lines."12025551234": not an E.164 number (like +12025551234)',
        f'lines."12025555678": not an E.164 number (like +12025551234); {quote_it}',
        'lines."+1 202 555 0000": not an E.164 number (like +12025551234)',
        "rules[0].when.numbers[1]: not an E.164 number (like +12025551234)",
        "rules[0].notify: must not be empty",
    ]


def test_polling_off_needs_no_api_key() -> None:
    assert parse("poll: {interval: 0}").linq.api_key is None
    assert parse("linq: {api_key: '${KEY:-}'}\npoll: {interval: 0}").linq.api_key is None


def test_yaml_merge_keys_may_be_overridden() -> None:
    text = """
        linq: {api_key: k}
        lines:
          "*": &base {env: staging, team: growth}
          "+12025551234": {<<: *base, env: production}
        """
    assert parse(text).labels_for("+12025551234") == {"env": "production", "team": "growth"}


def test_problems_inside_a_notifier_carry_no_union_tag() -> None:
    text = """
        linq: {api_key: k}
        notifiers:
          ops-slack: {type: slack, token: xoxb-1, chanel: "#ops"}
          terminal: {type: console, color: maybe}
          broken: [console]
        """
    assert problems(text) == [
        "notifiers.ops-slack.chanel: unknown key",
        'notifiers.terminal.color: expected true or false, got "maybe"',
        "notifiers.broken: expected a mapping with a type, got a list",
    ]


def test_missing_required_fields() -> None:
    text = with_rules("- {when: {status: FLAGGED}}\n- {name: b, notify: [terminal]}")
    assert problems(text) == [
        "rules[0].name: required",
        "rules[0].notify: required",
        "rules[1].when: required",
    ]


def test_webhook_secrets_are_checked_but_never_shown() -> None:
    text = """
        linq:
          api_key: k
          webhook_secrets: ["${EMPTY:-}", "${A}", "whsec_not base64!", "whsec_"]
        """
    errors = problems(text, A="sk_live_supersecret")
    assert errors == [
        "linq.webhook_secrets[1]: must start with whsec_",
        "linq.webhook_secrets[2]: is not valid base64 after whsec_",
        "linq.webhook_secrets[3]: has no key after whsec_",
    ]


def test_choices() -> None:
    text = with_rules("- {name: a, when: {status: FLAGGED}, notify: [terminal], severity: high}")
    assert problems(text + "\nlog: {level: verbose}\n") == [
        'log.level: must be one of: debug, info, warning, error (got "verbose")',
        'rules[0].severity: must be one of: critical, error, warning, info (got "high")',
    ]


def test_rules_that_could_never_fire() -> None:
    text = (
        with_rules(
            """
            - {name: a, when: {status: flagged}, notify: [terminal]}
            - {name: b, when: {labels: {env: production}}, notify: [terminal]}
            - {name: c, when: {status: FLAGGED, labels: {env: prod}}, notify: [terminal]}
            - name: d
              when: {status: FLAGGED, labels: {env: production}, numbers: ["+12025550000"]}
              notify: [terminal]
            - {name: e, when: {status: FLAGGED, labels: {env: production}}, notify: [terminal]}
            """
        )
        + 'lines: {"+12025551234": {env: production}}\n'
    )
    assert problems(text) == [
        'rules[0].when.status[0]: "flagged" would never match: Linq reports it as "FLAGGED"',
        "rules[1].when: needs status or health (or both), or meta",
        "rules[2].when.labels: no line in lines has env=prod, so this rule could never fire",
        "rules[3].when.labels: no line in lines has env=production, so this rule could never fire",
    ]


def test_duplicate_rule_names_show_even_in_a_broken_rule() -> None:
    text = with_rules(
        """
        - {name: flagged, when: {status: FLAGGED}, notify: [terminal]}
        - {name: flagged, when: {status: FLAGGED}, notify: [terminal], for: soon}
        """
    )
    assert problems(text) == [
        'rules[1].for: invalid duration "soon" (use e.g. 30s, 5m, 4h, 7d)',
        'rules[1].name: duplicate rule name "flagged" (first used by rules[0])',
    ]


def test_every_problem_at_once() -> None:
    text = """
        linq:
          api_key: ${LINQ_API_KEY}
          api_kye: oops
        poll: {interval: 5 minutes}
        lines:
          "12025551234": {name: x}
        notifiers:
          oncall: {type: pagerdutyy}
          terminal: {type: console}
        rules:
          - name: flagged
            when: {status: FLAGGED}
            notify: [pagr, terminal]
            repeat: often
        """
    assert problems(text) == [
        "linq.api_key: environment variable LINQ_API_KEY is not set",
        "linq.api_kye: unknown key",
        'poll.interval: invalid duration "5 minutes" (use e.g. 30s, 5m, 4h, 7d)',
        'lines."12025551234": not an E.164 number (like +12025551234)',
        'notifiers.oncall.type: unknown notifier type "pagerdutyy"'
        " (known: console, email, pagerduty, slack, webhook)",
        'rules[0].notify[0]: undefined notifier "pagr"',
        'rules[0].repeat: invalid duration "often" (use e.g. 30s, 5m, 4h, 7d)',
    ]


# -- interpolation ----------------------------------------------------------------


def test_interpolation() -> None:
    text = """
        linq: {api_key: "${KEY}"}
        storage: ${DIR:-/var/lib/linqwatch}/state-$${HOME}-${SUFFIX:-x}.db
        lines:
          "*": {env: "${ENV:-staging}", price: "$$5", raw: "${RAW}"}
        """
    config = parse(text, KEY="k-1", DIR="/srv", SUFFIX="", RAW="${KEY} $$")
    assert config.linq.api_key is not None
    assert config.linq.api_key.get_secret_value() == "k-1"
    assert config.storage == "/srv/state-${HOME}-x.db"
    # The environment's own text is used as it is, never expanded again.
    assert config.labels_for("+12025551234") == {
        "env": "staging",
        "price": "$5",
        "raw": "${KEY} $$",
    }


def test_an_empty_variable_without_default_is_empty() -> None:
    assert parse("linq: {api_key: k}\nlines: {'*': {env: '${E}'}}", E="").labels_for("x") == {
        "env": ""
    }


def test_values_from_the_environment_are_not_shown_in_problems() -> None:
    text = "linq: {api_key: k}\npoll: {interval: '${INTERVAL}'}\nlisten: '${LISTEN}'\n"
    assert problems(text, INTERVAL="hunter2", LISTEN="hunter3") == [
        'listen: expected HOST:PORT, like 0.0.0.0:8080 or [::1]:8080, got "${LISTEN}"',
        'poll.interval: invalid duration "${INTERVAL}" (use e.g. 30s, 5m, 4h, 7d)',
    ]


# Words the schema knows, so generated trees reach deep into it.
_VOCABULARY = """
    linq api_key api_url webhook_secrets listen poll interval timeout storage log level lines
    * +12025551234 notifiers type slack console token channel rules name when status health
    labels numbers notify for repeat severity FLAGGED 5m 0 ${X} ${UNSET} $$ $ whsec_AA==
"""
_WORDS = st.sampled_from(_VOCABULARY.split())
_TREES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | _WORDS | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_WORDS, inner, max_size=5),
    max_leaves=25,
)


@given(st.dictionaries(_WORDS, _TREES, max_size=6))
def test_any_tree_is_a_config_or_a_config_error(tree: dict[str, object]) -> None:
    try:
        parse_config(yaml.safe_dump(tree), env={"X": "x"})
    except ConfigError as error:
        assert error.errors
        assert all(isinstance(line, str) and line for line in error.errors)


# -- files ------------------------------------------------------------------------


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("linq: {api_key: '${K}'}\nlog: {level: nope}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"K": "k"})
    assert caught.value.errors == [
        'log.level: must be one of: debug, info, warning, error (got "nope")'
    ]
    path.write_text("linq: {api_key: '${K}'}\nrules: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"K": "k"})
    assert caught.value.errors[0].startswith(f"{path}:3: ")


def test_load_config_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")
    assert caught.value.errors == [
        f"{tmp_path / 'absent.yaml'}: cannot read the file: No such file or directory"
    ]
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"linq: {}\n\xff\xfe")
    with pytest.raises(ConfigError) as caught:
        load_config(binary)
    assert caught.value.errors == [f"{binary}: not UTF-8 text (byte 9)"]


# -- durations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("4h", 14400.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("250ms", 0.25),
        ("0", 0.0),
        (0, 0.0),
        (" 10s ", 10.0),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "5", "5 m", "1m1h", "1.5h", "5M", "1h1h", "s", "-0s", 5, True]
)
def test_parse_duration_refuses(text: str | int) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**13))
def test_formatting_a_duration_parses_back(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 0.25, 90, 5400, 86400 + 1)] == [
        "0",
        "250ms",
        "1m30s",
        "1h30m",
        "1d1s",
    ]
