"""The ops files are valid: promtool accepts the rules and config; compose and Grafana files are well formed."""

from __future__ import annotations

import json
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
    uid = datasource["datasources"][0]["uid"]
    assert all(t["datasource"]["uid"] == uid for p in dashboard["panels"] for t in p["targets"])
    provider = yaml.safe_load((OPS / "grafana" / "provisioning" / "dashboards" / "runwatch.yml").read_text())
    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.endswith(":" + provider["providers"][0]["options"]["path"] + ":ro") for m in mounts)
    assert {"runwatch-1", "runwatch-2", "proxy", "redis", "postgres", "prometheus", "grafana"} <= set(
        compose["services"]
    )


def test_the_compose_replicas_share_redis_and_postgres_behind_the_proxy():
    compose = yaml.safe_load((OPS / "docker-compose.yml").read_text())
    replicas = [compose["services"][name] for name in ("runwatch-1", "runwatch-2")]
    for replica in replicas:
        assert replica["environment"]["RUNWATCH_REDIS_URL"].startswith("redis://redis:")
        assert replica["environment"]["RUNWATCH_DATABASE_URL"].startswith("postgresql://")
    assert replicas[0]["environment"]["RUNWATCH_INSTANCE"] != replicas[1]["environment"]["RUNWATCH_INSTANCE"]
    nginx = (OPS / "nginx.conf").read_text()
    assert "server runwatch-1:8000;" in nginx and "server runwatch-2:8000;" in nginx and "Upgrade" in nginx
