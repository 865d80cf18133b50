"""fleetcore: pull-based GitOps for fleets of edge devices.

The package is deliberately small at import time: nothing here imports the
plugin manager, the agent or the server. Import what a step needs.
"""

__version__ = "0.1.0"
