"""TorchScript files that do more than maths: what someone who can write to the artifact store
could put in place of `actor.pt`. Each acts like a Pendulum policy (3 numbers in, 1 out) so
only what it does besides, touching the file at `path`, tells it apart.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rl_core.sac.torchscript import quiet_torchscript


class MapsAFile(nn.Module):
    """forward maps the file at `path` and overwrites its first bytes (`aten::from_file`)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = str(path)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mapped = torch.from_file(self.path, True, 4, dtype=torch.uint8)
        mapped.fill_(88)
        return obs[:, :1] * 0.0 + mapped[0].float() * 0.0  # used, so TorchScript keeps it


class SavesAFile(nn.Module):
    """forward writes a tensor to `path` (`aten::save`)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = str(path)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        torch.save(obs, self.path)
        return obs[:, :1] * 0.0


class SavesInABranch(SavesAFile):
    """The same, inside an `if` every batch takes (a nested block)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.size(0) > 0:
            torch.save(obs, self.path)
        return obs[:, :1] * 0.0


class SavesWhenLoaded(nn.Module):
    """A scripted `__setstate__`, which `torch.jit.load` itself runs: it writes `path`."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = str(path)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, :1] * 0.0

    @torch.jit.export
    def __getstate__(self) -> list[str]:
        return [self.path]

    @torch.jit.export
    def __setstate__(self, state: list[str]) -> None:
        self.path = state[0]
        self.training = False
        torch.save(torch.ones(1), self.path)


def _save_in_hook(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
    torch.save(inputs[0], "/dev/null")


class Identity(nn.Module):
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, :1] * 0.0


def with_saving_hook() -> nn.Module:
    """A harmless forward behind a forward pre-hook that calls `aten::save`."""
    module = Identity()
    module.register_forward_pre_hook(_save_in_hook)
    return module


def save_scripted(module: nn.Module, path: Path) -> Path:
    """`torch.jit.script` the module and save it at `path`, as an attacker would."""
    with quiet_torchscript():
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def shifted_actor(actor: nn.Module, by: float = 1e-3) -> nn.Module:
    """A copy of `actor` whose mean action is off by `by`: what a buggy exporter would ship
    (every export check must refuse it)."""
    import copy

    shifted = copy.deepcopy(actor)
    with torch.no_grad():
        shifted.head.bias[: actor.act_dim] += by
    return shifted
