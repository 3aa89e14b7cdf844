"""Soft Actor-Critic itself: the networks, the replay buffer, the agent, the readable
update (sac_reference) and the fast one (sac_step) with the compilers that run it."""
