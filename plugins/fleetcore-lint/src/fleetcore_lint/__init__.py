"""fleetcore's built-in linters for fleet repositories (``fleetcore lint``)."""
