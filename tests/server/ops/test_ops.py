"""The ops files are valid: promtool accepts the rules and config; compose and Grafana files are well formed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import yaml

from runwatch.agents.errors import ErrorCode
from runwatch.api.observability.endpoint import SCRAPE_HELP
from tests.conftest import ROOT

OPS = ROOT / "ops"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def test_promtool_checks_the_rules_and_the_config(tmp_path):
    # The committed config, with the scrape token file compose mounts made here (promtool reads it).
    config = yaml.safe_load((OPS / "prometheus" / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["authorization"]["credentials_file"].endswith("runwatch-metrics-token")
    (tmp_path / "runwatch-metrics-token").write_text("token")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(tmp_path / "runwatch-metrics-token")
    config["rule_files"] = [str(OPS / "prometheus" / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    for args in (
        ["check", "rules", str(OPS / "prometheus" / "alerts.yml")],
        ["check", "config", str(tmp_path / "prometheus.yml")],
    ):
        result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_says_what_and_how_bad():
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert names == {
        "RunwatchDown",
        "RunwatchRunFailureRatioHigh",
        "RunwatchSlowConsumers",
        "RunwatchTimeToFirstTokenHigh",
        "RunwatchNoTokensWhileRunsActive",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_grafana_provisioning_points_at_the_dashboard_and_datasource():
    dashboard = json.loads((OPS / "grafana" / "dashboards" / "runwatch.json").read_text())
    datasource = yaml.safe_load((OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    # The dashboard names no datasource: its ``datasource`` variable takes the default one, provisioned here.
    provisioned = datasource["datasources"][0]
    assert provisioned["type"] == "prometheus" and provisioned["isDefault"]
    assert {v["name"]: v["query"] for v in dashboard["templating"]["list"]}["datasource"] == "prometheus"
    provider = yaml.safe_load((OPS / "grafana" / "provisioning" / "dashboards" / "runwatch.yml").read_text())
    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.endswith(":" + provider["providers"][0]["options"]["path"] + ":ro") for m in mounts)
    assert {"runwatch-1", "runwatch-2", "proxy", "redis", "postgres", "prometheus", "grafana"} <= set(
        compose["services"]
    )


def test_the_grafana_dashboard_can_be_imported_by_hand_and_filtered():
    dashboard = json.loads((OPS / "grafana" / "dashboards" / "runwatch.json").read_text())
    assert [i["pluginId"] for i in dashboard["__inputs"] if i["type"] == "datasource"] == ["prometheus"]
    assert '"uid": "prometheus"' not in json.dumps(dashboard)  # no datasource hard-coded anywhere
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "agent", "model"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["includeAll"] and variable["multi"], name
        assert variable["datasource"]["uid"] == "${datasource}" and f", {name})" in variable["definition"]
    labelled = {"agent": ("runwatch_runs_", "runwatch_run_duration"), "model": ("runwatch_llm_",)}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert target["datasource"]["uid"] == "${datasource}" and 'instance=~"$instance"' in expr, expr
            for label, prefixes in labelled.items():
                metrics = re.findall(r"(runwatch_\w+)\{([^}]*)\}", expr)
                for metric, matchers in metrics:
                    if metric.startswith(prefixes) and metric != "runwatch_runs_waiting":
                        assert f'{label}=~"${label}"' in matchers, expr


def test_the_compose_replicas_share_redis_and_postgres_behind_the_proxy():
    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    replicas = [compose["services"][name] for name in ("runwatch-1", "runwatch-2")]
    for replica in replicas:
        assert replica["environment"]["RUNWATCH_REDIS_URL"].startswith("redis://redis:")
        assert replica["environment"]["RUNWATCH_DATABASE_URL"].startswith("postgresql://")
    assert replicas[0]["environment"]["RUNWATCH_INSTANCE"] != replicas[1]["environment"]["RUNWATCH_INSTANCE"]
    nginx = (OPS / "nginx.conf").read_text()
    assert "server runwatch-1:8000;" in nginx and "server runwatch-2:8000;" in nginx and "Upgrade" in nginx


def _compose_value(text: str, env: dict[str, str]) -> str:
    """``text`` as compose interpolates it: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` (raises
    ValueError with the error, as compose stops with it)."""

    def one(match: re.Match[str]) -> str:
        name, op, word = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"{name}: {word}")
        return word or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, text)


def _documented_compose_shell() -> tuple[dict[str, str], str]:
    """The compose block of docs/operations.md: what it exports before ``docker compose``, and the command itself."""
    operations = (OPS.parent / "docs" / "operations.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", operations, re.DOTALL) if "ops/docker-compose.yml up" in b)
    exported = dict(re.findall(r"^export (\w+)=(\S+)", block, re.MULTILINE))
    command = next(line for line in block.splitlines() if line.startswith("docker compose"))
    return {name: f"<{value}>" for name, value in exported.items()}, command  # (not run: a shell would)


def test_compose_as_the_docs_run_it_gives_prometheus_the_replicas_scrape_token_and_prints_login_links():
    shell, command = _documented_compose_shell()
    assert "RUNWATCH_METRICS_TOKEN" in shell and command.split("#")[0].split()[-2:] == ["up", "--build"]
    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    token = shell["RUNWATCH_METRICS_TOKEN"]
    for name in ("runwatch-1", "runwatch-2"):
        env = {k: _compose_value(str(v), shell) for k, v in compose["services"][name]["environment"].items()}
        assert env["RUNWATCH_METRICS_TOKEN"] == token
        assert env["RUNWATCH_LOGIN_LINK"] == "on"  # a container's stderr is no terminal: `auto` would print nothing
    prometheus = compose["services"]["prometheus"]
    (mounted,) = prometheus["configs"]
    assert _compose_value(compose["configs"][mounted["source"]]["content"], shell) == token
    scrape = yaml.safe_load((OPS / "prometheus" / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["authorization"]["credentials_file"] == mounted["target"]
    assert set(scrape["static_configs"][0]["targets"]) == {"runwatch-1:8000", "runwatch-2:8000"}


def test_compose_without_the_scrape_token_stops_saying_how_to_make_one():
    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    replica = compose["services"]["runwatch-1"]["environment"]["RUNWATCH_METRICS_TOKEN"]
    for text in [replica, *(c["content"] for c in compose["configs"].values())]:
        try:
            _compose_value(text, {})
        except ValueError as exc:
            assert "RUNWATCH_METRICS_TOKEN" in str(exc) and "openssl rand -hex 24" in str(exc), exc
        else:
            raise AssertionError(f"{text!r} starts without a token")


def test_the_docs_say_where_a_compose_replica_keeps_its_admin_key():
    operations = (OPS.parent / "docs" / "operations.md").read_text()
    said = re.search(r"`docker compose -f ops/docker-compose\.yml exec (\S+) cat (\S+)`", operations)
    assert said, "docs/operations.md no longer says how to read a replica's admin key"
    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    data_dir = re.search(r"RUNWATCH_DATA_DIR=(\S+)", (OPS / "Dockerfile").read_text())[1]
    assert said[2] == f"{data_dir}/admin.key"
    assert any(v.endswith(f":{data_dir}") for v in compose["services"][said[1]]["volumes"])  # kept across restarts


async def test_metrics_without_a_token_answer_401_saying_how_to_scrape(server):
    async with httpx.AsyncClient(base_url=server.url) as c:
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):  # curl as is, or a wrong token
            r = await c.get("/metrics", headers=headers)
            assert r.status_code == 401 and r.json()["code"] == ErrorCode.UNAUTHENTICATED
            assert r.json()["detail"] == SCRAPE_HELP and "with RUNWATCH_METRICS_TOKEN=" in SCRAPE_HELP, r.text
