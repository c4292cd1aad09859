"""Where alerts go: a generic webhook, a Slack-compatible webhook, e-mail
over SMTP, and a JSON-lines log.

A sink's :meth:`~Sink.send` delivers one alert or raises :class:`SinkError`;
retries and back-off are :mod:`apps.sentiment_monitor.delivery`'s job.  Each
sink carries the alert id so receivers can drop repeats (delivery is
at-least-once): the webhook as the ``Idempotency-Key`` header and in the
body, Slack in the text, e-mail as the ``Message-ID``, the log in the record.

Example:

>>> from apps.sentiment_monitor.config import SinkConfig
>>> build_sink(SinkConfig(kind="webhook", url="http://127.0.0.1:9/alerts")).name
'webhook'
"""

from __future__ import annotations

import json
import os
import smtplib
import threading
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path

from apps.sentiment_monitor.alerts import Alert
from apps.sentiment_monitor.config import SinkConfig
from apps.sentiment_monitor.items import format_timestamp


class SinkError(RuntimeError):
    """One delivery attempt failed; the message says why."""


class Sink:
    name: str

    def send(self, alert: Alert) -> None:  # pragma: no cover - an interface
        raise NotImplementedError


def _post_json(url: str, payload: dict, headers: dict[str, str], timeout: float) -> None:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise SinkError(f"POST {url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SinkError(f"POST {url} failed: {getattr(exc, 'reason', exc)}") from None


class WebhookSink(Sink):
    """POSTs the alert as JSON."""

    def __init__(self, config: SinkConfig) -> None:
        self.name, self.url, self.timeout = config.key, config.url, config.timeout_seconds

    def send(self, alert: Alert) -> None:
        _post_json(self.url, alert.to_payload(), {"Idempotency-Key": alert.alert_id}, self.timeout)


def slack_message(alert: Alert) -> dict:
    """A Slack incoming-webhook message: a text fallback and blocks with the evidence."""
    evidence = "\n".join(f"• {e['text']} (P(neg) {e['p_negative']:.2f}, {format_timestamp(e['timestamp'])})"
                         for e in alert.evidence) or "—"
    text = f":rotating_light: {alert.summary()} ({alert.alert_id})"
    return {"text": text, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{alert.severity.upper()}* `{alert.entity}` "
                                                               f"{alert.rule}\n{alert.summary()}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Most negative items*\n{evidence}"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert id {alert.alert_id}"}]},
    ]}


class SlackSink(Sink):
    def __init__(self, config: SinkConfig) -> None:
        self.name, self.url, self.timeout = config.key, config.url, config.timeout_seconds

    def send(self, alert: Alert) -> None:
        _post_json(self.url, slack_message(alert), {}, self.timeout)


def email_message(alert: Alert, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[{alert.severity}] {alert.entity}: {alert.rule}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Message-ID"] = f"<{alert.alert_id}@sentiment-monitor>"  # Lets mail systems drop repeats.
    lines = [alert.summary(), "", "Figures:"] + [f"  {k}: {v}" for k, v in alert.figures.items()]
    lines += ["", "Most negative items:"] + [f"  - {e['text']} (P(neg) {e['p_negative']:.2f}, {e['id']})"
                                             for e in alert.evidence]
    lines += ["", f"Alert id: {alert.alert_id}"]
    message.set_content("\n".join(lines))
    return message


class EmailSink(Sink):
    def __init__(self, config: SinkConfig) -> None:
        self.name = config.key
        self.config = config
        if config.password_env and config.password_env not in os.environ:
            raise SinkError(f"sink {config.key}: environment variable {config.password_env} (the SMTP password) "
                            "is not set")

    def send(self, alert: Alert) -> None:
        c = self.config
        try:
            with smtplib.SMTP(c.host, c.port, timeout=c.timeout_seconds) as smtp:
                if c.starttls:
                    smtp.starttls()
                if c.username:
                    smtp.login(c.username, os.environ.get(c.password_env, ""))
                smtp.send_message(email_message(alert, c.sender, c.recipients))
        except (smtplib.SMTPException, OSError) as exc:
            raise SinkError(f"SMTP {c.host}:{c.port} failed: {exc}") from None


class JsonlSink(Sink):
    """Appends each alert as one JSON line (flushed to disk before it counts as delivered)."""

    def __init__(self, config: SinkConfig) -> None:
        self.name, self.path = config.key, Path(config.path)
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(alert.to_payload(), ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise SinkError(f"cannot append to {self.path}: {exc}") from None


SINKS = {"webhook": WebhookSink, "slack": SlackSink, "email": EmailSink, "jsonl": JsonlSink}


def build_sink(config: SinkConfig) -> Sink:
    return SINKS[config.kind](config)
