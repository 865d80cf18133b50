"""fleetcore's MQTT event channel: the server publishes each device's events
to ``<prefix>/devices/<device_id>/events``; the device's agent subscribes
there and wakes up. See the package's README."""
