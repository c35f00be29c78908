"""Render a Helm chart with Helm's own engine (the Helm v4 Go SDK, through
helm-python-sdk's libhelm_c) and print the result as JSON for the Rust test.

usage: render_chart.py CHART VALUES_YAML [KEY=VALUE ...]

Prints {"lint": [messages], "manifests": {template: [object, ...]}} on
success, or {"error": "..."} when Helm refuses to render (exit status 0 in
both cases: the refusal is what some tests want to see).
"""

import json
import sys

import helm_python as helm
import yaml


def main() -> None:
    chart_dir, values_file, *sets = sys.argv[1:]
    with open(values_file, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    for assignment in sets:
        values = deep_merge(values, helm.parse_set_string(assignment))

    report = helm.lint(chart_dir, values, strict=True, namespace="home")
    lint = [m["error"] for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    lint += report.get("errors", []) or []

    chart = helm.Chart.load(chart_dir)
    try:
        rendered = chart.render(values, name="home", namespace="home", is_install=True)
    except helm.HelmError as e:
        print(json.dumps({"error": str(e), "lint": lint}))
        return
    manifests = {}
    for template, text in sorted(rendered.items()):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        if docs:
            manifests[template] = docs
    print(json.dumps({"lint": lint, "manifests": manifests}))


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


if __name__ == "__main__":
    main()
