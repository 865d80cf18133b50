"""Activating releases: the :class:`~fleetcore.activate.interface.ActivatorImpl` interface."""
