"""Unit tests of deploy/netpol.py (run by scripts/check-deploy): the evaluator must deny what a
cluster would deny, or the flow tables prove nothing."""

import unittest

from netpol import Endpoint, allowed


def pod(name, namespace="scim", ns_labels=None, ip="10.244.0.9", **labels):
    return Endpoint(name, namespace=namespace, labels={"app": name, **labels},
                    namespace_labels={"kubernetes.io/metadata.name": namespace, **(ns_labels or {})},
                    ip=ip)


def policy(selector, types, ingress=None, egress=None, namespace="scim"):
    spec = {"podSelector": selector, "policyTypes": types}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"metadata": {"name": "p", "namespace": namespace}, "spec": spec}


DENY_ALL = policy({}, ["Ingress", "Egress"])
A, B = pod("a", ip="10.244.0.1"), pod("b", ip="10.244.0.2")
OUTSIDE = pod("c", namespace="other", ip="10.244.0.3")


class Evaluation(unittest.TestCase):
    def test_no_policy_allows_and_default_deny_denies(self):
        self.assertTrue(allowed([], A, B, 80))
        self.assertFalse(allowed([DENY_ALL], A, B, 80))

    def test_both_sides_must_allow(self):
        out = policy({"matchLabels": {"app": "a"}}, ["Egress"],
                     egress=[{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}]}])
        inn = policy({"matchLabels": {"app": "b"}}, ["Ingress"],
                     ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                               "ports": [{"port": 80}]}])
        self.assertFalse(allowed([DENY_ALL, out], A, B, 80), "ingress still denied")
        self.assertTrue(allowed([DENY_ALL, out, inn], A, B, 80))
        self.assertFalse(allowed([DENY_ALL, out, inn], A, B, 81), "other port")
        self.assertFalse(allowed([DENY_ALL, out, inn], A, B, 80, "UDP"), "other protocol")
        self.assertFalse(allowed([DENY_ALL, out, inn], B, A, 80), "the other direction")

    def test_a_pod_selector_alone_names_the_policys_namespace(self):
        inn = policy({"matchLabels": {"app": "b"}}, ["Ingress"],
                     ingress=[{"from": [{"podSelector": {}}]}])
        self.assertTrue(allowed([inn], A, B, 80))
        self.assertFalse(allowed([inn], OUTSIDE, B, 80))

    def test_namespace_and_pod_selector_in_one_peer_both_apply(self):
        both = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}},
                 "podSelector": {"matchLabels": {"app": "x"}}}]
        either = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}},
                  {"podSelector": {"matchLabels": {"app": "x"}}}]
        self.assertFalse(allowed([policy({}, ["Ingress"], ingress=[{"from": both}])], OUTSIDE, B, 80))
        self.assertTrue(allowed([policy({}, ["Ingress"], ingress=[{"from": either}])], OUTSIDE, B, 80))

    def test_ip_blocks_and_port_ranges(self):
        public = Endpoint("api", ip="35.190.10.20")
        private = Endpoint("lan", ip="10.1.2.3")
        egress = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                   "ports": [{"port": 443}, {"port": 8000, "endPort": 8010}]}]
        policies = [policy({}, ["Egress"], egress=egress)]
        self.assertTrue(allowed(policies, A, public, 443))
        self.assertTrue(allowed(policies, A, public, 8005))
        self.assertFalse(allowed(policies, A, public, 8011))
        self.assertFalse(allowed(policies, A, private, 443))
        self.assertFalse(allowed(policies, A, B, 443), "pods have private addresses")

    def test_policy_types_default_to_the_sections_present(self):
        ingress_only = {"metadata": {"name": "p", "namespace": "scim"},
                        "spec": {"podSelector": {}, "ingress": []}}
        self.assertTrue(allowed([ingress_only], A, OUTSIDE, 80), "egress not restricted")
        self.assertFalse(allowed([ingress_only], OUTSIDE, A, 80))


if __name__ == "__main__":
    unittest.main()
