"""Rollout strategies: the :class:`~fleetcore.rollout.interface.Strategy` interface."""
