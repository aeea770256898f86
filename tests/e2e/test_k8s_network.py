"""The "network" field on the kubernetes runtime: each session's
NetworkPolicy sandbox-<id> (backend/runtime/kubernetes/k8s_netpol.c), as
the real kubectl reads it from the fake API server. The fake stores and
validates policies but cannot enforce them (its pods share the host's
network namespace), so these tests check what the cluster is told: the
policy selects exactly the session's pod, "none" allows no egress,
"egress" allows cluster DNS and the configured ranges less the blocked
ones; domain lists are refused; the policy goes with its session."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from pico_stack import ROOT, Stack, backend_binary, wait_for
from test_k8s import (NS, READY_TIMEOUT_S, FakeK8s, pods_gone,  # noqa: F401
                      prerequisites)

DENY = "198.51.100.0/24"  # in the stack's egress_deny_cidrs...
# ...with 63 more, the most the key takes with the blocked ranges beside
DENY_ALL = [DENY] + ["198.18.%d.0/24" % i for i in range(63)]
CLUSTER_BLOCKED = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                   "169.254.0.0/16", "127.0.0.0/8"}


@pytest.fixture(scope="module")
def nfake():
    f = FakeK8s(gc=True)
    yield f
    f.stop()


@pytest.fixture(scope="module")
def nstack(nfake):
    s = Stack(name="k8snet", runtime="kubernetes", env={"K8S_API": nfake.url})
    s.configure()
    s.set_conf("k8s_ready_timeout_s", str(READY_TIMEOUT_S))
    s.set_conf("network_allowed", "none,egress")
    s.set_conf("egress_deny_cidrs", ",".join(DENY_ALL))
    s.start(configure=False)
    yield s
    s.stop()
    pods_gone(nfake, *[n for n in nfake.pods() if n.startswith("sandbox-")])
    assert s.sanitizer_reports() == [], "sanitizer reported errors: %s" % s.sanitizer_reports()


@pytest.fixture(autouse=True)
def no_faults(nfake):
    yield
    nfake.reset_faults()


@pytest.fixture(scope="module")
def kubeconfig(nfake):
    path = os.path.join(nfake.state, "kubeconfig")
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "Config",
                   "clusters": [{"name": "fake", "cluster": {"server": nfake.url}}],
                   "users": [{"name": "test", "user": {}}],
                   "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "test",
                                                             "namespace": NS}}],
                   "current-context": "fake"}, f)
    return path


def kubectl(kubeconfig, *args):
    r = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "-n", NS] + list(args),
                       capture_output=True, text=True, timeout=90)
    return r.returncode, r.stdout, r.stderr


def policies(kubeconfig):
    code, out, err = kubectl(kubeconfig, "get", "networkpolicy", "-o", "json")
    assert code == 0, err
    return {p["metadata"]["name"]: p for p in json.loads(out)["items"]}


def selects(policy, labels):
    want = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in want.items())


def test_none_session_has_a_deny_all_policy_on_its_pod(nstack, nfake, kubeconfig):
    a = nstack.create(ttl=300, network="none")["session_id"]
    b = nstack.create(ttl=300)["session_id"]  # "none" is the default
    try:
        pols, pods = policies(kubeconfig), nfake.pods()
        pa = pols["sandbox-" + a]
        assert pa["spec"]["policyTypes"] == ["Egress"]
        assert pa["spec"].get("egress", []) == []
        assert pa["spec"]["podSelector"] == {"matchLabels": {"session-id": a}}
        assert selects(pa, pods["sandbox-" + a]["metadata"]["labels"])
        assert not selects(pa, pods["sandbox-" + b]["metadata"]["labels"])
        assert pols["sandbox-" + b]["spec"].get("egress", []) == []
        # the pod owns it, for the garbage collector
        owner = pa["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"]) for o in owner] == \
            [("Pod", "sandbox-" + a, pods["sandbox-" + a]["metadata"]["uid"])]
        assert pa["metadata"]["labels"]["managed-by"] == "pico-apiserver"
        # made before the pod, so the pod never runs without it
        posts = [path.rsplit("/", 1)[-1] for m, path, _, _ in nfake.state_dump()["requests"]
                 if m == "POST" and path.startswith(("/api/", "/apis/"))]
        assert "networkpolicies" in posts and posts.index("networkpolicies") < posts.index("pods"), posts
        code, out, err = kubectl(kubeconfig, "get", "netpol")
        assert code == 0 and "sandbox-" + a in out and "session-id=" + a in out, out + err
        code, out, err = kubectl(kubeconfig, "get", "networkpolicy", "sandbox-" + a, "-o", "yaml")
        assert code == 0 and "kind: NetworkPolicy" in out and "session-id: " + a in out, out + err
    finally:
        for sid in (a, b):
            assert nstack.delete(sid).status == 200


def ip_blocks(policy):
    return {t["ipBlock"]["cidr"]: set(t["ipBlock"].get("except", []))
            for r in policy["spec"]["egress"] for t in r.get("to", []) if "ipBlock" in t}


def test_egress_session_policy(nstack, nfake, kubeconfig):
    sid = nstack.create(ttl=300, network="egress")["session_id"]
    narrow = nstack.create(ttl=300, network="egress",
                           egress={"allow_cidrs": ["203.0.113.0/24"],
                                   "deny_cidrs": ["203.0.113.128/25"]})["session_id"]
    try:
        pols = policies(kubeconfig)
        p = pols["sandbox-" + sid]
        assert p["spec"]["policyTypes"] == ["Egress"]
        dns = [r for r in p["spec"]["egress"] if any("namespaceSelector" in t for t in r["to"])]
        assert len(dns) == 1
        assert dns[0]["to"] == [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
        assert sorted((x["protocol"], x["port"]) for x in dns[0]["ports"]) == [("TCP", 53), ("UDP", 53)]
        blocks = ip_blocks(p)
        assert set(blocks) == {"0.0.0.0/0"}, blocks
        assert CLUSTER_BLOCKED | set(DENY_ALL) <= blocks["0.0.0.0/0"]
        # the request's narrower lists, the server's deny list not inside
        blocks = ip_blocks(pols["sandbox-" + narrow])
        assert blocks == {"203.0.113.0/24": {"203.0.113.128/25"}}, blocks
    finally:
        for s in (sid, narrow):
            assert nstack.delete(s).status == 200


@pytest.mark.parametrize("egress, want", [
    ({"allow_domains": ["example.com"]}, "NetworkPolicy cannot enforce names"),
    ({"deny_domains": ["example.com"]}, "NetworkPolicy cannot enforce names"),
    ({"allow_cidrs": ["10.1.0.0/16"]}, "allows nothing"),
    ({"allow_cidrs": ["198.51.100.0/25"]}, "allows nothing"),
])
def test_bad_egress_lists_are_400(nstack, nfake, egress, want):
    before = {p["metadata"]["name"] for p in nfake.state_dump()["networkpolicies"]}
    r = nstack.request("POST", "/v1/sessions", body={"ttl": 60, "network": "egress", "egress": egress})
    assert r.status == 400, r
    assert want in r.json()["error"]["message"], r.json()
    assert {p["metadata"]["name"] for p in nfake.state_dump()["networkpolicies"]} == before


@pytest.mark.parametrize("key", ["egress_allow_domains", "egress_deny_domains"])
def test_domain_lists_in_the_config_stop_the_backend(tmp_path, key):
    conf = tmp_path / "pico.conf"
    conf.write_text("runtime kubernetes\nredis unix:%s/none.sock\nstate_dir %s\n"
                    "k8s_api http://127.0.0.1:9\nk8s_image_prefix \"\"\n"
                    "network_allowed none,egress\n%s example.com\n" % (tmp_path, tmp_path, key))
    r = subprocess.run([backend_binary(), "--config", str(conf)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert key in r.stderr and "NetworkPolicy" in r.stderr, r.stderr
    assert "redis" not in r.stderr.lower(), r.stderr


def test_delete_removes_the_policy_itself(nstack, nfake, kubeconfig):
    sid = nstack.create(ttl=300, network="egress")["session_id"]
    assert "sandbox-" + sid in policies(kubeconfig)
    # No garbage collection to lean on: the DELETE itself removes it.
    nfake.faults(gc_delay_s=3600)
    assert nstack.delete(sid).status == 200
    assert "sandbox-" + sid not in policies(kubeconfig)
    code, _, err = kubectl(kubeconfig, "get", "networkpolicy", "sandbox-" + sid)
    assert code != 0 and "NotFound" in err, err


def test_policy_goes_with_its_pod(nstack, nfake, kubeconfig):
    """The owner link at work: the pod deleted behind pico's back, the
    garbage collector removes the policy (and reconcile fails the
    session)."""
    sid = nstack.create(ttl=300, network="egress")["session_id"]
    try:
        code, _ = nfake.call("DELETE", "/api/v1/namespaces/%s/pods/sandbox-%s" % (NS, sid))
        assert code == 200
        wait_for(lambda: "sandbox-" + sid not in policies(kubeconfig), timeout=30, interval=0.2,
                 what="the policy collected with its pod")
    finally:
        nstack.delete(sid)


@pytest.mark.parametrize("fault", [
    {"rules": [{"method": "POST", "resource": "networkpolicies", "status": 500,
                "message": "etcdserver: leader changed"}]},
    {"create_pod_status": 500, "message": "etcdserver: leader changed"},
    {"rules": [{"method": "PATCH", "resource": "networkpolicies", "status": 500,
                "message": "etcdserver: leader changed"}]},
])
def test_failed_create_leaves_no_policy(nstack, nfake, kubeconfig, fault):
    before_pods = set(nfake.pods())
    before = set(policies(kubeconfig))
    before_secrets = set(nfake.secrets())
    nfake.faults(gc_delay_s=3600, **fault)
    r = nstack.request("POST", "/v1/sessions", body={"ttl": 60, "network": "egress"})
    assert r.status >= 500, r
    assert "etcdserver: leader changed" in r.json()["error"]["message"]
    assert set(policies(kubeconfig)) == before
    assert set(nfake.secrets()) == before_secrets
    pods_gone(nfake, *(set(nfake.pods()) - before_pods))


def test_orphan_policy_is_removed_by_reconcile(nstack, nfake, kubeconfig):
    """A backend that died after making the policy leaves one no record
    has: reconcile at the next start removes it."""
    orphan = str(uuid.uuid4())
    nstack.backend.stop()
    try:
        labels = {"app.kubernetes.io/managed-by": "pico", "managed-by": "pico-apiserver",
                  "session-id": orphan, "sandbox": "sandbox-" + orphan}
        code, body = nfake.call("POST", "/apis/networking.k8s.io/v1/namespaces/%s/networkpolicies" % NS, {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "sandbox-" + orphan, "labels": labels},
            "spec": {"podSelector": {"matchLabels": {"session-id": orphan}},
                     "policyTypes": ["Egress"]}})
        assert code == 201, body
    finally:
        nstack.backend.start()
    wait_for(lambda: "sandbox-" + orphan not in policies(kubeconfig), timeout=30, interval=0.2,
             what="orphan policy removal")


def test_fake_refuses_what_the_api_server_refuses(nfake):
    """The fake's NetworkPolicy validation, which the driver's bodies pass:
    an except outside its cidr, an unknown policy type, no podSelector;
    the wrong group's URL is no resource."""
    path = "/apis/networking.k8s.io/v1/namespaces/%s/networkpolicies" % NS
    bad = [{"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}}]}]},
           {"podSelector": {}, "policyTypes": ["Outbound"]},
           {"policyTypes": ["Egress"]}]
    for spec in bad:
        code, body = nfake.call("POST", path, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                              "metadata": {"name": "bad"}, "spec": spec})
        assert code == 422 and body["reason"] == "Invalid", (spec, body)
    code, body = nfake.call("GET", "/api/v1/namespaces/%s/networkpolicies" % NS)
    assert code == 404 and body["kind"] == "Status", body
    code, body = nfake.call("GET", path + "/nope")
    assert code == 404 and body["reason"] == "NotFound", body


def test_policy_bodies_match_upstream_schema(nstack, nfake):
    """Every NetworkPolicy body the driver sent in this module (creates,
    the owner link merged in) is valid against the upstream schemas."""
    log = os.path.join(nfake.state, "bodies.jsonl")
    kinds = set()
    with open(log) as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("user_agent") == "pico-backend" and "networkpolicies" in rec["path"]:
                kinds.add((rec["method"], rec["body"].get("kind") if isinstance(rec["body"], dict) else None))
    assert {("POST", "NetworkPolicy"), ("PATCH", None), ("DELETE", "DeleteOptions")} <= kinds, kinds
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "deploy", "k8s_schema.py"),
                        "--bodies", log], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 invalid" in r.stdout, r.stdout
