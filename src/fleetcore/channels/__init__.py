"""Event channels: how "update available" reaches devices besides SSE.

:mod:`~fleetcore.channels.interface` is what a channel plugin implements;
:mod:`~fleetcore.channels.select` is how the server's ``--events`` and the
agent's ``[server] events`` pick one.
"""
