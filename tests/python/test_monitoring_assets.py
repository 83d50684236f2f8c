"""The monitoring assets shipped under /usr/share/appliance: the Grafana dashboard
(packaging/grafana/appliance-dashboard.json) and the Prometheus alert rules
(packaging/prometheus/appliance-alerts.yml, unit-tested by appliance-alerts.test.yml).

Every metric the dashboard and the rules name must be one the real daemon exports, so a
renamed metric or label fails here rather than leaving a blank panel or an alert that can
never fire."""

import json
import pathlib
import re
import shutil
import subprocess
import tempfile
import warnings

import pytest
import yaml

from conftest import MODEL

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "packaging/grafana/appliance-dashboard.json"
RULES = ROOT / "packaging/prometheus/appliance-alerts.yml"
RULE_TESTS = ROOT / "packaging/prometheus/appliance-alerts.test.yml"

# Metrics the assets use that a scrape of this build on this machine may not show. Keep
# each entry justified; the test warns when an entry has become exported everywhere.
LATER = {
    # Prometheus' own series for every scrape target, never in /metrics.
    "up",
    # GPU and VRAM scheduler (being added with the CUDA work). The per-device series only
    # exist where NVML answers, so a machine without a GPU never shows them.
    "appliance_gpu_available",
    "appliance_gpu_info",
    "appliance_gpu_memory_total_bytes",
    "appliance_gpu_memory_used_bytes",
    "appliance_gpu_memory_free_bytes",
    "appliance_gpu_utilization_percent",
    "appliance_gpu_temperature_celsius",
    "appliance_gpu_power_watts",
    "appliance_gpu_ecc_errors",
    "appliance_gpu_throttled",
    "appliance_vram_budget_bytes",
    "appliance_vram_committed_bytes",
    "appliance_vram_reserve_bytes",
    "appliance_model_vram_bytes",
    "appliance_scheduler_queue_depth",
    "appliance_scheduler_evictions_total",
    "appliance_scheduler_load_retries_total",
    # Backups are not implemented yet.
    "appliance_backup_last_success_timestamp_seconds",
    "appliance_backup_last_duration_seconds",
}

# Labels Prometheus attaches to every series of a target; `le` is a histogram bucket's.
TARGET_LABELS = {"job", "instance"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
REQUIRED_ROWS = {"Service", "Chat / LLM", "Speech", "Jobs", "Database", "Sessions and accounts",
                 "GPU / VRAM", "Backups"}
SEVERITIES = {"critical", "warning", "info"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def all_panels(panels: list[dict]):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def dashboard_queries(node) -> list[str]:
    """Every PromQL string in the dashboard: targets, annotations and variable queries."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str) and value:
                found.append(value)
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                found.append(value["query"])
            else:
                found += dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            found += dashboard_queries(item)
    return found


def all_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for the dashboard and every alert rule."""
    return [("dashboard", q) for q in dashboard_queries(dashboard())] + [
        (f"alert {r['alert']}", r["expr"]) for r in rules()
    ]


def without_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr: str) -> set[str]:
    text = without_strings(expr)
    names = set(re.findall(r"\b(?:appliance|process)_[a-zA-Z0-9_:]*", text))
    if re.search(r"\bup\s*[{\[]", text):
        names.add("up")
    return names


def selectors(expr: str):
    """(metric, label names matched) for every `metric{...}` selector."""
    text = without_strings(expr)
    for name, body in re.findall(r"\b((?:appliance|process)_[a-zA-Z0-9_:]*)\s*\{([^}]*)\}", text):
        yield name, set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", body))


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Metric families (name → type) and, per sample name, the label names seen."""
    types, labels = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            body = line[len(name):].split("}", 1)[0] if line[len(name):].startswith("{") else ""
            labels.setdefault(name, set()).update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', body))
    return types, labels


def family(name: str, types: dict[str, str]) -> str | None:
    """The exported family a referenced name belongs to (histograms add suffixes)."""
    if name in types:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if name.endswith(suffix) and types.get(base) == "histogram":
            return base
    return None


# ----------------------------------------------------------------------------- dashboard


def test_dashboard_is_an_importable_grafana_dashboard():
    d = dashboard()  # valid JSON, or this raises
    assert d["schemaVersion"] >= 39
    assert d["uid"] and d["title"] and d.get("id") is None, "an exported dashboard carries no database id"
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    assert variables["instance"]["definition"].startswith("label_values(appliance_build_info")


def test_dashboard_panels_have_unique_ids_datasources_and_queries():
    d = dashboard()
    panels = list(all_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    rows = {p["title"] for p in panels if p["type"] == "row"}
    assert REQUIRED_ROWS <= rows, f"missing rows: {REQUIRED_ROWS - rows}"
    for p in panels:
        if p["type"] == "row":
            continue
        where = f"panel {p['id']} {p.get('title')!r}"
        assert p.get("title"), where
        assert p.get("datasource") == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, where
        assert p.get("targets"), f"{where} has no queries"
        for t in p["targets"]:
            assert t.get("expr", "").strip(), f"{where} has an empty query"
            assert t.get("datasource") == p["datasource"], where
            assert "$instance" in t["expr"], f"{where} ignores the instance variable: {t['expr']}"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), where


def test_dashboard_panels_do_not_overlap():
    cells = {}
    for p in all_panels(dashboard()["panels"]):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"panel {p['id']} is wider than the grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {p['id']} overlap at {(x, y)}"
                cells[(x, y)] = p["id"]


def grafana_to_promql(expr: str) -> str:
    """Replaces Grafana's variables by values Prometheus would see."""
    for var, value in (("$__rate_interval", "5m"), ("$__range", "1h"), ("$__interval", "1m"),
                       ("$job", ".+"), ("$instance", ".+")):
        expr = expr.replace(var, value)
    return expr


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    if path is None:
        print("promtool is missing (Debian's `prometheus` package; scripts/test installs it)")
        pytest.skip("promtool is missing: apt-get install prometheus")
    return path


def test_dashboard_queries_are_valid_promql(promtool):
    # promtool has no offline query checker, but it parses recording rules' expressions.
    queries = sorted({grafana_to_promql(q) for q in dashboard_queries(dashboard())
                      if not q.startswith("label_values(")})
    group = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump(group, f)
        f.flush()
        out = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ----------------------------------------------------------------------------- alert rules


def test_alert_rules_pass_promtool_check(promtool):
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_rules_unit_tests_pass(promtool):
    out = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                         cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_is_actionable_and_proven_to_fire():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    for r in rules():
        name = r["alert"]
        assert r["labels"]["severity"] in SEVERITIES, name
        assert r["annotations"]["summary"], name
        # The description says what to do: it names at least one command.
        assert "`" in r["annotations"]["description"], f"{name}: the description names no command"
        assert name in fired, f"{name} never fires in {RULE_TESTS.name}"


# ----------------------------------------------------------------------------- vs the daemon


@pytest.fixture(scope="module")
def scrape(daemon) -> str:
    with daemon.http() as http:
        # Requests that make label sets appear: routes, status classes, a generation
        # (its outcome and the loaded model's running/waiting/slots gauges).
        assert http.get("/readyz").status_code in (200, 503)
        assert http.get("/no-such-route").status_code == 404
        r = http.post("/v1/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})
        assert r.status_code == 200, r.text
        r = http.get("/metrics")
        assert r.status_code == 200, r.text
        return r.text


def test_every_metric_in_the_assets_is_exported(scrape):
    types, _ = parse_exposition(scrape)
    missing = []
    used = set()
    for where, expr in all_queries():
        for name in metric_names(expr):
            used.add(name)
            if family(name, types) is None and name not in LATER:
                missing.append(f"{where}: {name}")
    assert not missing, "metrics the daemon does not export (renamed?):\n" + "\n".join(sorted(set(missing)))
    stale = sorted(name for name in LATER if name not in used)
    assert not stale, f"allow-listed but no longer used by the assets: {stale}"
    exported = sorted(name for name in LATER if family(name, types))
    if exported:
        warnings.warn(f"allow-listed metrics exported by this build: {exported}; if they are exported on "
                      "every machine, remove them from LATER so a rename is caught")


def test_label_matchers_name_labels_the_metric_has(scrape):
    types, labels = parse_exposition(scrape)
    wrong = []
    for where, expr in all_queries():
        for name, matched in selectors(expr):
            if name not in labels:
                continue  # no samples in this scrape (e.g. no job has run): names checked above
            allowed = labels[name] | TARGET_LABELS
            if bad := matched - allowed:
                wrong.append(f"{where}: {name} has no label {sorted(bad)} (it has {sorted(labels[name])})")
    assert not wrong, "\n".join(sorted(set(wrong)))
