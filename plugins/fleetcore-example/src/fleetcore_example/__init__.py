"""An example third-party fleetcore plugin: the ``tcp-port`` health check.

Everything lives in :mod:`fleetcore_example.plugin`; see the package's
README for how it was built.
"""
