"""Fetching releases: the :class:`~fleetcore.fetch.interface.Source` interface."""
