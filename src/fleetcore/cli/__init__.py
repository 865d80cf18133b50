"""The ``fleetcore`` command line: one module per command group."""
