"""Helpers for testing fleetcore and fleetcore plugins against real components.

- :mod:`fleetcore.testing.gitrepo`: fleet repositories made with real git, and
  a real ``git daemon``.
- :mod:`fleetcore.testing.docker`: a real Docker Engine and an image built
  offline from busybox.
- :mod:`fleetcore.testing.contracts`: conformance checks a plugin package
  runs against its own records.
- :mod:`fleetcore.testing.conformance`: a conformance kit per kind of plugin
  (fetcher, activator, check, drift fix, secrets provider, rollout strategy,
  event channel), test classes to subclass in a plugin's own suite.
- :mod:`fleetcore.testing.fixtures`: pytest fixtures for all of the above;
  enable with ``pytest_plugins = ["fleetcore.testing.fixtures"]``.

A service that is missing skips the tests that need it on a workstation, and
fails them where ``CI`` or ``FLEETCORE_REQUIRE_SERVICES`` is set: in CI a
missing service is a broken run, never a quiet skip.
"""
