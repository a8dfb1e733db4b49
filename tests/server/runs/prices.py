"""The price table the cost and overview tests start their servers with."""

from __future__ import annotations

import json

#: The offline model at $1 per million input tokens and $2 per million output tokens.
PRICED = {"RUNWATCH_PRICES": json.dumps({"runwatch-offline": {"input": 1.0, "output": 2.0}})}
