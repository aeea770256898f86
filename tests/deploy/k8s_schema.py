#!/usr/bin/python3
"""Validates Kubernetes objects against the upstream Kubernetes OpenAPI
schemas (tests/deploy/k8s-schema/validate.mjs says how).

The npm packages that ship them (tests/deploy/k8s-schema/package.json,
pinned by its package-lock.json) are installed here, with `npm ci`, into
build/k8s-schema (git ignores build/), and reinstalled when the lock file
changes; after that no network is needed. A missing node or npm, or an
install that fails, fails the check: there is no skipping.

  k8s_schema.py --manifests     every object of `kubectl kustomize` of
                                deploy/k8s/base and of each overlay
  k8s_schema.py --selftest      broken objects (an unknown field, a wrong
                                type, a missing required field, an
                                unknown kind) must each be refused, a
                                good one accepted
  k8s_schema.py --bodies F...   request bodies pico-backend's driver
                                (User-Agent pico-backend; not the tests'
                                own requests) sent, as the fake API server
                                logs them (<state>/bodies.jsonl):
                                each POSTed object, each merge patch
                                applied to the object it patches, each
                                DELETE's DeleteOptions
"""

import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRC = os.path.join(ROOT, "tests", "deploy", "k8s-schema")
DEST = os.path.join(ROOT, "build", "k8s-schema")
K8S = os.path.join(ROOT, "deploy", "k8s")
# The fake API server's JSON merge patch (RFC 7386): the bodies are merged
# here exactly as the fake applied them.
sys.path.insert(0, os.path.join(ROOT, "tests", "fake_k8s"))
from server import merge_patch  # noqa: E402


def fail(msg):
    sys.exit("k8s_schema: " + msg)


def install():
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            fail("%s is not installed (apt-get install nodejs npm)" % tool)
    with open(os.path.join(SRC, "package-lock.json"), "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    stamp = os.path.join(DEST, "node_modules", ".pico-lock-sha256")
    try:
        with open(stamp) as f:
            if f.read().strip() == want:
                return
    except OSError:
        pass
    os.makedirs(DEST, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(SRC, name), os.path.join(DEST, name))
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=DEST, capture_output=True, text=True)
    if r.returncode != 0:
        fail("npm ci in %s failed:\n%s%s" % (DEST, r.stdout, r.stderr))
    with open(stamp, "w") as f:
        f.write(want + "\n")


def validate(items):
    """items: [(source, object)]; returns {index: (ok, text)}."""
    install()
    r = subprocess.run(["node", os.path.join(SRC, "validate.mjs"), DEST],
                       input=json.dumps([{"source": s, "object": o} for s, o in items]),
                       capture_output=True, text=True)
    if r.returncode not in (0, 1):
        fail("validate.mjs failed (%d): %s" % (r.returncode, r.stderr))
    results, cur = [], None
    for line in r.stdout.splitlines():
        if line.startswith("ok ") or line.startswith("INVALID "):
            cur = [line.startswith("ok "), line]
            results.append(cur)
        elif cur is not None:
            cur[1] += "\n" + line
    if len(results) != len(items):
        fail("validate.mjs answered %d of %d objects:\n%s%s"
             % (len(results), len(items), r.stdout, r.stderr))
    return results


def kustomizations():
    dirs = []
    for top, _, files in sorted(os.walk(K8S)):
        if "kustomization.yaml" in files:
            dirs.append(top)
    return dirs


def render(path):
    import yaml
    r = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True)
    if r.returncode != 0:
        fail("kubectl kustomize %s: %s" % (path, r.stderr.strip()))
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def manifest_items():
    items = []
    for d in kustomizations():
        for o in render(d):
            items.append((os.path.relpath(d, ROOT), o))
    if not items:
        fail("no objects rendered from %s" % K8S)
    return items



def body_items(files):
    """The objects the bodies stand for: POSTed objects as sent, a merge
    patch applied to the last body POSTed to that object (what the API
    server then validates), DeleteOptions as sent."""
    items, created = [], {}
    for fn in files:
        with open(fn) as f:
            for n, line in enumerate(f, 1):
                rec = json.loads(line)
                if rec.get("user_agent") != "pico-backend":
                    continue  # a test's own request (kubectl, urllib)
                m, path, body = rec["method"], rec["path"], rec["body"]
                src = "%s:%d %s %s" % (os.path.basename(os.path.dirname(fn)), n, m, path)
                if m == "POST":
                    name = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
                    created[path.rstrip("/") + "/" + str(name)] = body
                    items.append((src, body))
                elif m == "PATCH":
                    base = created.get(path)
                    if base is None:
                        continue  # an object the test created by other means
                    items.append((src + " (merged)", merge_patch(base, body)))
                elif m in ("PUT", "DELETE"):
                    items.append((src, body))
    return items


def selftest():
    good = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ok"},
            "spec": {"containers": [{"name": "c", "image": "i",
                                     "ports": [{"containerPort": 22}]}]}}
    broken = []

    def variant(what, fn, obj=good):
        o = copy.deepcopy(obj)
        fn(o)
        broken.append((what, o))
    variant("unknown field in a container",
            lambda o: o["spec"]["containers"][0].update(securityContxt={}))
    variant("unknown top-level field", lambda o: o.update(specs={}))
    variant("unknown field in metadata", lambda o: o["metadata"].update(label={"a": "b"}))
    variant("wrong type (containerPort a string)",
            lambda o: o["spec"]["containers"][0]["ports"][0].update(containerPort="22"))
    variant("wrong type (containers not a list)",
            lambda o: o["spec"].update(containers={"name": "c"}))
    variant("missing required field (container name)",
            lambda o: o["spec"]["containers"][0].pop("name"))
    variant("value outside an enum (protocol)",
            lambda o: o["spec"]["containers"][0]["ports"][0].update(protocol="tcp"))
    variant("unknown kind", lambda o: o.update(kind="Podd"))
    # and from the real manifests: the Deployment with a typo and a wrong type
    deps = [o for _, o in manifest_items() if o.get("kind") == "Deployment"]
    if not deps:
        fail("selftest: no Deployment in the rendered manifests")
    variant("Deployment: unknown field in the pod template",
            lambda o: o["spec"]["template"]["spec"].update(serviceAcountName="x"), deps[0])
    variant("Deployment: replicas a string",
            lambda o: o["spec"].update(replicas="2"), deps[0])
    res = validate([("selftest good", good)] + [("selftest " + w, o) for w, o in broken])
    if not res[0][0]:
        fail("selftest: a valid Pod was refused:\n" + res[0][1])
    ok = True
    for (what, _), (accepted, text) in zip(broken, res[1:]):
        if accepted:
            print("k8s_schema: selftest: NOT refused: %s" % what)
            ok = False
        else:
            print("k8s_schema: selftest: refused as it must be: %s: %s"
                  % (what, text.split("\n")[1].strip() if "\n" in text else text))
    if not ok:
        fail("selftest failed")


def report(items, res):
    bad = [t for ok, t in res if not ok]
    for t in bad:
        print(t)
    print("k8s_schema: %d objects checked against the upstream schemas, %d invalid"
          % (len(items), len(bad)))
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifests", action="store_true")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--bodies", nargs="+", default=[])
    a = ap.parse_args()
    if not (a.manifests or a.selftest or a.bodies):
        ap.error("nothing to do")
    good = True
    if a.selftest:
        selftest()
    if a.manifests:
        items = manifest_items()
        good &= report(items, validate(items))
    if a.bodies:
        items = body_items(a.bodies)
        if not items:
            fail("no request bodies in %s" % " ".join(a.bodies))
        good &= report(items, validate(items))
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
