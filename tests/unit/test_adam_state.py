"""rlops keeps Adam's state itself (rl_core/sac/adam_state.py) in torch.optim.Adam's format:
checkpoints of either load into the other, and a state that does not fit is refused."""

from __future__ import annotations

import copy

import pytest
import torch

from rl_core.sac.adam_state import AdamState


def _params() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randn(4, 3, generator=generator).requires_grad_(),
        torch.zeros(3).requires_grad_(),
    ]


def _torch_adam_after_steps(params: list[torch.Tensor], steps: int) -> torch.optim.Adam:
    adam = torch.optim.Adam(params, lr=3e-4, betas=(0.8, 0.99), eps=1e-6, fused=True)
    for _ in range(steps):
        adam.zero_grad()
        sum((p * p.detach().sin()).sum() + p.sum() for p in params).backward()
        adam.step()
    return adam


def test_a_torch_adam_checkpoint_loads_and_ours_loads_into_torch_adam() -> None:
    params = _params()
    saved = _torch_adam_after_steps(params, steps=3).state_dict()

    ours = AdamState(params, lr=1e-3)
    ours.load_state_dict(saved)

    assert (ours.lr, ours.betas, ours.eps) == (3e-4, (0.8, 0.99), 1e-6)
    for i, state in saved["state"].items():
        torch.testing.assert_close(ours.exp_avgs[i], state["exp_avg"], rtol=0, atol=0)
        torch.testing.assert_close(ours.exp_avg_sqs[i], state["exp_avg_sq"], rtol=0, atol=0)
        assert ours.steps[i].item() == 3.0
    again = torch.optim.Adam(params, lr=1.0, fused=True)
    again.load_state_dict(ours.state_dict())
    assert again.state_dict()["param_groups"] == saved["param_groups"]
    for i, state in again.state_dict()["state"].items():
        torch.testing.assert_close(state["exp_avg_sq"], saved["state"][i]["exp_avg_sq"])


def test_a_group_aligns_the_state_with_the_parameters_in_the_order_asked() -> None:
    params = _params()
    ours = AdamState(params, lr=1e-3)
    ours.load_state_dict(_torch_adam_after_steps(params, steps=1).state_dict())

    group = ours.group(params[::-1])

    assert group.params == params[::-1]
    assert [m.shape for m in group.exp_avgs] == [(3,), (4, 3)]
    assert group.exp_avgs[0] is ours.exp_avgs[1]
    assert group.lr.item() == pytest.approx(3e-4) and group.lr.dtype == torch.float64


def test_a_state_saved_before_the_first_step_starts_from_zero() -> None:
    params = _params()
    ours = AdamState(params, lr=1e-3)
    ours.load_state_dict(_torch_adam_after_steps(params, steps=2).state_dict())

    ours.load_state_dict(torch.optim.Adam(params, lr=5e-4, fused=True).state_dict())

    assert ours.lr == 5e-4
    assert [s.item() for s in ours.steps] == [0.0, 0.0]
    assert all(not m.any() for m in ours.exp_avgs + ours.exp_avg_sqs)


def test_a_state_of_other_parameters_is_refused_by_count_and_by_shape() -> None:
    params = _params()
    ours = AdamState(params, lr=1e-3)
    with pytest.raises(
        ValueError, match="Adam state for 1 parameters cannot load into a group of 2"
    ):
        ours.load_state_dict(_torch_adam_after_steps(params[:1], steps=1).state_dict())
    other = [torch.zeros(2, 3, requires_grad=True), torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match=r"parameter 0 has shape \(2, 3\), the parameter \(4, 3\)"):
        ours.load_state_dict(_torch_adam_after_steps(other, steps=1).state_dict())


def test_a_deep_copy_aligns_with_its_own_copied_parameters() -> None:
    """An agent may be deep-copied (a reference in tests, a snapshot): its Adam state must then
    find the copied parameters, not the originals."""
    ours = AdamState(_params(), lr=1e-3)
    copied = copy.deepcopy(ours)

    group = copied.group(copied.params[::-1])

    assert group.exp_avgs[0] is copied.exp_avgs[1]
    assert all(a is not b for a, b in zip(copied.params, ours.params, strict=True))
