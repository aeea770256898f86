#!/usr/bin/python3
"""Offline checks of pico's Kubernetes manifests (deploy/k8s).

Renders every kustomization under deploy/k8s with the real `kubectl
kustomize` (a client-side render, no cluster needed; kubectl >= 1.21,
whose kustomize knows the base's `labels` field). A missing or older
kubectl is a failed check, not a stand-in renderer: output of pico's own
would prove nothing about what a cluster gets. Then checks what a
cluster would only tell at apply time, or never:

  - every object has apiVersion, kind, metadata.name (+ namespace where
    namespaced);
  - workload selectors match their pod templates; Services and PDBs
    select some pod template;
  - every container has requests + limits, readiness + liveness probes,
    no privilege escalation; mounts name existing volumes; ConfigMaps
    referenced exist;
  - RBAC: no cluster-wide roles, no wildcards, exactly the verbs the
    driver uses on each resource (in its API group), only in the sandbox
    namespace;
  - NetworkPolicy: sandbox pods (selected by a label the driver sets)
    accept only TCP (22 and the ports of previews) from the server pods; default deny exists;
    no namespace-wide policy grants sandboxes egress (policies add up:
    egress is the per-session policies' alone, k8s_netpol.c), and the
    driver's blocked ranges include the private and link-local ranges of
    each family;
  - images: no pico image from an implicit Docker Hub account; the base
    may carry the REGISTRY.example placeholder, an overlay may not (in
    images or in pico.conf's k8s_image_prefix);
  - pico.conf: only keys pico-backend knows (conf/pico.conf.in), runtime
    kubernetes, auth on, the namespace the Role grants; nginx.conf loads
    the module, reaches the backend's socket, pico_redis names a
    Service with a cluster IP (the module resolves it once), and the
    metrics locations are loopback only.

Prints one line per failed check and "N passed, M failed"; exit 1 on
failure. --selftest breaks rendered objects on purpose and expects the
checks to notice.
"""

import copy
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "k8s")
DRIVER_DIR = os.path.join(ROOT, "backend", "runtime", "kubernetes")


def driver_source():
    """The kubernetes driver's C sources, as one text."""
    out = []
    for f in sorted(os.listdir(DRIVER_DIR)):
        if f.endswith((".c", ".h")):
            with open(os.path.join(DRIVER_DIR, f)) as fh:
                out.append(fh.read())
    return "\n".join(out)


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding",
                  "PersistentVolume", "StorageClass", "CustomResourceDefinition"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
# What the driver (backend/runtime/kubernetes/) does with each resource, and nothing more.
# The Role must grant exactly these (a verb fewer and the driver fails).
ALLOWED_VERBS = {"pods": {"create", "get", "list", "watch", "delete"},
                 "secrets": {"create", "list", "patch", "delete"},
                 "networkpolicies": {"create", "list", "patch", "delete"}}
API_GROUPS = {"pods": "", "secrets": "", "networkpolicies": "networking.k8s.io"}


# -- rendering ---------------------------------------------------------------

def kustomizations():
    out = []
    for dirpath, _, files in os.walk(K8S):
        if "kustomization.yaml" in files:
            out.append(dirpath)
    return sorted(out)


def render_kubectl(path):
    r = subprocess.run(["kubectl", "kustomize", path], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("kubectl kustomize %s: %s" % (path, r.stderr.strip()))
    return [d for d in yaml.safe_load_all(r.stdout) if d]


KUBECTL_MIN = (1, 21)


def kubectl_version():
    """(major, minor) of the kubectl on PATH; raises if none."""
    r = subprocess.run(["kubectl", "version", "--client", "-o", "json"],
                       capture_output=True, text=True, timeout=60)
    v = yaml.safe_load(r.stdout)["clientVersion"]
    return int(v["major"]), int(re.match(r"\d+", v["minor"]).group())


def render(path):
    if not shutil.which("kubectl"):
        raise RuntimeError("kubectl >= %d.%d is needed to render (not found)" % KUBECTL_MIN)
    have = kubectl_version()
    if have < KUBECTL_MIN:
        raise RuntimeError("kubectl %d.%d cannot render the base (json: unknown field "
                           "\"labels\"): kubectl >= %d.%d is needed" % (have + KUBECTL_MIN))
    return render_kubectl(path), "kubectl %d.%d kustomize" % have


# -- checks ------------------------------------------------------------------

def pod_spec(d):
    if d.get("kind") in WORKLOADS:
        return d.get("spec", {}).get("template", {}).get("spec", {})
    if d.get("kind") == "Pod":
        return d.get("spec", {})
    return None


def pod_labels(d):
    if d.get("kind") in WORKLOADS:
        return d.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}
    return d.get("metadata", {}).get("labels", {}) or {}


def subset(sel, labels):
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def conf_keys(text):
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            parts = line.split(None, 1)
            keys.append((parts[0], parts[1].strip().strip('"') if len(parts) > 1 else ""))
    return keys


PLACEHOLDER = "REGISTRY.example/"
PRIVATE_V4 = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"}
# Unique local (pod/service networks of dual-stack clusters), link-local,
# and the IPv4-mapped range, through which the IPv4 exceptions leak.
PRIVATE_V6 = {"fc00::/7", "fe80::/10", "::ffff:0:0/96"}


def docker_hub_implicit(ref):
    """True when an image reference names no registry (Docker Hub)."""
    first = ref.split("/")[0]
    return "/" not in ref or not ("." in first or ":" in first or first == "localhost")


def check_images(ok, docs, overlay):
    """pico's images name a registry; an overlay has replaced the placeholder."""
    for d in docs:
        for c in (pod_spec(d) or {}).get("containers", []):
            img = c.get("image", "")
            if "pico/" in img:
                ok(not docker_hub_implicit(img),
                   "%s: image %s is a Docker Hub account's" % (d["metadata"]["name"], img))
                ok(not overlay or PLACEHOLDER not in img,
                   "%s: image %s is still the placeholder: name your registry "
                   "(images: newName)" % (d["metadata"]["name"], img))
        if d.get("kind") == "ConfigMap" and "pico.conf" in (d.get("data") or {}):
            prefix = dict(conf_keys(d["data"]["pico.conf"])).get("k8s_image_prefix", "")
            ok(prefix and not docker_hub_implicit(prefix + "x"),
               "pico.conf: k8s_image_prefix %r names no registry (Docker Hub)" % prefix)
            ok(not overlay or PLACEHOLDER not in prefix,
               "pico.conf: k8s_image_prefix is still the placeholder %r" % prefix)


def check(docs, overlay=False):
    """Returns (passed, [failure messages])."""
    fails, passed = [], [0]

    def ok(cond, msg):
        if cond:
            passed[0] += 1
        else:
            fails.append(msg)

    def name(d):
        return "%s/%s" % (d.get("kind"), (d.get("metadata") or {}).get("name"))

    for d in docs:
        md = d.get("metadata") or {}
        ok(d.get("apiVersion") and d.get("kind") and md.get("name"),
           "%s: apiVersion, kind and metadata.name are required" % name(d))
        if d.get("kind") not in CLUSTER_SCOPED:
            ok(md.get("namespace"), "%s: namespaced object without metadata.namespace" % name(d))

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    configmaps = {(d["metadata"].get("namespace"), d["metadata"]["name"]) for d in by_kind.get("ConfigMap", [])}
    workloads = [d for d in docs if d.get("kind") in WORKLOADS]
    ok(workloads, "no workloads rendered")

    for d in workloads:
        ns = d["metadata"].get("namespace")
        sel = d["spec"].get("selector", {}).get("matchLabels", {})
        ok(subset(sel, pod_labels(d)), "%s: selector %s does not match its pod labels" % (name(d), sel))
        spec = pod_spec(d)
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        claim_names = {t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])}
        for v in vols.values():
            cm = (v.get("configMap") or {}).get("name")
            if cm and cm != "kube-root-ca.crt":
                ok((ns, cm) in configmaps, "%s: volume %s names missing ConfigMap %s" % (name(d), v["name"], cm))
        for c in spec.get("containers", []):
            cn = "%s container %s" % (name(d), c.get("name"))
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                ok({"cpu", "memory"} <= set(res.get(part) or {}), "%s: resources.%s needs cpu and memory" % (cn, part))
            ok(c.get("readinessProbe"), "%s: no readinessProbe" % cn)
            ok(c.get("livenessProbe"), "%s: no livenessProbe" % cn)
            ok((c.get("securityContext") or {}).get("allowPrivilegeEscalation") is False,
               "%s: allowPrivilegeEscalation must be false" % cn)
            ok(c.get("image") and not c["image"].startswith(":"), "%s: no image" % cn)
            for m in c.get("volumeMounts", []):
                ok(m["name"] in vols or m["name"] in claim_names,
                   "%s: mount %s names no volume" % (cn, m["name"]))

    for kind in ("Service", "PodDisruptionBudget"):
        for d in by_kind.get(kind, []):
            sel = d["spec"].get("selector", {})
            sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
            ns = d["metadata"].get("namespace")
            ok(any(subset(sel, pod_labels(w)) and w["metadata"].get("namespace") == ns for w in workloads),
               "%s: selector %s matches no pod template in %s" % (name(d), sel, ns))

    # RBAC
    ok(not by_kind.get("ClusterRole") and not by_kind.get("ClusterRoleBinding"),
       "cluster-wide RBAC: pico needs a namespaced Role only")
    roles = by_kind.get("Role", [])
    ok(roles, "no Role for pico-backend")
    with open(os.path.join(K8S, "..", "..", "conf", "pico.conf.in")) as f:
        known_keys = {k for k, _ in conf_keys(f.read())}
    known_keys |= {"k8s_kubeconfig", "k8s_ca_file", "k8s_token_file", "images_dir"}
    sandbox_ns = None
    for cm in by_kind.get("ConfigMap", []):
        if "pico.conf" in (cm.get("data") or {}):
            conf = dict(conf_keys(cm["data"]["pico.conf"]))
            for k in conf:
                ok(k in known_keys, "pico.conf: unknown key %s" % k)
            ok(conf.get("runtime") == "kubernetes", "pico.conf: runtime must be kubernetes")
            ok(conf.get("auth") in ("on", "yes", "1", "true"), "pico.conf: auth must be on in a deployment")
            sandbox_ns = conf.get("k8s_namespace", "pico-sandboxes")
            nginx = cm["data"].get("nginx.conf", "")
            ok("load_module" in nginx and "pico_tunnel" in nginx, "nginx.conf: module not loaded or no pico_tunnel")
            sock = conf.get("listen", "")
            ok(sock.startswith("unix:") and ("server %s;" % sock) in nginx,
               "nginx.conf: upstream does not reach the backend's listen %s" % sock)
            check_redis_service(ok, nginx, by_kind.get("Service", []))
            check_metrics_private(ok, nginx)
    ok(sandbox_ns, "no ConfigMap with pico.conf")
    for r in roles:
        ok(r["metadata"].get("namespace") == sandbox_ns,
           "%s: Role is in %s, sandboxes in %s" % (name(r), r["metadata"].get("namespace"), sandbox_ns))
        granted = {}
        for rule in r.get("rules", []):
            ok("*" not in rule.get("verbs", []) and "*" not in rule.get("resources", []),
               "%s: wildcard in a rule" % name(r))
            for res in rule.get("resources", []):
                ok(res in ALLOWED_VERBS, "%s: resource %s is not needed" % (name(r), res))
                ok(rule.get("apiGroups") == [API_GROUPS.get(res)],
                   "%s: %s in apiGroups %s" % (name(r), res, rule.get("apiGroups")))
                granted.setdefault(res, set()).update(rule.get("verbs", []))
        for res, verbs in ALLOWED_VERBS.items():
            ok(granted.get(res, set()) == verbs,
               "%s: verbs %s on %s, the driver uses exactly %s" % (
                   name(r), sorted(granted.get(res, set())), res, sorted(verbs)))
    for rb in by_kind.get("RoleBinding", []):
        sas = [s for s in rb.get("subjects", []) if s.get("kind") == "ServiceAccount"]
        ok(sas and all(any(sa["metadata"]["name"] == s["name"] and sa["metadata"].get("namespace") == s.get("namespace")
                           for sa in by_kind.get("ServiceAccount", [])) for s in sas),
           "%s: binds a ServiceAccount that is not rendered" % name(rb))

    # NetworkPolicy around sandboxes, keyed on a label the driver really sets.
    driver_src = driver_source()
    pols = [p for p in by_kind.get("NetworkPolicy", []) if p["metadata"].get("namespace") == sandbox_ns]
    sandbox_pols = [p for p in pols if p["spec"].get("podSelector", {}).get("matchLabels")]
    ok(sandbox_pols, "no NetworkPolicy selecting sandbox pods in %s" % sandbox_ns)
    ok(any(p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
           and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in pols),
       "no default-deny NetworkPolicy in %s" % sandbox_ns)
    server_labels = [pod_labels(w) for w in workloads if any(
        c.get("name") == "nginx" for c in pod_spec(w).get("containers", []))]
    for p in sandbox_pols:
        for k, v in p["spec"]["podSelector"]["matchLabels"].items():
            ok('"%s", "%s"' % (k, v) in driver_src or '"%s",\n' % k in driver_src,
               "%s: selects label %s=%s that the driver does not set" % (name(p), k, v))
        ok("Egress" in p["spec"].get("policyTypes", []), "%s: sandboxes' egress is not restricted" % name(p))
        for rule in p["spec"].get("ingress", []):
            ok(rule.get("ports") and all(pt.get("protocol", "TCP") == "TCP"
                                         for pt in rule["ports"]),
               "%s: ingress beyond TCP" % name(p))
            for peer in rule.get("from", []):
                sel = (peer.get("podSelector") or {}).get("matchLabels")
                ok(sel and any(subset(sel, l) for l in server_labels),
                   "%s: ingress from something other than the server pods" % name(p))
        # Policies add up: egress granted here would reach every
        # session, "none" ones too. The driver's per-session policy
        # (k8s_netpol.c) is where egress comes from.
        ok(not p["spec"].get("egress"),
           "%s: grants egress to every sandbox (it belongs in the per-session policies)" % name(p))
    # ...which excepts the cluster's ranges from every ipBlock.
    with open(os.path.join(ROOT, "backend", "core", "netpolicy.c")) as f:
        blocked = f.read().split("netpolicy_cluster_blocked[]", 1)[-1].split("NULL", 1)[0]
    for cidr in sorted(PRIVATE_V4):
        ok('"%s"' % cidr in blocked, "netpolicy.c: %s is not in netpolicy_cluster_blocked" % cidr)
    for cidr in sorted(PRIVATE_V6):
        ok('"%s"' % cidr in driver_src, "the driver's IPv6 rule does not except %s" % cidr)
    check_images(ok, docs, overlay)
    return passed[0], fails


def check_redis_service(ok, nginx, services):
    """pico_redis names a Service with a cluster IP: the module resolves the
    name once, when nginx reads its configuration, so a headless Service
    (the pod's own address) would go stale when the Redis pod is replaced."""
    m = re.search(r"^\s*pico_redis\s+([^;\s]+)\s*;", nginx, re.M)
    addr = m.group(1) if m else ""
    if addr.startswith("unix:"):
        return
    host = addr.rsplit(":", 1)[0] if ":" in addr else addr
    parts = host.split(".")
    svc = [s for s in services if s["metadata"].get("name") == parts[0]
           and (len(parts) < 2 or s["metadata"].get("namespace") == parts[1])]
    ok(svc and all((s.get("spec") or {}).get("clusterIP") != "None" for s in svc),
       "nginx.conf: pico_redis %s is not a Service with a cluster IP" % (addr or "(unset)"))


def check_sshd_mount(fails_out):
    """The image's sshd_config reads host keys where the pod's start
    script copies them (K8S_KEYS_DIR; the Secret itself is mounted at
    K8S_SECRET_MOUNT, which sshd's StrictModes would refuse)."""
    with open(os.path.join(ROOT, "deploy", "sandbox", "sshd_config")) as f:
        sshd = f.read()
    src = driver_source()
    m = re.search(r'#define K8S_KEYS_DIR "([^"]+)"', src)
    mount = m.group(1) if m else None
    good = mount and "HostKey %s/ssh_host_ed25519_key" % mount in sshd and \
        "AuthorizedKeysFile %s/authorized_keys" % mount in sshd
    if not good:
        fails_out.append("deploy/sandbox/sshd_config does not read keys from the driver's mount %s" % mount)
    return 1 if good else 0


def check_metrics_private(ok, nginx):
    """/metrics (the backend's, no token) and /metrics/nginx have their own
    locations that deny all but loopback, so neither falls through to the
    public location / (docs/api.md, "Metrics")."""
    for path in ("/metrics", "/metrics/nginx"):
        m = re.search(r"location = %s \{([^}]*)\}" % re.escape(path), nginx)
        body = m.group(1) if m else ""
        ok(m is not None and "allow 127.0.0.1;" in body and "deny all;" in body,
           "nginx.conf: %s is not a loopback-only location" % path)


def selftest(docs):
    """Each mutation must make check() fail; returns failures of that."""
    def mutate(fn):
        d = copy.deepcopy(docs)
        fn(d)
        return check(d)[1]

    def first(ds, kind):
        return [d for d in ds if d.get("kind") == kind][0]

    def no_limits(ds):
        pod_spec(first(ds, "Deployment"))["containers"][0]["resources"].pop("limits")

    def no_probe(ds):
        pod_spec(first(ds, "StatefulSet"))["containers"][0].pop("readinessProbe")

    def wild_verbs(ds):
        first(ds, "Role")["rules"][0]["verbs"] = ["*"]

    def escalate(ds):
        first(ds, "Role")["rules"][1]["verbs"].append("update")

    def bad_selector(ds):
        first(ds, "Service")["spec"]["selector"] = {"app.kubernetes.io/name": "nope"}

    def no_netpol(ds):
        ds[:] = [d for d in ds if d.get("kind") != "NetworkPolicy"]

    def open_port(ds):
        for p in ds:
            if p.get("kind") == "NetworkPolicy" and p["spec"].get("ingress"):
                p["spec"]["ingress"][0]["ports"].append({"protocol": "UDP", "port": 80})

    def no_name(ds):
        ds[0]["metadata"].pop("name")

    def cluster_role(ds):
        r = copy.deepcopy(first(ds, "Role"))
        r["kind"] = "ClusterRole"
        ds.append(r)

    def auth_off(ds):
        for cm in ds:
            if cm.get("kind") == "ConfigMap" and "pico.conf" in cm.get("data", {}):
                cm["data"]["pico.conf"] = cm["data"]["pico.conf"].replace("auth on", "auth off")

    def typo_key(ds):
        for cm in ds:
            if cm.get("kind") == "ConfigMap" and "pico.conf" in cm.get("data", {}):
                cm["data"]["pico.conf"] += "\nk8s_namespce x\n"

    def headless_redis(ds):
        for svc in ds:
            if svc.get("kind") == "Service" and svc["metadata"]["name"] == "redis":
                svc["spec"]["clusterIP"] = "None"

    def hub_image(ds):
        pod_spec(first(ds, "Deployment"))["containers"][0]["image"] = "pico/server:latest"

    def hub_prefix(ds):
        for cm in ds:
            if cm.get("kind") == "ConfigMap" and "pico.conf" in cm.get("data", {}):
                cm["data"]["pico.conf"] = re.sub(r'k8s_image_prefix .*', 'k8s_image_prefix "pico/"',
                                                 cm["data"]["pico.conf"])

    def base_egress(ds):
        for p in ds:
            if p.get("kind") == "NetworkPolicy" and p["metadata"]["name"] == "sandboxes":
                p["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]

    def no_netpol_verbs(ds):
        first(ds, "Role")["rules"] = [r for r in first(ds, "Role")["rules"]
                                      if "networkpolicies" not in r.get("resources", [])]

    def public_metrics(ds):
        for cm in ds:
            if cm.get("kind") == "ConfigMap" and "nginx.conf" in cm.get("data", {}):
                cm["data"]["nginx.conf"] = cm["data"]["nginx.conf"].replace(
                    "location = /metrics {", "location = /metrics-old {")

    out = []
    for fn in (no_limits, no_probe, wild_verbs, escalate, bad_selector, no_netpol,
               open_port, no_name, cluster_role, auth_off, typo_key, headless_redis,
               hub_image, hub_prefix, base_egress, no_netpol_verbs, public_metrics):
        if not mutate(fn):
            out.append("selftest: breaking %s went unnoticed" % fn.__name__)
    # The base's placeholder, rendered as if it were an overlay's.
    if not check(copy.deepcopy(docs), overlay=True)[1]:
        out.append("selftest: the placeholder in an overlay went unnoticed")
    return out


SELFTESTS = 17


def main():
    total_pass, fails = 0, []
    selftest_mode = "--selftest" in sys.argv
    total_pass += check_sshd_mount(fails)
    for path in kustomizations():
        rel = os.path.relpath(path, ROOT)
        try:
            docs, how = render(path)
        except Exception as e:  # a render failure is a failed check
            fails.append("%s: %s" % (rel, e))
            continue
        p, f = check(docs, overlay=not rel.endswith("base"))
        print("%s: %d objects (%s), %d checks, %d failed" % (rel, len(docs), how, p + len(f), len(f)))
        total_pass += p
        fails += ["%s: %s" % (rel, m) for m in f]
        if selftest_mode and rel.endswith("base"):
            st = selftest(docs)
            total_pass += SELFTESTS - len(st)
            fails += st
    for m in fails:
        print("FAIL " + m)
    print("%d passed, %d failed" % (total_pass, len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
