"""Cost: each model call priced from the price table, summed per run, counted per model."""

from __future__ import annotations

import pytest

from runwatch.agents.events import Usage
from runwatch.agents.loop.prices import Price, PriceError, PriceTable, parse_prices
from tests.server.runs.prices import PRICED


def test_a_model_is_priced_by_its_name_or_the_longest_known_prefix_and_unknown_ones_are_unpriced():
    table = PriceTable({"acme-large": Price(input=3.0, output=15.0)})
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)
    assert table.cost("acme-large", usage) == pytest.approx(3.0 + 7.5)
    assert table.cost("gpt-4o-2024-08-06", usage) == pytest.approx(2.5 + 5.0)
    assert table.cost("gpt-4o-mini", usage) == pytest.approx(0.15 + 0.3)  # not gpt-4o's price
    assert table.cost("somebody-elses-model", usage) is None


def test_bad_prices_are_refused_with_what_to_write():
    with pytest.raises(PriceError, match="USD per million tokens"):
        parse_prices('{"m": 3}')
    with pytest.raises(PriceError, match="not negative"):
        parse_prices('{"m": {"input": -1, "output": 1}}')


async def test_every_step_run_and_summary_carries_its_cost(make_server):
    server = make_server(PRICED, in_process=True)
    events = await server.run_to_end({"tokens": 40, "tool_calls": 1})
    steps = [e for e in events if e["type"] == "step.finished"]
    assert len(steps) == 2
    for step in steps:
        usage = step["usage"]
        assert step["cost"] == pytest.approx((usage["input_tokens"] * 1.0 + usage["output_tokens"] * 2.0) / 1e6)
    totals = events[-1]["totals"]
    assert totals["cost"] == pytest.approx(sum(s["cost"] for s in steps)) and totals["cost"] > 0
    async with server.client() as c:
        summary = (await c.get(f"/api/runs/{events[0]['run_id']}")).json()
        metrics = (await c.get("/metrics")).text
    assert summary["cost"] == pytest.approx(totals["cost"])
    series = 'runwatch_llm_cost_usd_total{model="runwatch-offline"}'
    counted = next(line for line in metrics.splitlines() if line.startswith(series))
    assert float(counted.split()[-1]) == pytest.approx(totals["cost"])


async def test_the_offline_model_is_free(server):
    events = await server.run_to_end({"tokens": 5})
    assert [e["cost"] for e in events if e["type"] == "step.finished"] == [0.0]
    assert events[-1]["totals"]["cost"] == 0.0


async def test_an_unpriced_model_costs_null_not_zero(make_server):
    server = make_server(
        {"RUNWATCH_MODEL": "somebody-elses-model"}, in_process=True
    )  # (the offline model answers any name)
    events = await server.run_to_end({"tokens": 5})
    assert [e["cost"] for e in events if e["type"] == "step.finished"] == [None]
    assert events[-1]["totals"]["cost"] is None
    async with server.client() as c:
        assert (await c.get(f"/api/runs/{events[0]['run_id']}")).json()["cost"] is None


def test_a_config_file_may_hold_a_prices_table(tmp_path):
    from runwatch.api.settings.config import load_settings

    config = tmp_path / "runwatch.toml"
    config.write_text('[prices]\n"acme-large" = { input = 3.0, output = 15.0 }\n')
    settings = load_settings(config_file=config, environ={})
    assert parse_prices(settings.model.prices) == {"acme-large": Price(input=3.0, output=15.0)}
