"""fleetcore alert channels: ``webhook`` (JSON POST) and ``alertmanager``
(Prometheus Alertmanager's v2 API)."""
