"""runwatch as a real Prometheus sees it: scraped every second, rules and dashboard queries evaluated.

Prometheus is Debian's ``prometheus`` package (``.ci/run`` installs it), started on loopback with
the committed ``ops/prometheus/prometheus.yml`` — only the target and intervals are changed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml

from tests.conftest import ROOT, Server, free_port
from tests.harness.waiting import eventually, eventually_blocking

OPS = ROOT / "ops"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    async def query(self, expr: str) -> list[dict]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as c:
            body = (await c.get("/api/v1/query", params={"query": expr})).json()
        assert body["status"] == "success", f"{expr!r}: {body.get('error')}"
        return body["data"]["result"]

    async def value(self, expr: str) -> float | None:
        result = await self.query(expr)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Prometheus]]:
    if not Path(PROMETHEUS).exists():
        pytest.fail(f"no Prometheus at {PROMETHEUS}: install Debian's prometheus (apt-get install prometheus)")
    folder = tmp_path_factory.mktemp("prometheus")
    token = "scrape-token-of-the-prometheus-test"
    runwatch = Server(folder / "runwatch", {"RUNWATCH_HEARTBEAT": "2", "RUNWATCH_METRICS_TOKEN": token}).start()
    config = yaml.safe_load((OPS / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(OPS / "prometheus" / "alerts.yml")]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{runwatch.port}"]}]
    (folder / "metrics-token").write_text(token)
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(folder / "metrics-token")
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("Prometheus exited:\n" + (folder / "prometheus.log").read_text())
        try:
            return httpx.get(url + "/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually_blocking(ready, 30, "Prometheus to be ready", interval=0.1)
    except AssertionError:
        proc.kill()
        raise RuntimeError("Prometheus did not start:\n" + (folder / "prometheus.log").read_text()) from None
    yield runwatch, Prometheus(url)
    proc.terminate()
    proc.wait(10)
    log.close()
    runwatch.stop()


async def test_token_rate_and_connection_gauge_while_runs_stream(stack):
    runwatch, prom = stack
    watchers = [await runwatch.watcher() for _ in range(3)]
    runs = [
        await runwatch.start_run({"tokens": 4000, "rate": 400, "tool_calls": 1, "tool_seconds": 0.2}) for _ in range(2)
    ]
    for w in watchers:
        for run in runs:
            await w.subscribe(run)

    async def gauge_is(n: int) -> bool:
        return await prom.value("runwatch_ws_connections") == n

    async def tokens_flowing() -> bool:
        rate = await prom.value('sum(rate(runwatch_llm_tokens_total{type="output"}[5s]))')
        return rate is not None and rate > 0

    await eventually(lambda: gauge_is(3), timeout=15, interval=0.25)
    await eventually(tokens_flowing, timeout=15, interval=0.25)
    assert not any(m.get("type") == "run.finished" for w in watchers for m in w.messages), "runs ended too soon"
    assert await prom.value("sum(runwatch_runs_active)") == 2

    await watchers[0].close()
    await eventually(lambda: gauge_is(2), timeout=15, interval=0.25)
    for w in watchers[1:]:
        for run in runs:
            await w.until_finished(run, timeout=60)
        await w.close()
    await eventually(lambda: gauge_is(0), timeout=15, interval=0.25)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loaded(stack):
    """Every kind of activity once, so every metric has moved: runs, tools, a cancel, SSE, HTTP."""
    runwatch, prom = stack
    w = await runwatch.watcher()
    done = [await runwatch.start_run(text) for text in ("what is 2*21 and what time is it?", {"tokens": 50})]
    cancelled = await runwatch.start_run({"tokens": 100_000, "rate": 20})
    for run in [*done, cancelled]:
        await w.subscribe(run)
    for run in done:
        await w.until_finished(run)
    async with runwatch.client() as c:
        await c.post(f"/api/runs/{cancelled}/cancel")
        await w.until_finished(cancelled)
        async with c.stream("GET", f"/api/runs/{done[0]}/stream") as r:
            async for _ in r.aiter_lines():
                pass
    await w.close()

    async def scraped() -> bool:
        cancels = await prom.value('sum(runwatch_runs_finished_total{status="cancelled"})')
        rate = await prom.value("sum(rate(runwatch_tool_calls_total[1m]))")  # needs two scrapes after the load
        return cancels == 1.0 and rate is not None and rate > 0

    await eventually(scraped, timeout=20, interval=0.25)
    return prom


#: What Grafana puts for the dashboard's variables (each one on "All").
_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*", "$agent": ".*", "$model": ".*"}


def _dashboard() -> dict:
    return json.loads((OPS / "grafana" / "dashboards" / "runwatch.json").read_text())


def _dashboard_expressions() -> list[str]:
    exprs = [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]
    for name, value in _VARIABLES.items():
        exprs = [e.replace(name, value) for e in exprs]
    return exprs


def _variable_queries() -> list[tuple[str, str]]:
    """``label_values(metric, label)`` of each query variable, as (metric, label)."""
    found = [
        re.fullmatch(r"label_values\((\w+), (\w+)\)", v.get("definition", ""))
        for v in _dashboard()["templating"]["list"]
    ]
    return [(m[1], m[2]) for m in found if m]


def _alert_expressions() -> list[str]:
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


@pytest.mark.parametrize("expr", _dashboard_expressions())
async def test_every_dashboard_query_returns_data(loaded, expr):
    assert await loaded.query(expr), f"no data for dashboard query {expr}"


@pytest.mark.parametrize(("metric", "label"), _variable_queries())
async def test_every_dashboard_variable_lists_values(loaded, metric, label):
    assert await loaded.query(f"count by ({label}) ({metric})"), f"no {label} values in {metric}"


@pytest.mark.parametrize("expr", _alert_expressions())
async def test_every_alert_expression_parses_and_its_metrics_exist(loaded, expr):
    await loaded.query(expr)  # parses and evaluates (empty unless firing)
    for name in set(re.findall(r"\b(runwatch_\w+|up)\b", expr)):
        base = re.sub(r"_bucket$", "", name)
        assert await loaded.query(f'count({{__name__=~"{base}(_bucket)?"}})'), f"{name} is not exported"


async def test_prometheus_loaded_and_evaluates_every_rule(loaded):
    async with httpx.AsyncClient(base_url=loaded.url) as c:
        groups = (await c.get("/api/v1/rules")).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(_alert_expressions())
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
