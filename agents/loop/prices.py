"""What a model call costs: a price table of USD per million input and output tokens.

The defaults cover the common OpenAI models (list prices, standard tier); ``RUNWATCH_PRICES``
overrides or adds models. A model is priced by its exact name, else by the longest known name it
starts with (``gpt-4o-2024-08-06`` is priced as ``gpt-4o``). A model the table does not know costs
nothing, and says so: its cost is ``None`` ("unpriced"), never a made-up 0.
"""

from __future__ import annotations

import msgspec

from runwatch.agents.events import Usage


class Price(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """USD per million tokens."""

    input: float
    output: float


#: USD per million tokens (input, output), as OpenAI lists them (standard tier, 2026).
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": Price(input=1.25, output=10.0),
    "gpt-5-mini": Price(input=0.25, output=2.0),
    "gpt-5-nano": Price(input=0.05, output=0.4),
    "gpt-4.1": Price(input=2.0, output=8.0),
    "gpt-4.1-mini": Price(input=0.4, output=1.6),
    "gpt-4.1-nano": Price(input=0.1, output=0.4),
    "gpt-4o": Price(input=2.5, output=10.0),
    "gpt-4o-mini": Price(input=0.15, output=0.6),
    "o3": Price(input=2.0, output=8.0),
    "o3-mini": Price(input=1.1, output=4.4),
    "o4-mini": Price(input=1.1, output=4.4),
    "gpt-3.5-turbo": Price(input=0.5, output=1.5),
    # The built-in offline model is free.
    "runwatch-offline": Price(input=0.0, output=0.0),
}


class PriceError(ValueError):
    """``RUNWATCH_PRICES`` is not a JSON object of ``{"model": {"input": X, "output": Y}}``."""


def parse_prices(text: str) -> dict[str, Price]:
    """Prices from ``RUNWATCH_PRICES`` (JSON); raises ``PriceError`` saying what is wrong."""
    if not text.strip():
        return {}
    try:
        prices = msgspec.json.decode(text, type=dict[str, Price])
    except msgspec.DecodeError as exc:
        raise PriceError(
            f'prices must be JSON like {{"my-model": {{"input": 0.5, "output": 1.5}}}} (USD per million tokens): {exc}'
        ) from None
    for model, price in prices.items():
        if min(price.input, price.output) < 0 or not all(map(_finite, (price.input, price.output))):
            raise PriceError(f"the price of {model!r} must be finite and not negative")
    return prices


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


class PriceTable:
    def __init__(self, overrides: dict[str, Price] | None = None) -> None:
        self._prices = DEFAULT_PRICES | (overrides or {})
        self._by_length = sorted(self._prices, key=len, reverse=True)

    def price(self, model: str) -> Price | None:
        if model in self._prices:
            return self._prices[model]
        return next((self._prices[name] for name in self._by_length if model.startswith(name)), None)

    def cost(self, model: str, usage: Usage) -> float | None:
        """USD for ``usage`` of ``model``, or None if the model is unpriced."""
        price = self.price(model)
        if price is None:
            return None
        return round((usage.input_tokens * price.input + usage.output_tokens * price.output) / 1e6, 8)
