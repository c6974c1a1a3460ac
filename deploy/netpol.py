"""NetworkPolicy evaluation, as a cluster's network plugin applies the policies: a connection
from A to B on a port is allowed only when A's egress allows it (or no policy of A's namespace
selects A for egress) and B's ingress allows it (or none selects B for ingress). Peers are pods
(with their namespace's labels) or addresses (ipBlock). Used by check.py to hold the rendered
policies against the tables of deploy/flows.yaml."""

import ipaddress
from dataclasses import dataclass, field

# Pods get addresses from here, so an ipBlock that excepts the private ranges never names a pod.
POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")


@dataclass
class Endpoint:
    """A pod (namespace, labels, its namespace's labels) or an address outside the cluster."""

    name: str
    namespace: str | None = None
    labels: dict = field(default_factory=dict)
    namespace_labels: dict = field(default_factory=dict)
    ip: str = ""

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def selects(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions); `{}` selects everything."""
    if selector is None:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def policy_types(policy: dict) -> list:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return spec["policyTypes"]
    return ["Ingress"] + (["Egress"] if "egress" in spec else [])


def peer_matches(peer: dict, policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if not other.is_pod:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), other.labels)


def port_matches(ports: list | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        start = p["port"]
        if isinstance(start, str):
            continue  # named ports: none in these manifests
        if start == port or start <= port <= p.get("endPort", start):
            return True
    return False


def side_allows(policies: list, pod: Endpoint, other: Endpoint, port: int, protocol: str,
                direction: str) -> bool:
    """Whether `pod`'s policies let `other` in (Ingress) or let `pod` out to it (Egress)."""
    if not pod.is_pod:
        return True  # an address outside the cluster has no policies
    selecting = [p for p in policies
                 if p["metadata"].get("namespace") == pod.namespace
                 and selects(p["spec"].get("podSelector", {}), pod.labels)
                 and direction in policy_types(p)]
    if not selecting:
        return True
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for p in selecting:
        for rule in p["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            if peers and not any(peer_matches(peer, pod.namespace, other) for peer in peers):
                continue
            if port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(policies: list, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    return (side_allows(policies, src, dst, port, protocol, "Egress")
            and side_allows(policies, dst, src, port, protocol, "Ingress"))


def evaluate(policies: list, actors: dict, flows: list, want_allowed: bool) -> list:
    """The flows whose outcome differs from `want_allowed`, as messages. A flow is
    (source, destination, port, protocol) with actor names."""
    failures = []
    for src, dst, port, protocol in flows:
        if allowed(policies, actors[src], actors[dst], port, protocol) != want_allowed:
            verb = "is denied" if want_allowed else "is allowed"
            failures.append(f"{src} → {dst} {port}/{protocol} {verb}")
    return failures
