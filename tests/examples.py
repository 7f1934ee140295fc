"""The shipped example config and the environment it needs, shared by tests."""

from __future__ import annotations

from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.yaml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EXAMPLE_ENV = {
    "LINQ_API_KEY": "linq-key-0000-very-secret",
    "LINQ_WEBHOOK_SECRET": SECRET,
    "SLACK_BOT_TOKEN": "xoxb-bot-token-very-secret",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/very-secret",
    "PAGERDUTY_ROUTING_KEY": "R0pagerduty0routing0key0secret00",
    "SMTP_PASSWORD": "smtp-password-very-secret",
    "PAUSE_HOOK_SECRET": "whsec_cGF1c2UtaG9vay12ZXJ5LXNlY3JldC1rZXk=",
    "SENDER_TOKEN": "sender-token-very-secret",
}
EXAMPLE_SUMMARY = (
    "2 lines, 8 rules, 7 notifiers (oncall: pagerduty, ops-slack: slack,"
    " ops-slack-hook: slack, ops-mail: email, account-team: email, sender: webhook,"
    " terminal: console)"
)
