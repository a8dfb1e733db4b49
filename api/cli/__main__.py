"""``python -m runwatch.api.cli``: the ``runwatch`` command."""

from runwatch.api.cli.commands import main

raise SystemExit(main())
