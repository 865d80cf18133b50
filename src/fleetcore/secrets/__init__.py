"""Secrets providers: the :class:`~fleetcore.secrets.interface.SecretsProviderImpl` interface."""
