"""Real receivers on 127.0.0.1 for the alert tests: an SMTP server (aiosmtpd) and an HTTP
webhook (http.server), each recording what it got, and the connections that point at them."""

from __future__ import annotations

import email
import json
import socket
import threading
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller


class _Hook(BaseHTTPRequestHandler):
    """Records each POST (path, headers, JSON body); answers with the server's `status`."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(
            {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
        )
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(name="webhook")
def webhook_receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class _Mailbox:
    """aiosmtpd handler: keeps every message with its envelope."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(name="smtp")
def smtp_receiver() -> Iterator[Controller]:
    controller = Controller(_Mailbox(), hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller
    controller.stop()


RECIPIENTS = ("ops@example.org", "ml@example.org")
SENDER = "rlops@example.org"


def webhook_uri(server: ThreadingHTTPServer, token: str = "s3cret") -> str:
    """`rlops_alert_webhook` as an AIRFLOW_CONN_ URI: the path is the connection's schema."""
    return f"http://:{token}@127.0.0.1:{server.server_port}/hooks/rlops"


def smtp_uri(controller: Controller) -> str:
    """`rlops_alert_smtp` as an AIRFLOW_CONN_ URI: plain SMTP on loopback, no retries."""
    extra = {
        "from_email": SENDER,
        "to": ",".join(RECIPIENTS),
        "disable_ssl": "true",
        "disable_tls": "true",
        "retry_limit": "0",
        "timeout": "5",
    }
    query = "&".join(f"{key}={quote(value, safe='')}" for key, value in extra.items())
    return f"smtp://{controller.hostname}:{controller.port}?{query}"


def alert_env(server: ThreadingHTTPServer, controller: Controller) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_RLOPS_ALERT_WEBHOOK": webhook_uri(server),
        "AIRFLOW_CONN_RLOPS_ALERT_SMTP": smtp_uri(controller),
    }
