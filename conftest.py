# pytester: the conformance kits are tested by running them on broken plugins.
pytest_plugins = ["fleetcore.testing.fixtures", "pytester"]
