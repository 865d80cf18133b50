"""Secrets from the fleetcore control server (see the package README)."""
