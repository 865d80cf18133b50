"""Running checks (verify, validate, health, drift) in isolation."""
