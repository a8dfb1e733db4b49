"""Settings: what ``runwatch serve`` and the other commands are configured by — defaults, a TOML
file, environment variables, flags — and the range every numeric setting must lie in.

May import: ``runwatch.agents``' vocabulary (``redact``) only."""
