#!/usr/bin/env python3
"""Offline checks of the deploy files: render every kustomize overlay, validate each built-in
object with kubernetes-validate (strict) and each custom resource against its JSON schema in
deploy/schemas/, and check that the dashboard and alert files parse. Exits non-zero on any
failure. Run through scripts/check-deploy (which installs the Python dependencies)."""

import json
import pathlib
import shutil
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent
K8S_VERSION = "1.33.0"
CUSTOM_GROUPS = {"keda.sh", "rabbitmq.com", "monitoring.coreos.com"}


def render(overlay: pathlib.Path) -> list:
    kubectl = shutil.which("kubectl")
    if kubectl:
        cmd = [kubectl, "kustomize", str(overlay)]
    elif shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(overlay)]
    else:
        sys.exit("check: neither kubectl nor kustomize is installed")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def schema_for(doc: dict) -> pathlib.Path:
    group, version = doc["apiVersion"].split("/")
    return ROOT / "schemas" / group / f"{doc['kind'].lower()}_{version}.json"


def validate(doc: dict) -> list:
    api = doc.get("apiVersion", "")
    group = api.split("/")[0] if "/" in api else ""
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if group in CUSTOM_GROUPS:
        path = schema_for(doc)
        if not path.exists():
            return [f"{name}: no schema at {path.relative_to(ROOT)}"]
        schema = json.loads(path.read_text())
        validator = jsonschema.validators.validator_for(schema)(schema)
        return [f"{name}: {e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name}: {e.message} at {'.'.join(str(p) for p in e.path)}"]
    except Exception as e:  # schema not found, invalid version…
        return [f"{name}: {e}"]
    return []


def main() -> int:
    failures = []
    for overlay in sorted((ROOT / "k8s" / "overlays").iterdir()):
        docs = render(overlay)
        kinds = sorted({d["kind"] for d in docs})
        for doc in docs:
            failures += [f"{overlay.name}: {f}" for f in validate(doc)]
        print(f"check: overlay {overlay.name}: {len(docs)} objects ({', '.join(kinds)})")
    for doc in yaml.safe_load_all((ROOT / "k8s" / "secret.example.yaml").read_text()):
        failures += [f"secret.example.yaml: {f}" for f in validate(doc)]
    dashboard = json.loads((ROOT / "grafana" / "scim-provisioning.json").read_text())
    panels = dashboard.get("panels", [])
    if not panels:
        failures.append("grafana: no panels")
    rules = yaml.safe_load((ROOT / "prometheus" / "alerts.yaml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    for r in alerts:
        for key in ("alert", "expr", "labels", "annotations"):
            if key not in r:
                failures.append(f"alerts.yaml: rule {r.get('alert')} has no {key}")
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for svc in ("rabbitmq", "postgres", "migrate", "ingest", "worker"):
        if svc not in compose.get("services", {}):
            failures.append(f"compose.yaml: no service {svc}")
    print(f"check: grafana {len(panels)} panels, {len(alerts)} alert rules, compose {len(compose['services'])} services")
    for f in failures:
        print(f"FAIL {f}")
    print(f"check: {'0 failed' if not failures else f'{len(failures)} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
