"""The ops files are valid: promtool accepts the rules and config; compose and Grafana files are well formed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

OPS = Path(__file__).resolve().parent.parent / "ops"
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
