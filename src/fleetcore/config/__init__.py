"""Configuration: TOML files structured into frozen attrs classes with cattrs."""
