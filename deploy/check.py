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

import netpol

ROOT = pathlib.Path(__file__).resolve().parent
K8S_VERSION = "1.33.0"
CUSTOM_GROUPS = {"keda.sh", "rabbitmq.com", "monitoring.coreos.com", "cert-manager.io",
                 "postgresql.cnpg.io"}


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


def pod_templates(docs: list) -> dict:
    """Pod labels by owner: the workloads' pod templates, and the RabbitMQ pods, which the
    cluster operator labels `app.kubernetes.io/name: <cluster>` besides the cluster's own labels
    (it passes them on) and the override's labels."""
    out = {}
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            out[name] = d["spec"]["template"].get("metadata", {}).get("labels", {}) or {}
        elif d["kind"] == "RabbitmqCluster":
            labels = {"app.kubernetes.io/name": d["metadata"]["name"],
                      "app.kubernetes.io/component": "rabbitmq",
                      "app.kubernetes.io/part-of": "rabbitmq"}
            override = (d["spec"].get("override", {}).get("statefulSet", {}).get("spec", {})
                        .get("template", {}).get("metadata", {}).get("labels", {}))
            own = d["metadata"].get("labels", {}) or {}
            out[name] = {**labels, **own, **(override or {})}
        elif d["kind"] == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io/"):
            # CloudNativePG labels its instances with the cluster's name and passes on the
            # inherited labels.
            labels = {"cnpg.io/cluster": d["metadata"]["name"], "cnpg.io/podRole": "instance"}
            inherited = d["spec"].get("inheritedMetadata", {}).get("labels", {}) or {}
            out[name] = {**labels, **inherited}
    return out


selects = netpol.selects


def check_network_policies(docs: list) -> list:
    """Every policy selects pods that exist; the default-deny selects every workload's pods;
    a peer naming pods in this namespace names pods that exist."""
    pods = pod_templates(docs)
    workloads = {n: l for n, l in pods.items() if not n.startswith("RabbitmqCluster/")}
    failures = []
    for d in (d for d in docs if d["kind"] == "NetworkPolicy"):
        name = f"NetworkPolicy/{d['metadata']['name']}"
        selector = d["spec"].get("podSelector", {})
        matched = [n for n, l in pods.items() if selects(selector, l)]
        if not matched:
            failures.append(f"{name}: its podSelector matches no pod template")
        if d["metadata"]["name"].endswith("default-deny"):
            for n in workloads:
                if n not in matched:
                    failures.append(f"{name}: does not select the pods of {n}")
        for direction in ("ingress", "egress"):
            for rule in d["spec"].get(direction) or []:
                for peer in rule.get("from", []) + rule.get("to", []):
                    if "podSelector" not in peer or "namespaceSelector" in peer:
                        continue
                    sel = peer["podSelector"]
                    if not any(selects(sel, l) for l in pods.values()):
                        failures.append(f"{name}: {direction} peer {sel} matches no pod template")
    return failures


def check_flows(docs: list, overlay: str) -> list:
    """The rendered policies against deploy/flows.yaml: every required flow allowed, every
    denied one denied."""
    table = yaml.safe_load((ROOT / "flows.yaml").read_text())
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    namespace = policies[0]["metadata"].get("namespace", "default") if policies else "default"
    pods = pod_templates(docs)
    actors, failures = {}, []
    for i, (name, a) in enumerate(table["actors"].items()):
        if "pod" in a:
            labels = next((l for l in pods.values()
                           if l.get("app.kubernetes.io/name") == a["pod"]), None)
            if labels is None:
                failures.append(f"flows.yaml: actor {name}: no pod {a['pod']} in the overlay")
                continue
            ns, ns_labels = namespace, {}
        elif "namespace" in a:
            ns, labels, ns_labels = a["namespace"], a.get("labels", {}), a.get("namespace_labels", {})
        else:
            actors[name] = netpol.Endpoint(name, ip=a["ip"])
            continue
        actors[name] = netpol.Endpoint(
            name, namespace=ns, labels=labels,
            namespace_labels={"kubernetes.io/metadata.name": ns, **ns_labels},
            ip=str(netpol.POD_NETWORK[i + 10]))
    ports = table["ports"][overlay]

    def flows(entries: list) -> list:
        out = []
        for entry in entries:
            src, dst, port = entry[:3]
            protocol = entry[3] if len(entry) > 3 else "TCP"
            if isinstance(port, str):
                if port not in ports:
                    continue
                port = ports[port]
            if src in actors and dst in actors:
                out.append((src, dst, port, protocol))
        return out

    required, denied = flows(table["required"]), flows(table["denied"])
    failures += [f"required flow {f}" for f in netpol.evaluate(policies, actors, required, True)]
    failures += [f"denied flow {f}" for f in netpol.evaluate(policies, actors, denied, False)]
    print(f"check: overlay {overlay}: {len(required)} required flows allowed, "
          f"{len(denied)} denied flows denied, unless listed below")
    return failures


def check_alert_tests(alerts: list) -> list:
    """Every alert of alerts.yaml has a case in alerts.test.yaml where it fires and one where it
    stays quiet (promtool runs them; this makes sure none is left out)."""
    tests = yaml.safe_load((ROOT / "prometheus" / "alerts.test.yaml").read_text())
    fires, quiet = set(), set()
    for test in tests.get("tests", []):
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case.get("alertname"))
    failures = []
    for name in sorted(r["alert"] for r in alerts):
        if name not in fires:
            failures.append(f"alerts.test.yaml: no case where {name} fires")
        if name not in quiet:
            failures.append(f"alerts.test.yaml: no case where {name} stays quiet")
    return failures


def main() -> int:
    failures = []
    for overlay in sorted((ROOT / "k8s" / "overlays").iterdir()):
        docs = render(overlay)
        kinds = sorted({d["kind"] for d in docs})
        for doc in docs:
            failures += [f"{overlay.name}: {f}" for f in validate(doc)]
        failures += [f"{overlay.name}: {f}" for f in check_network_policies(docs)]
        failures += [f"{overlay.name}: {f}" for f in check_flows(docs, overlay.name)]
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
    failures += check_alert_tests(alerts)
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
