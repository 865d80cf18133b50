"""fleetcore's built-in rollout strategies, one plugin per module:
:mod:`~fleetcore_rollouts.percentage` and :mod:`~fleetcore_rollouts.canary`."""
