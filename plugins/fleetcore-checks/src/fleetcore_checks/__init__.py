"""fleetcore's built-in plugins that need only the standard library.

One module per plugin, each registered through its own entry point:
:mod:`~fleetcore_checks.script`, :mod:`~fleetcore_checks.validate_script`,
:mod:`~fleetcore_checks.health_script`, :mod:`~fleetcore_checks.http`,
:mod:`~fleetcore_checks.manifest` and :mod:`~fleetcore_checks.signature`.
"""
