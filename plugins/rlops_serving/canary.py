"""Which version answers a request: the champion, or for a share of new episodes the canary.

A request that starts an episode goes to the canary (by default the `challenger` alias) when
one is loaded, it is another version than the champion, and a stable hash of the episode's
id falls below `canary_fraction`. The id is random, drawn by the server (tickets.py), so no
client chooses its side. Every later step of the episode names its version in its ticket and
gets that version, even after an alias moved, for as long as the version stays among the
`RECENT_VERSIONS` this server loaded last.

A request outside any episode goes to the champion: that path does no hashing.

Everything here runs on the event loop: requests never wait for a lock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from rlops_serving.champion import ChampionWatcher, Served

RECENT_VERSIONS = 8
"""Versions an open episode can still be served by after its alias moved on."""


def canary_share(episode_id: str) -> float:
    """Where `episode_id` falls in [0, 1): uniform over ids, the same in every process."""
    digest = hashlib.blake2b(episode_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class CanaryRouter:
    """Chooses the version for each request; remembers the versions open episodes may use."""

    def __init__(
        self, champion: ChampionWatcher, canary: ChampionWatcher | None, fraction: float
    ) -> None:
        self.champion = champion
        self.canary = canary
        self.fraction = fraction
        self._recent: OrderedDict[str, Served] = OrderedDict()

    @property
    def watchers(self) -> tuple[ChampionWatcher, ...]:
        return (self.champion,) if self.canary is None else (self.champion, self.canary)

    def route(self) -> Served | None:
        """The version for a request outside an episode (None while no champion is loaded)."""
        return self.champion.served

    def start(self, episode_id: str) -> Served | None:
        """The version for a new episode (None while no champion is loaded)."""
        champion = self.champion.served
        if champion is None:
            return None
        chosen = self._canary_for(episode_id, champion) or champion
        self._remember(chosen)
        return chosen

    def resume(self, version: str) -> Served | None:
        """The version an open episode started on, if this server still holds it."""
        for watcher in self.watchers:
            served = watcher.served
            if served is not None and served.policy.version == version:
                return served
        return self._recent.get(version)

    def _remember(self, served: Served) -> None:
        version = served.policy.version
        if self._recent.get(version) is not served:
            self._recent[version] = served
        self._recent.move_to_end(version)
        if len(self._recent) > RECENT_VERSIONS:
            self._recent.popitem(last=False)

    def _canary_for(self, episode_id: str, champion: Served) -> Served | None:
        canary = self.canary.served if self.canary is not None else None
        if canary is None or canary.policy.version == champion.policy.version:
            return None
        return canary if canary_share(episode_id) < self.fraction else None
