"""The policy server's limits, tried over raw sockets: slow headers, a slow body, too many
connections. Each costs an attacker more than it costs the server."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from urllib.parse import urlsplit

import httpx

from tests.serving.conftest import AUTH, running_server, settings

OBS = [0.5, -0.3, 0.8]


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` (without answering) within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False


def test_a_connection_stopped_mid_headers_is_closed(champion) -> None:
    with running_server(settings(header_timeout_seconds=0.5)) as server:
        with _connect(server.url) as sock:
            sock.sendall(b"POST /v1/act HTTP/1.1\r\nHost: localhost\r\nContent-Ty")
            assert _closed_within(sock, 5.0)
        with _connect(server.url) as idle:  # one that never sent a byte goes too
            assert _closed_within(idle, 5.0)
        # A client in time is served, and its kept-alive connection can take a second request.
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
            assert http.post("/v1/act", json={"observation": OBS}).status_code == 200
            assert http.post("/v1/act", json={"observation": OBS}).status_code == 200


def test_a_body_that_does_not_arrive_in_time_is_a_408(champion) -> None:
    with running_server(settings(body_timeout_seconds=0.5)) as server, _connect(server.url) as sock:
        token = AUTH["Authorization"]
        sock.sendall(
            b"POST /v1/act HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + f"Authorization: {token}\r\nContent-Length: 200\r\n\r\n".encode()
            + b'{"observation": ['
        )
        sock.settimeout(5.0)
        began = time.monotonic()
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"did not arrive within 0.5 s" in answer
        assert time.monotonic() - began < 5.0


def test_connections_beyond_the_limit_get_a_503(champion) -> None:
    with running_server(settings(max_concurrency=3)) as server, ExitStack() as held:
        for _ in range(3):
            held.callback(_connect(server.url).close)
        time.sleep(0.2)  # the server has accepted them
        refused = httpx.post(f"{server.url}/v1/act", json={"observation": OBS}, headers=AUTH)
        assert refused.status_code == 503
        held.close()
        time.sleep(0.2)
        answered = httpx.post(f"{server.url}/v1/act", json={"observation": OBS}, headers=AUTH)
        assert answered.status_code == 200
