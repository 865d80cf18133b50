pytest_plugins = ["fleetcore.testing.fixtures"]
