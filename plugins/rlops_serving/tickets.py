"""Episode tickets: what makes a reported episode one this server actually served.

`POST /v1/act` with `start_episode` opens an episode and answers with a ticket; every later
step sends the latest ticket and gets the next one. A ticket is signed by the server (HMAC-SHA256,
truncated to 128 bits) and states, unforgeably:

- the model version that serves the episode (every step of it gets that version);
- how many steps the server has served under it (a report may not claim more);
- when the episode started (it expires `ticket_ttl_seconds` later);
- a random episode id (one report per episode) and which API key it was issued to.

Nothing is stored per open episode: the ticket carries its state, so a flood of new episodes
costs the server no memory and evicts nobody, and replicas sharing the secret
(`RLOPS_SERVING_TICKET_SECRET`) accept each other's tickets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

_LAYOUT = struct.Struct(">III12s8s")
"""version, steps, start (epoch seconds), episode id, key fingerprint."""
_MAC_BYTES = 16
TICKET_CHARS = 64
"""Length of an encoded ticket: 48 bytes in unpadded base64url."""
MAX_STEPS = 2**32 - 1


class TicketError(ValueError):
    """A ticket the server cannot take; the message says why, in words for the client."""


@dataclass(frozen=True, slots=True)
class Ticket:
    version: int
    steps: int
    started: int
    episode: bytes
    key: bytes

    @property
    def episode_id(self) -> str:
        return self.episode.hex()


def new_episode() -> bytes:
    """A fresh episode id: random, so no client picks its canary side or collides with another."""
    return secrets.token_bytes(12)


@lru_cache(maxsize=1024)
def key_fingerprint(key_id: str) -> bytes:
    return hashlib.sha256(key_id.encode()).digest()[:8]


class TicketSigner:
    """Issues, advances and checks tickets with one secret."""

    def __init__(
        self, secret: bytes, ttl_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the ticket secret must be at least 32 bytes")
        self._secret = secret
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def start(self, version: str, key_id: str, episode: bytes) -> Ticket:
        """The first ticket of `episode` (from `new_episode`), served by `version`."""
        return Ticket(int(version), 1, int(self._clock()), episode, key_fingerprint(key_id))

    @staticmethod
    def advanced(ticket: Ticket) -> Ticket:
        """The ticket after one more step served under it."""
        steps = min(ticket.steps + 1, MAX_STEPS)
        return Ticket(ticket.version, steps, ticket.started, ticket.episode, ticket.key)

    def encode(self, ticket: Ticket) -> str:
        payload = _LAYOUT.pack(
            ticket.version, ticket.steps, ticket.started, ticket.episode, ticket.key
        )
        mac = hmac.digest(self._secret, payload, "sha256")[:_MAC_BYTES]
        return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()

    def decode(self, text: str, key_id: str) -> Ticket:
        """The ticket `text` encodes, if this server signed it for `key_id` and it has not
        expired; else a `TicketError` saying which."""
        try:
            raw = base64.urlsafe_b64decode(text.encode() + b"==")
        except (binascii.Error, UnicodeEncodeError):
            raw = b""
        payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
        expected = hmac.digest(self._secret, payload, "sha256")[:_MAC_BYTES]
        if len(raw) != _LAYOUT.size + _MAC_BYTES or not hmac.compare_digest(mac, expected):
            raise TicketError("not a ticket this server issued (bad signature)")
        ticket = Ticket(*_LAYOUT.unpack(payload))
        if not hmac.compare_digest(ticket.key, key_fingerprint(key_id)):
            raise TicketError("issued to another API key")
        expires = ticket.started + self.ttl_seconds
        if self._clock() >= expires:
            when = datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")
            raise TicketError(f"expired at {when} (tickets last {self.ttl_seconds} s)")
        return ticket

    def expiry(self, ticket: Ticket) -> int:
        return ticket.started + self.ttl_seconds
