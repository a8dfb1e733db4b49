"""Settings: what ``runwatch serve`` and the other commands are configured by — defaults, a TOML
file, environment variables, flags — as data. ``config.Settings`` is a frozen struct of sections
(``sections``, ``access``), each field's environment variable, help, flag and range in its
``msgspec.Meta`` (``base.setting``); ``catalog`` reads them, ``sources`` gathers given values,
``values`` checks each one with ``msgspec.convert``, ``checks`` what spans settings, and ``flags``
makes the command line's flags and env list from the same metadata.

May import: ``runwatch.agents``' vocabulary (``redact``, prices, the offline model's name) only."""
