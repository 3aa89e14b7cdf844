"""Which version answers a request: the champion, or for a share of new episodes the canary.

A new episode goes to the canary (by default the `challenger` alias) when one is loaded, it
is another version than the champion, and a stable hash of the episode id falls below
`canary_fraction`: the same id always lands on the same side, on every replica. The version
an episode started on is pinned to its id, so all its steps get that version even when an
alias moves meanwhile, until its report (`POST /v1/episodes`) closes it; the pins are a
bounded LRU, so episodes that never report are forgotten, least recently used first.

A request without an episode id goes to the champion: without an id the server cannot tell
which steps form an episode, so it cannot keep one on one policy. That path does no hashing
and touches no pin.

Everything here runs on the event loop: requests never wait for a lock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from rlops_serving.champion import ChampionWatcher, Served


def canary_share(episode_id: str) -> float:
    """Where `episode_id` falls in [0, 1): uniform over ids, the same in every process."""
    digest = hashlib.blake2b(episode_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class CanaryRouter:
    """Chooses the version for each request and keeps every open episode on its version."""

    def __init__(
        self,
        champion: ChampionWatcher,
        canary: ChampionWatcher | None,
        fraction: float,
        max_open_episodes: int,
    ) -> None:
        self.champion = champion
        self.canary = canary
        self.fraction = fraction
        self.max_open_episodes = max_open_episodes
        self._open: OrderedDict[str, Served] = OrderedDict()

    @property
    def watchers(self) -> tuple[ChampionWatcher, ...]:
        return (self.champion,) if self.canary is None else (self.champion, self.canary)

    def route(self, episode_id: str | None) -> Served | None:
        """The version to answer with (None while no champion is loaded)."""
        champion = self.champion.served
        if episode_id is None or champion is None:
            return champion
        pinned = self._open.get(episode_id)
        if pinned is not None:
            self._open.move_to_end(episode_id)
            return pinned
        chosen = self._canary_for(episode_id, champion) or champion
        self._open[episode_id] = chosen
        if len(self._open) > self.max_open_episodes:
            self._open.popitem(last=False)
        return chosen

    def _canary_for(self, episode_id: str, champion: Served) -> Served | None:
        canary = self.canary.served if self.canary is not None else None
        if canary is None or canary.policy.version == champion.policy.version:
            return None
        return canary if canary_share(episode_id) < self.fraction else None

    def pinned(self, episode_id: str) -> Served | None:
        """The version an open episode is pinned to, if it is open."""
        return self._open.get(episode_id)

    def close(self, episode_id: str) -> None:
        """The episode is over: its next request starts a new one."""
        self._open.pop(episode_id, None)

    def served_versions(self) -> frozenset[str]:
        """Every version some alias served since the process started."""
        return frozenset().union(*(watcher.versions for watcher in self.watchers))
