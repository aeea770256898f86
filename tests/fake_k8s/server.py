#!/usr/bin/python3
"""A fake Kubernetes API server for pico's kubernetes runtime tests.

There is no API server on the machines pico is tested on, so the
kubernetes driver (backend/runtime/kubernetes/) is tested against this one. It is
written from the Kubernetes API reference for the subset the driver uses:

  GET    /version
  GET    /api/v1/namespaces/{ns}
  POST   /api/v1/namespaces/{ns}/{pods|secrets}            create (201)
  GET    /api/v1/namespaces/{ns}/{pods|secrets}            list, or watch
         (?watch=1|true) with labelSelector (equality-based), fieldSelector
         (metadata.name, metadata.namespace), resourceVersion,
         timeoutSeconds, limit/continue
  GET    /api/v1/namespaces/{ns}/{pods|secrets}/{name}
  PUT    /api/v1/namespaces/{ns}/{pods|secrets}/{name}     (resourceVersion
         checked: 409 Conflict when stale)
  PATCH  /api/v1/namespaces/{ns}/{pods|secrets}/{name}     merge patch
  DELETE /api/v1/namespaces/{ns}/{pods|secrets}/{name}
  and the same for /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies
  (stored and validated, not enforced: the pods share the host's network
  namespace, so the tests read the policies instead)

Errors are Status objects with the API's codes and reasons (NotFound 404,
AlreadyExists 409, Conflict 409, Invalid 422, BadRequest 400,
Unauthorized 401, Gone 410 inside a watch stream, InternalError 500).

Its "kubelet" runs each pod's container as a runc container (runc --root
<state>/runc): the sandbox root filesystem (--rootfs, the one
scripts/build-rootfs.sh makes for the local runtime, i.e. the same Debian
packages as deploy/sandbox), read-only because it is shared, with the
image's own sshd_config (deploy/sandbox/sshd_config, which the Dockerfile
copies in) in a per-pod copy of /etc/ssh. The pod's command runs as the
spec says, with its securityContext: capabilities (drop/add over the
container runtime's defaults, nothing else), allowPrivilegeEscalation
false = noNewPrivileges, runAsUser/runAsGroup, seccompProfile
RuntimeDefault = the local runtime's filter. Secret volumes are laid out
as the kubelet's atomic writer does and bind-mounted at their mountPath
(read-only when the mount says so), emptyDir volumes are fresh folders.
The container has its own PID, mount, IPC, UTS and cgroup namespaces but
the host's network namespace: the pod's IP is its own address in
127.0.0.0/8, and sshd listens there on port 22 (ListenAddress). The pod
turns Ready when that port accepts, like a tcpSocket readiness probe.
Deleting the pod kills and deletes its container. At start and at stop
the fake deletes every container under its runc root.

Tests steer it with /_fake/... endpoints (see Faults below). It stops
cleanly on SIGTERM and deletes every container it started.

usage: server.py --port N [--rootfs DIR] [--image-files DIR] [--state DIR]
                 [--namespace NS] [--token T] [--gc]
                 [--tls-cert PEM --tls-key PEM]   (https, as a real one)
"""

import argparse
import base64
import copy
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The container runtime's defaults, as containerd gives a container whose
# securityContext says nothing about capabilities.
DEFAULT_CAPS = ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW",
                "SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE",
                "SYS_CHROOT", "KILL", "AUDIT_WRITE"]

# seccompProfile RuntimeDefault: the local runtime's filter
# (backend/runtime/local/oci.c, docs/runtime-local.md): everything
# allowed but what a sandbox never needs; clone() that makes a namespace
# is refused, clone3 is ENOSYS so glibc falls back to clone().
SECCOMP_DENIED = [
    "add_key", "keyctl", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "create_module",
    "query_module", "get_kernel_syms", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "mount", "umount", "umount2", "pivot_root", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "open_tree", "mount_setattr", "setns",
    "unshare", "name_to_handle_at", "open_by_handle_at", "fanotify_init",
    "iopl", "ioperm", "syslog", "settimeofday", "clock_settime",
    "clock_adjtime", "stime", "vhangup", "lookup_dcookie", "nfsservctl",
    "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old"]
CLONE_NS_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                  0x20000000, 0x40000000]
EPERM, ENOSYS = 1, 38


def runtime_default_seccomp():
    rules = [{"names": SECCOMP_DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
             {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}]
    for f in CLONE_NS_FLAGS:
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                      "args": [{"index": 0, "value": f, "valueTwo": f,
                                "op": "SCMP_CMP_MASKED_EQ"}]})
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": rules}


def effective_security(pod, c):
    """What the container runs with, from the pod's and the container's
    securityContext as the kubelet merges them (the container's wins):
    (capabilities, no_new_privs, uid, gid, seccomp profile or None)."""
    psc = pod["spec"].get("securityContext") or {}
    csc = c.get("securityContext") or {}
    capsc = csc.get("capabilities") or {}
    drop = [x.upper().removeprefix("CAP_") for x in capsc.get("drop") or []]
    add = [x.upper().removeprefix("CAP_") for x in capsc.get("add") or []]
    caps = [] if "ALL" in drop else [x for x in DEFAULT_CAPS if x not in drop]
    caps += [x for x in add if x not in caps]
    if "ALL" in add:
        raise ApiError(422, "Invalid", "the fake's kubelet does not run privileged pods")
    if csc.get("privileged"):
        raise ApiError(422, "Invalid", "the fake's kubelet does not run privileged pods")
    # allowPrivilegeEscalation defaults to true (unless privileged or
    # CAP_SYS_ADMIN, which this kubelet refuses anyway).
    nnp = csc.get("allowPrivilegeEscalation") is False
    uid = csc.get("runAsUser", psc.get("runAsUser", 0))
    gid = csc.get("runAsGroup", psc.get("runAsGroup", 0))
    if (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0):
        raise ApiError(422, "Invalid", "container has runAsNonRoot and image will run as root")
    prof = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if prof not in (None, "Unconfined", "RuntimeDefault"):
        raise ApiError(422, "Invalid", "seccompProfile %s is not supported by the fake" % prof)
    return (["CAP_" + x for x in caps], nnp, int(uid), int(gid),
            runtime_default_seccomp() if prof == "RuntimeDefault" else None)


DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")

KINDS = {"pods": "Pod", "secrets": "Secret", "networkpolicies": "NetworkPolicy"}
# Each resource's group version: its URL prefix and its objects' apiVersion.
GROUP_VERSION = {"pods": "v1", "secrets": "v1", "networkpolicies": "networking.k8s.io/v1"}
NETPOL_GROUP = "networking.k8s.io"


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_obj(code, reason, message, details=None):
    st = {"kind": "Status", "apiVersion": "v1", "metadata": {},
          "status": "Failure", "message": message, "reason": reason,
          "code": code}
    if details:
        st["details"] = details
    return st


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.status = status_obj(code, reason, message, details)
        self.code = code
        self.headers = {}


def not_found(resource, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (resource, name),
                    {"name": name, "kind": resource})


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def parse_label_selector(text):
    """Equality-based selectors: k=v, k==v, k!=v, and bare k (exists)."""
    reqs = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        if "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "=", v.strip()))
        else:
            k = part[1:] if part.startswith("!") else part
            reqs.append((k.strip(), "!" if part.startswith("!") else "exists", None))
    for k, _, v in reqs:
        prefix = k.split("/")[0] if "/" in k else None
        if not k or k.count("/") > 1 or not LABEL_NAME.match(k.split("/")[-1]) or \
                len(k.split("/")[-1]) > 63 or (prefix is not None and not DNS1123_SUBDOMAIN.match(prefix)) or \
                (v is not None and (not LABEL_VALUE.match(v) or len(v) > 63 or "=" in v)):
            raise ApiError(400, "BadRequest", "unable to parse requirement: invalid label selector %r" % text)
    return reqs


def labels_match(labels, reqs):
    for k, op, v in reqs:
        have = labels.get(k)
        if op == "=" and have != v:
            return False
        if op == "!=" and have == v:
            return False
        if op == "exists" and have is None:
            return False
        if op == "!" and have is not None:
            return False
    return True


def parse_field_selector(text):
    reqs = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        neg = "!=" in part
        k, v = re.split(r"!=|==|=", part, 1)
        if k not in ("metadata.name", "metadata.namespace"):
            raise ApiError(400, "BadRequest",
                           'field label not supported: %s' % k)
        reqs.append((k, neg, v))
    return reqs


def fields_match(obj, reqs):
    for k, neg, v in reqs:
        have = obj["metadata"].get(k.split(".")[1])
        if (have == v) == neg:
            return False
    return True


# Discovery, as kubectl reads it before any other call (the legacy,
# unaggregated form, which kubectl falls back to): the core group and
# networking.k8s.io, with the resources and verbs this server serves.
RESOURCES = [
    {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
     "verbs": ["get"], "shortNames": ["ns"]},
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
     "shortNames": ["po"], "categories": ["all"]},
    {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret",
     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
]


NETPOL_RESOURCES = [
    {"name": "networkpolicies", "singularName": "networkpolicy", "namespaced": True,
     "kind": "NetworkPolicy", "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
     "shortNames": ["netpol"]},
]
NETPOL_GROUP_OBJ = {"name": NETPOL_GROUP,
                    "versions": [{"groupVersion": NETPOL_GROUP + "/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": NETPOL_GROUP + "/v1", "version": "v1"}}
DISCOVERY_PATHS = (["api"], ["api", "v1"], ["apis"], ["apis", NETPOL_GROUP],
                   ["apis", NETPOL_GROUP, "v1"])


def discovery(parts):
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
    if parts == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [NETPOL_GROUP_OBJ]}
    if parts == ["apis", NETPOL_GROUP]:
        return dict(NETPOL_GROUP_OBJ, kind="APIGroup", apiVersion="v1")
    if parts == ["apis", NETPOL_GROUP, "v1"]:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": NETPOL_GROUP + "/v1",
                "resources": NETPOL_RESOURCES}
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
            "resources": RESOURCES}


def age(ts):
    try:
        t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return "<unknown>"
    s = int((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())
    return "%ds" % s if s < 120 else "%dm" % (s // 60) if s < 7200 else "%dh" % (s // 3600)


def pod_row(o):
    st = o.get("status") or {}
    cs = st.get("containerStatuses") or []
    ready = sum(1 for c in cs if c.get("ready"))
    phase = "Terminating" if o["metadata"].get("deletionTimestamp") else st.get("phase", "Pending")
    return [o["metadata"]["name"], "%d/%d" % (ready, len((o.get("spec") or {}).get("containers") or [])),
            phase, sum(c.get("restartCount", 0) for c in cs), age(o["metadata"].get("creationTimestamp")),
            st.get("podIP") or "<none>", "fake-node" if st.get("podIP") else "<none>"]


def as_table(resource, objs, md, include):
    """A meta.k8s.io/v1 Table, what `kubectl get` asks for (Accept:
    application/json;as=Table;v=v1;g=meta.k8s.io)."""
    if resource == "pods":
        cols = [("Name", "string", "name"), ("Ready", "string", ""), ("Status", "string", ""),
                ("Restarts", "integer", ""), ("Age", "string", ""), ("IP", "string", ""),
                ("Node", "string", "")]
        row = pod_row
    elif resource == "networkpolicies":
        cols = [("Name", "string", "name"), ("Pod-Selector", "string", ""), ("Age", "string", "")]
        row = lambda o: [o["metadata"]["name"],
                         ",".join("%s=%s" % kv for kv in sorted(
                             ((o.get("spec") or {}).get("podSelector") or {}).get("matchLabels", {}).items()))
                         or "<none>", age(o["metadata"].get("creationTimestamp"))]
    else:
        cols = [("Name", "string", "name"), ("Type", "string", ""), ("Data", "integer", ""),
                ("Age", "string", "")]
        row = lambda o: [o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}),
                         age(o["metadata"].get("creationTimestamp"))]
    rows = []
    for o in objs:
        r = {"cells": row(o)}
        if include == "Object":
            r["object"] = o
        elif include != "None":
            r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": o["metadata"]}
        rows.append(r)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md,
            "columnDefinitions": [{"name": n, "type": t, "format": f, "description": n,
                                   "priority": 0 if n not in ("IP", "Node") else 1} for n, t, f in cols],
            "rows": rows}


def wants_table(accept):
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in (accept or "").split(","))


class Faults:
    """What tests can break, set through POST /_fake/faults.

    rules: answer the next `count` requests matching method + resource
        (+ name) with `status` (a Status object), e.g.
        {"method": "POST", "resource": "pods", "status": 500, "count": 1}.
        "delay_s": N answers only after N seconds (with `status`, or
        normally without it).
        Shorthands: {"create_pod_status": 500, "count": 1},
        {"create_secret_status": 403}, {"patch_secret_status": 422}.
        "retry_after": N sends a Retry-After: N header with the answer (as
        the API server does with 429 TooManyRequests). "watch": true or
        false makes a LIST rule match only watches, or only plain lists.
    never_ready: pods stay Pending and no sshd starts.
    ready_delay_s: the kubelet starts a pod only after this long.
    watch_max_s: every watch stream ends after this long (reconnects).
    watch_gone: the next N watches answer with a 410 Gone event.
    watch_error: {"code": 500, "count": N}: the next N watches answer
        with an ERROR event of that code (other than 410: etcd trouble).
    terminate_s: how long a deleted pod stays Terminating (at most its
        grace period; default 0.2 s, as sshd stops at once).
    gc_delay_s: how long after its owner the garbage collector removes
        a dependent (--gc; default 0.3 s).
    bookmark_s: a watch with allowWatchBookmarks=true gets a BOOKMARK
        event after this long without events (default 1 s; the real
        server sends one about every minute) and one as it ends.
    next_pod_ip: the next pod the kubelet starts gets this address (once),
        as a real CNI may hand a dead pod's IP to a new one.
    max_page: lists return at most this many items a page, whatever
        the limit (a server may return fewer).
    long_continue: continue tokens are 1,500+ characters with '=' and
        '/' in them, as base64 tokens have.
    continue_gone: the next N lists carrying a continue token answer
        410 Expired, as when the token's snapshot was compacted away.
    compact: the history window is as short as it gets: every watch
        request first compacts the history, so a watch from any
        resourceVersion older than the newest change answers 410 Gone.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self.rules = []
        self.never_ready = False
        self.watch_max_s = 5.0
        self.watch_gone = 0
        self.watch_error = None
        self.ready_delay_s = 0.0
        self.compact = False
        self.max_page = 0
        self.long_continue = False
        self.continue_gone = 0
        self.next_pod_ip = None
        self.terminate_s = 0.2
        self.gc_delay_s = 0.3
        self.bookmark_s = 1.0

    def set(self, body):
        count = int(body.get("count", 1))
        for key, method, res in (("create_pod_status", "POST", "pods"),
                                 ("create_secret_status", "POST", "secrets"),
                                 ("patch_secret_status", "PATCH", "secrets"),
                                 ("delete_pod_status", "DELETE", "pods"),
                                 ("get_pod_status", "GET", "pods"),
                                 ("list_pod_status", "LIST", "pods")):
            if key in body:
                self.rules.append({"method": method, "resource": res,
                                   "status": int(body[key]), "count": count,
                                   "message": body.get("message")})
        for r in body.get("rules", []):
            self.rules.append(dict(r, count=int(r.get("count", 1))))
        if "never_ready" in body:
            self.never_ready = bool(body["never_ready"])
        if "watch_max_s" in body:
            self.watch_max_s = float(body["watch_max_s"])
        if "watch_gone" in body:
            self.watch_gone = int(body["watch_gone"])
        if "watch_error" in body:
            self.watch_error = dict(body["watch_error"])
            self.watch_error.setdefault("count", 1)
        if "ready_delay_s" in body:
            self.ready_delay_s = float(body["ready_delay_s"])
        if "compact" in body:
            self.compact = bool(body["compact"])
        if "max_page" in body:
            self.max_page = int(body["max_page"])
        if "long_continue" in body:
            self.long_continue = bool(body["long_continue"])
        if "continue_gone" in body:
            self.continue_gone = int(body["continue_gone"])
        for key in ("terminate_s", "gc_delay_s", "bookmark_s"):
            if key in body:
                setattr(self, key, float(body[key]))
        if "next_pod_ip" in body:
            self.next_pod_ip = str(ipaddress.ip_address(body["next_pod_ip"]))

    def take(self, method, resource, name, watch=False):
        for r in self.rules:
            if r["count"] <= 0 or r["method"] != method or r["resource"] != resource:
                continue
            if r.get("name") and r["name"] != name:
                continue
            if "watch" in r and bool(r["watch"]) != watch:
                continue
            r["count"] -= 1
            if r.get("delay_s"):
                # A slow or hung API server: answer late (or never, for
                # the client's purposes).
                time.sleep(float(r["delay_s"]))
            if not r.get("status"):
                return None
            code = int(r["status"])
            reason = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden",
                      404: "NotFound", 409: "AlreadyExists", 422: "Invalid",
                      429: "TooManyRequests", 503: "ServiceUnavailable",
                      504: "Timeout"}.get(code, "InternalError")
            msg = r.get("message") or "injected fault: %s %s answered %d" % (method, resource, code)
            err = ApiError(code, reason, msg)
            if r.get("retry_after") is not None:
                err.headers["Retry-After"] = str(int(r["retry_after"]))
                err.status["details"] = {"retryAfterSeconds": int(r["retry_after"])}
            return err
        return None


class Store:
    """Objects, the resourceVersion clock and the event history watches
    replay. One lock guards it all; watchers wait on its condition."""

    HISTORY = 2000

    def __init__(self, namespaces):
        self.cond = threading.Condition()
        self.rv = 100
        self.objects = {res: {} for res in KINDS}  # (ns, name) -> obj
        self.events = []  # (rv, resource, type, obj)
        self.oldest_rv = self.rv
        self.namespaces = {ns: {"kind": "Namespace", "apiVersion": "v1",
                                "metadata": {"name": ns, "uid": str(uuid.uuid4()),
                                             "resourceVersion": "1",
                                             "creationTimestamp": now_rfc3339()},
                                "spec": {"finalizers": ["kubernetes"]},
                                "status": {"phase": "Active"}}
                           for ns in namespaces}

    def _bump(self, resource, etype, obj):
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, resource, etype, copy.deepcopy(obj)))
        if len(self.events) > self.HISTORY:
            drop = len(self.events) - self.HISTORY
            self.oldest_rv = self.events[drop - 1][0]
            del self.events[:drop]
        self.cond.notify_all()

    def compact(self):
        with self.cond:
            self.oldest_rv = self.rv
            self.events = []

    def check_ns(self, ns):
        if ns not in self.namespaces:
            raise not_found("namespaces", ns)

    def create(self, resource, ns, obj):
        with self.cond:
            self.check_ns(ns)
            name = obj["metadata"]["name"]
            if (ns, name) in self.objects[resource]:
                raise ApiError(409, "AlreadyExists",
                               '%s "%s" already exists' % (resource, name),
                               {"name": name, "kind": resource})
            md = obj["metadata"]
            md["namespace"] = ns
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_rfc3339()
            md.pop("deletionTimestamp", None)
            self.objects[resource][(ns, name)] = obj
            self._bump(resource, "ADDED", obj)
            return copy.deepcopy(obj)

    def get(self, resource, ns, name):
        with self.cond:
            self.check_ns(ns)
            obj = self.objects[resource].get((ns, name))
            if obj is None:
                raise not_found(resource, name)
            return copy.deepcopy(obj)

    def list(self, resource, ns, lsel, fsel):
        with self.cond:
            self.check_ns(ns)
            items = [copy.deepcopy(o) for (n, _), o in sorted(self.objects[resource].items())
                     if n == ns and labels_match(o["metadata"].get("labels") or {}, lsel)
                     and fields_match(o, fsel)]
            return items, str(self.rv)

    def replace(self, resource, ns, name, new, check_rv=True):
        with self.cond:
            old = self.objects[resource].get((ns, name))
            if old is None:
                raise not_found(resource, name)
            want = new.get("metadata", {}).get("resourceVersion")
            if check_rv and want and want != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict",
                               'Operation cannot be fulfilled on %s "%s": the object has been '
                               'modified; please apply your changes to the latest version and '
                               'try again' % (resource, name),
                               {"name": name, "kind": resource})
            md = new.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp"):
                if k in old["metadata"]:
                    md[k] = old["metadata"][k]
            self.objects[resource][(ns, name)] = new
            self._bump(resource, "MODIFIED", new)
            return copy.deepcopy(new)

    def update_status(self, ns, name, fn):
        """Kubelet-side change of a pod; returns False if it is gone."""
        with self.cond:
            obj = self.objects["pods"].get((ns, name))
            if obj is None:
                return False
            fn(obj)
            self._bump("pods", "MODIFIED", obj)
            return True

    def remove(self, resource, ns, name, uid=None):
        with self.cond:
            obj = self.objects[resource].get((ns, name))
            if obj is None or (uid and obj["metadata"]["uid"] != uid):
                return None
            del self.objects[resource][(ns, name)]
            self._bump(resource, "DELETED", obj)
            return copy.deepcopy(obj)

    def dependents(self, uid):
        with self.cond:
            return [(res, ns, name) for res, objs in self.objects.items()
                    for (ns, name), o in objs.items()
                    if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]


def check_body_ns(obj, ns):
    """As the API server: a body naming another namespace than the URL is
    refused, never moved."""
    md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    if md.get("namespace") not in (None, "", ns):
        raise ApiError(400, "BadRequest", "the namespace of the provided object does not match "
                       "the namespace sent on the request")


def validate(resource, obj):
    """The checks the real API server makes that the driver could trip."""
    causes = []
    md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = md.get("name", "")
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        causes.append(("metadata.name", "Invalid value: %r: a lowercase RFC 1123 subdomain must "
                       "consist of lower case alphanumeric characters, '-' or '.'" % name))
    for k, v in (md.get("labels") or {}).items():
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            causes.append(("metadata.labels", "Invalid value: %r: a valid label must be an empty "
                           "string or consist of alphanumeric characters, '-', '_' or '.'" % v))
        if len(k.split("/")[-1]) > 63 or not LABEL_NAME.match(k.split("/")[-1]):
            causes.append(("metadata.labels", "Invalid value: %r: name part must be valid" % k))
    if resource == "pods":
        spec = obj.get("spec") or {}
        containers = spec.get("containers") or []
        if not containers:
            causes.append(("spec.containers", "Required value"))
        vols = {v.get("name") for v in spec.get("volumes") or []}
        for i, c in enumerate(containers):
            if not c.get("name") or not DNS1123_LABEL.match(c.get("name", "")):
                causes.append(("spec.containers[%d].name" % i, "Required value"))
            if not c.get("image"):
                causes.append(("spec.containers[%d].image" % i, "Required value"))
            for part in ("requests", "limits"):
                for k, q in ((c.get("resources") or {}).get(part) or {}).items():
                    if not isinstance(q, str) or not QUANTITY.match(q):
                        causes.append(("spec.containers[%d].resources.%s[%s]" % (i, part, k),
                                       "Invalid value: %r: quantities must match the regular "
                                       "expression" % q))
            for m in c.get("volumeMounts") or []:
                if m.get("name") not in vols:
                    causes.append(("spec.containers[%d].volumeMounts.name" % i,
                                   "Not found: %r" % m.get("name")))
                if not str(m.get("mountPath", "")).startswith("/"):
                    causes.append(("spec.containers[%d].volumeMounts.mountPath" % i,
                                   "Invalid value: must be an absolute path"))
    elif resource == "networkpolicies":
        causes += netpol_causes(obj.get("spec"))
    elif resource == "secrets":
        for k, v in (obj.get("data") or {}).items():
            try:
                base64.b64decode(v, validate=True)
            except Exception:
                causes.append(("data[%s]" % k, "Invalid value: illegal base64 data"))
    if causes:
        kind = KINDS[resource]
        msg = '%s "%s" is invalid: %s' % (kind, name, ", ".join("%s: %s" % c for c in causes))
        raise ApiError(422, "Invalid", msg,
                       {"name": name, "kind": kind,
                        "causes": [{"field": f, "message": m, "reason": "FieldValueInvalid"}
                                   for f, m in causes]})


def netpol_causes(spec):
    """A NetworkPolicy's spec as the API server's validation sees it: a
    podSelector, known policyTypes, ipBlocks whose except ranges lie
    strictly inside their cidr, ports of a known protocol."""
    if not isinstance(spec, dict):
        return [("spec", "Required value")]
    causes = []
    if not isinstance(spec.get("podSelector"), dict):
        causes.append(("spec.podSelector", "Required value"))
    for t in spec.get("policyTypes") or []:
        if t not in ("Ingress", "Egress"):
            causes.append(("spec.policyTypes", 'Unsupported value: %r: supported values: '
                           '"Ingress", "Egress"' % t))
    for i, rule in enumerate(spec.get("egress") or []):
        for j, peer in enumerate(rule.get("to") or []):
            blk = peer.get("ipBlock")
            if blk is None:
                continue
            where = "spec.egress[%d].to[%d].ipBlock" % (i, j)
            try:
                net = ipaddress.ip_network(blk.get("cidr", ""))
            except ValueError:
                causes.append((where + ".cidr", "Invalid value: %r" % blk.get("cidr")))
                continue
            for e in blk.get("except") or []:
                try:
                    ex = ipaddress.ip_network(e)
                    inside = ex.version == net.version and ex.subnet_of(net) and ex != net
                except ValueError:
                    inside = False
                if not inside:
                    causes.append((where + ".except", "Invalid value: %r: must be a strict subset "
                                   "of `cidr`" % e))
        for p in rule.get("ports") or []:
            if p.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                causes.append(("spec.egress[%d].ports.protocol" % i, "Unsupported value"))
    return causes


class Kubelet:
    """Runs each pod's container with runc, from the sandbox rootfs, with
    the pod's securityContext, on an address in 127.0.0.0/8."""

    def __init__(self, server):
        self.srv = server
        self.lock = threading.Lock()
        self.procs = {}  # uid -> Popen of `runc run`
        self.pids = {}   # uid -> the container's PID 1 (host pid)
        self.ips = {}    # uid -> ip
        self.runc_root = os.path.join(server.state, "runc")
        # A base derived from the port keeps two fakes on one machine apart.
        self.net = ipaddress.ip_address("127.%d.0.0" % (100 + server.port % 100))
        self.next_ip = 10

    def alloc_ip(self):
        with self.lock:
            used = set(self.ips.values())
            want, self.srv.faults.next_pod_ip = self.srv.faults.next_pod_ip, None
            if want is not None:
                if want in used:
                    raise RuntimeError("next_pod_ip %s is in use" % want)
                return want
            for _ in range(60000):
                self.next_ip = 10 + (self.next_ip - 9) % 60000
                ip = str(self.net + self.next_ip)
                if ip in used or ip.endswith(".0") or ip.endswith(".255"):
                    continue
                with socket.socket() as s:
                    try:
                        s.bind((ip, 22))
                    except OSError:
                        continue
                return ip
        raise RuntimeError("no free pod address")

    def start(self, pod):
        t = threading.Thread(target=self._run, args=(copy.deepcopy(pod),), daemon=True)
        t.start()

    def _set(self, pod, fn):
        md = pod["metadata"]
        return self.srv.store.update_status(md["namespace"], md["name"], fn)

    def _run(self, pod):
        md = pod["metadata"]
        uid, ns = md["uid"], md["namespace"]
        if self.srv.faults.never_ready:
            return
        if self.srv.faults.ready_delay_s > 0:
            time.sleep(self.srv.faults.ready_delay_s)
        pdir = os.path.join(self.srv.state, "pods", uid)
        try:
            binds = self._volumes(pod, pdir)
        except (KeyError, ApiError) as e:
            # Like a kubelet whose secret volume cannot mount: the pod stays
            # Pending (the real one retries; so does nothing here).
            self._set(pod, lambda o: o["status"].update(
                conditions=[{"type": "PodScheduled", "status": "True"},
                            {"type": "Ready", "status": "False",
                             "reason": "ContainersNotReady"}],
                message="MountVolume.SetUp failed: %s" % e))
            return
        ip = self.alloc_ip()
        with self.lock:
            if self.srv.stopping:
                return
            self.ips[uid] = ip
        c = pod["spec"]["containers"][0]
        cmd = (c.get("command") or ["/usr/sbin/sshd"]) + \
            (c.get("args") or (["-D", "-e"] if not c.get("command") else []))
        # The pod's own network namespace, emulated: the container shares
        # the host's (loopback only) and sshd binds the pod IP.
        cmd += ["-o", "ListenAddress=" + ip]
        try:
            bundle = self._bundle(pod, c, cmd, pdir, binds)
        except ApiError as e:
            # As a kubelet that cannot create the container
            # (CreateContainerConfigError): the pod stays Pending.
            self._set(pod, lambda o: o["status"].update(
                conditions=[{"type": "PodScheduled", "status": "True"},
                            {"type": "Ready", "status": "False",
                             "reason": "ContainersNotReady"}],
                message="CreateContainerConfigError: %s" % e.message))
            with self.lock:
                self.ips.pop(uid, None)
            return
        log = open(os.path.join(pdir, "container.log"), "ab")
        pidfile = os.path.join(pdir, "container.pid")
        with self.lock:
            if self.srv.stopping:
                log.close()
                return
            proc = subprocess.Popen(
                self.runc("run", "--bundle", bundle, "--pid-file", pidfile,
                          self.cid(uid)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            self.procs[uid] = proc
        log.close()
        # The container's process (sshd once the start script execs it):
        # what /_fake/state reports and tests read /proc/<pid>/status of.
        while proc.poll() is None and not os.path.exists(pidfile):
            time.sleep(0.01)
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
            with self.lock:
                if uid in self.procs:
                    self.pids[uid] = pid
        except (OSError, ValueError):
            pass
        alive = self._set(pod, lambda o: o["status"].update(
            phase="Running", podIP=ip, podIPs=[{"ip": ip}], hostIP="127.0.0.1",
            startTime=now_rfc3339(),
            conditions=[{"type": "PodScheduled", "status": "True"},
                        {"type": "Initialized", "status": "True"},
                        {"type": "ContainersReady", "status": "False"},
                        {"type": "Ready", "status": "False"}],
            containerStatuses=[{"name": c["name"], "image": c["image"], "ready": False,
                                "restartCount": 0, "started": True,
                                "state": {"running": {"startedAt": now_rfc3339()}}}]))
        if not alive:
            self.kill(uid)
            return
        # The readiness probe: tcpSocket 22, as often as the fake can.
        while proc.poll() is None and not self.srv.stopping:
            try:
                socket.create_connection((ip, 22), 0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            def ready(o):
                for cond in o["status"]["conditions"]:
                    if cond["type"] in ("Ready", "ContainersReady"):
                        cond["status"] = "True"
                o["status"]["containerStatuses"][0]["ready"] = True
            if not self._set(pod, ready):
                self.kill(uid)
                return
        code = proc.wait()
        with self.lock:
            deleted = uid not in self.procs
        if not deleted:
            # restartPolicy Never: the container exited, the pod failed.
            def failed(o):
                o["status"]["phase"] = "Failed"
                for cond in o["status"]["conditions"]:
                    if cond["type"] in ("Ready", "ContainersReady"):
                        cond["status"] = "False"
                o["status"]["containerStatuses"][0].update(
                    ready=False, state={"terminated": {"exitCode": code, "reason": "Error"}})
            self._set(pod, failed)
            self._runc_quiet("delete", "--force", self.cid(uid))

    # -- runc ----------------------------------------------------------------
    def runc(self, *args):
        return ["runc", "--root", self.runc_root] + list(args)

    def _runc_quiet(self, *args):
        subprocess.run(self.runc(*args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)

    def cid(self, uid):
        return "pod-" + uid

    def _bundle(self, pod, c, cmd, pdir, binds):
        """An OCI bundle for the pod's container, as containerd would make
        it from the pod spec: the image's rootfs (read-only here, since it
        is shared), the pod's securityContext (capabilities, no new
        privileges, user and group, seccomp) and its volumes."""
        caps, nnp, uid, gid, seccomp = effective_security(pod, c)
        # Every mount point must already exist in the image or in a folder
        # of the pod's own: runc would otherwise create it in the shared
        # rootfs, which is never written.
        own = ["/dev", "/tmp", "/run"] + [dst for _, dst, _ in binds]
        for src, dst, _ in binds:
            inside = any(dst.startswith(o + "/") for o in own)
            if not inside and not os.path.lexists(self.srv.rootfs + dst):
                raise ApiError(422, "Invalid", "mount point %s does not exist in the image" % dst)
        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666",
                         "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777", "size=64m"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=755", "size=16m"]},
            # the image's /run/sshd (deploy/sandbox/Dockerfile)
            {"destination": "/run/sshd", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "noexec", "mode=755", "size=1m"]}]
        for src, dst, ro in binds:
            mounts.append({"destination": dst, "type": "bind", "source": src,
                           "options": ["rbind", "ro" if ro else "rw",
                                       "nosuid", "nodev"]})
        linux = {
            "cgroupsPath": "/pico-fake-k8s/%d-%s" % (self.srv.port, pod["metadata"]["uid"]),
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            # no network namespace: the pod's address is one of the host's
            # loopback addresses (see alloc_ip)
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"]}
        if seccomp is not None:
            linux["seccomp"] = seccomp
        spec = {
            "ociVersion": "1.0.2",
            "root": {"path": self.srv.rootfs, "readonly": True},
            "hostname": pod["spec"].get("hostname") or pod["metadata"]["name"][:63],
            "process": {
                "terminal": False, "user": {"uid": uid, "gid": gid}, "args": cmd,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "HOSTNAME=" + (pod["spec"].get("hostname") or "")] +
                       ["%s=%s" % (e["name"], e.get("value", "")) for e in c.get("env") or []],
                "cwd": c.get("workingDir") or "/",
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                                 "inheritable": [], "ambient": []},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
                "noNewPrivileges": nnp},
            "mounts": mounts,
            "linux": linux}
        bundle = os.path.join(pdir, "bundle")
        os.makedirs(bundle, exist_ok=True)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f, indent=1)
        return bundle

    def _volumes(self, pod, pdir):
        """Lays out the pod folder; returns (source, mountPath, readOnly)
        binds, in mount order."""
        os.makedirs(pdir, exist_ok=True)
        ns = pod["metadata"]["namespace"]
        vols = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        binds = []
        # The image's own files: the Dockerfile copies sshd_config over
        # Debian's. /etc/ssh is copied per pod so mounts below it work.
        etc_ssh = os.path.join(pdir, "etc-ssh")
        shutil.copytree(os.path.join(self.srv.rootfs, "etc", "ssh"), etc_ssh,
                        symlinks=True, dirs_exist_ok=True)
        if self.srv.image_files:
            shutil.copy(os.path.join(self.srv.image_files, "sshd_config"),
                        os.path.join(etc_ssh, "sshd_config"))
        binds.append((etc_ssh, "/etc/ssh", False))
        for m in pod["spec"]["containers"][0].get("volumeMounts") or []:
            v = vols[m["name"]]
            path = m["mountPath"].rstrip("/")
            src = os.path.join(pdir, "vol-" + m["name"])
            if "secret" in v:
                sec = self.srv.store.get("secrets", ns, v["secret"]["secretName"])
                self._write_secret(sec, v["secret"], src)
            elif "emptyDir" in v:
                os.makedirs(src, exist_ok=True)
                os.chmod(src, 0o777)
            else:
                continue
            binds.append((src, path, bool(m.get("readOnly"))))
        # A container's root filesystem is its own: give the user's home a
        # private copy so the shared rootfs is never written.
        home = os.path.join(self.srv.rootfs, "home", "sandbox")
        if os.path.isdir(home):
            shutil.copytree(home, os.path.join(pdir, "home"), symlinks=True,
                            dirs_exist_ok=True)
            binds.append((os.path.join(pdir, "home"), "/home/sandbox", False))
        return binds

    @staticmethod
    def _write_secret(sec, vol, dest):
        """As the kubelet's atomic writer lays a secret volume out: the
        top folder (a tmpfs there) is mode 1777; the files live in a
        "..<timestamp>" folder, "..data" links to it, and each key is a
        symlink "<key> -> ..data/<key>". sshd's StrictModes refuses
        anything found through the 1777 folder."""
        os.makedirs(dest, exist_ok=True)
        os.chmod(dest, 0o1777)
        data = sec.get("data") or {}
        default_mode = vol.get("defaultMode", 0o644)
        items = vol.get("items") or [{"key": k, "path": k} for k in data]
        ts = "..%s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y_%m_%d_%H_%M_%S.%f")
        os.makedirs(os.path.join(dest, ts), exist_ok=True)
        os.chmod(os.path.join(dest, ts), 0o755)
        for it in items:
            if it["key"] not in data:
                raise KeyError("secret %s has no key %s" % (sec["metadata"]["name"], it["key"]))
            path = os.path.join(dest, ts, it["path"])
            with open(path, "wb") as f:
                f.write(base64.b64decode(data[it["key"]]))
            os.chmod(path, it.get("mode", default_mode))
        os.symlink(ts, os.path.join(dest, "..data"))
        for it in items:
            os.symlink(os.path.join("..data", it["path"]), os.path.join(dest, it["path"]))

    def kill(self, uid):
        with self.lock:
            proc = self.procs.pop(uid, None)
            self.ips.pop(uid, None)
            self.pids.pop(uid, None)
        if proc is not None:
            # SIGKILL to the container's PID 1 takes its whole PID
            # namespace along; `runc run` then reaps it and exits, and
            # delete removes whatever is left of the container (its state,
            # its cgroup).
            self._runc_quiet("kill", self.cid(uid), "KILL")
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._runc_quiet("delete", "--force", self.cid(uid))
        pdir = os.path.join(self.srv.state, "pods", uid)
        shutil.rmtree(pdir, ignore_errors=True)

    def crash(self, uid):
        """The container dies (as if OOM-killed)."""
        with self.lock:
            if uid not in self.procs:
                return False
        self._runc_quiet("kill", self.cid(uid), "KILL")
        return True

    def sweep(self):
        """Deletes every container under this fake's runc root, e.g. those
        of an earlier run that was SIGKILLed, and their cgroups' parent."""
        r = subprocess.run(self.runc("list", "-q"), capture_output=True, text=True, timeout=30)
        for cid in r.stdout.split():
            self._runc_quiet("delete", "--force", cid)
        # The cgroups' common parent, once no fake on the machine uses it
        # (rmdir of a cgroup folder with children fails: another fake's).
        for h in os.listdir("/sys/fs/cgroup"):
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", h, "pico-fake-k8s"))
            except OSError:
                pass

    def kill_all(self):
        with self.lock:
            uids = list(self.procs)
        for uid in uids:
            self.kill(uid)
        self.sweep()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver/1.0"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fake-k8s: %s\n" % (fmt % args))

    # -- plumbing ----------------------------------------------------------
    def send_json(self, code, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise ApiError(400, "BadRequest", "the body of the request was in an "
                           "unknown format: %s" % e)
        # Every body a client sent, for tests/deploy/k8s_schema.py to
        # validate against the upstream schemas (<state>/bodies.jsonl).
        if not self.path.startswith("/_fake/"):
            line = json.dumps({"method": self.command, "path": urllib.parse.urlsplit(self.path).path,
                               "content_type": self.headers.get("Content-Type"),
                               "user_agent": self.headers.get("User-Agent"), "body": body})
            with self.server.body_lock, open(os.path.join(self.server.state, "bodies.jsonl"), "a") as f:
                f.write(line + "\n")
        return body

    def handle_one(self, method):
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        try:
            if parts[0] == "_fake":
                return self.control(method, parts[1:])
            tok = self.server.token
            if tok and self.headers.get("Authorization") != "Bearer " + tok:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self.server.requests.append((method, url.path, q, time.time()))
            if method == "GET" and parts == ["version"]:
                return self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake",
                                            "platform": "linux/amd64"})
            if method == "GET" and parts in DISCOVERY_PATHS:
                return self.send_json(200, discovery(parts))
            if len(parts) >= 4 and parts[:3] == ["api", "v1", "namespaces"]:
                return self.api(method, parts[3], parts[4:], q, "v1")
            if len(parts) >= 5 and parts[:4] == ["apis", NETPOL_GROUP, "v1", "namespaces"]:
                return self.api(method, parts[4], parts[5:], q, NETPOL_GROUP + "/v1")
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        except ApiError as e:
            self.send_json(e.code, e.status, e.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = lambda self: self.handle_one("GET")
    do_POST = lambda self: self.handle_one("POST")
    do_PUT = lambda self: self.handle_one("PUT")
    do_PATCH = lambda self: self.handle_one("PATCH")
    do_DELETE = lambda self: self.handle_one("DELETE")

    # -- the API -----------------------------------------------------------
    def api(self, method, ns, rest, q, group_version):
        store = self.server.store
        if not rest:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            with store.cond:
                nsobj = store.namespaces.get(ns)
            if nsobj is None:
                raise not_found("namespaces", ns)
            return self.send_json(200, nsobj)
        resource = rest[0]
        if GROUP_VERSION.get(resource) != group_version or len(rest) > 2:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) == 2 else None
        kind = KINDS[resource]
        fault_method = "LIST" if method == "GET" and name is None else method
        fault = self.server.faults.take(fault_method, resource, name,
                                        q.get("watch") in ("1", "true"))
        if fault:
            raise fault
        if method == "POST" and name is None:
            obj = self.read_body()
            if not isinstance(obj, dict):
                raise ApiError(400, "BadRequest", "the body of the request is not an object")
            if obj.get("kind", kind) != kind:
                raise ApiError(400, "BadRequest", "the kind %r does not match %s" % (obj.get("kind"), kind))
            if obj.get("apiVersion", group_version) != group_version:
                raise ApiError(400, "BadRequest", "the API version in the data (%s) does not match "
                               "the expected API version (%s)" % (obj.get("apiVersion"), group_version))
            obj.setdefault("metadata", {})
            check_body_ns(obj, ns)
            obj["kind"], obj["apiVersion"] = kind, group_version
            validate(resource, obj)
            if resource == "pods":
                obj["status"] = {"phase": "Pending", "qosClass": "Guaranteed",
                                 "conditions": [{"type": "PodScheduled", "status": "True"}]}
                obj["spec"].setdefault("restartPolicy", "Always")
            if resource == "secrets":
                obj.setdefault("type", "Opaque")
            created = store.create(resource, ns, obj)
            if resource == "pods":
                self.server.kubelet.start(created)
            return self.send_json(201, created)
        if method == "GET" and name is None:
            lsel = parse_label_selector(q.get("labelSelector"))
            fsel = parse_field_selector(q.get("fieldSelector"))
            if q.get("watch") in ("1", "true"):
                return self.watch(resource, ns, lsel, fsel, q)
            items, rv = store.list(resource, ns, lsel, fsel)
            # limit/continue: the token is the offset, opaque to clients.
            faults = self.server.faults
            token = q.get("continue") or ""
            if token and faults.continue_gone > 0:
                faults.continue_gone -= 1
                raise ApiError(410, "Expired", "The provided continue parameter is too old "
                               "to display a consistent list result. You can start a new list "
                               "without the continue parameter.")
            if token.startswith("pad/"):
                token = token.split("=")[-1]
            start = int(token or 0)
            limit = int(q.get("limit") or 0)
            if faults.max_page:
                limit = min(limit or faults.max_page, faults.max_page)
            md = {"resourceVersion": rv}
            if limit and start + limit < len(items):
                md["continue"] = str(start + limit)
                if faults.long_continue:
                    md["continue"] = "pad/" + "x" * 1500 + "+/=" + md["continue"]
                md["remainingItemCount"] = len(items) - start - limit
            items = items[start:start + limit] if limit else items[start:]
            if wants_table(self.headers.get("Accept")):
                return self.send_json(200, as_table(resource, items, md, q.get("includeObject")))
            return self.send_json(200, {"kind": kind + "List", "apiVersion": group_version,
                                        "metadata": md, "items": items})
        if name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        if method == "GET":
            obj = store.get(resource, ns, name)
            if wants_table(self.headers.get("Accept")):
                return self.send_json(200, as_table(resource, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                                                    q.get("includeObject")))
            return self.send_json(200, obj)
        if method in ("PUT", "PATCH"):
            body = self.read_body()
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body of the request is not an object")
            cur = store.get(resource, ns, name)
            if method == "PATCH":
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype not in ("application/merge-patch+json",
                                 "application/strategic-merge-patch+json"):
                    raise ApiError(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - "
                                   "accepted media types include: application/merge-patch+json, "
                                   "application/strategic-merge-patch+json")
                new = merge_patch(cur, body)
                new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            else:
                new = body
                if new.get("metadata", {}).get("name") != name:
                    raise ApiError(400, "BadRequest", "the name of the object (%s) does not match "
                                   "the name on the URL (%s)" % (new.get("metadata", {}).get("name"), name))
            check_body_ns(body, ns)
            new["kind"], new["apiVersion"] = kind, group_version
            if resource == "pods":
                if new.get("spec") != cur.get("spec"):
                    raise ApiError(422, "Invalid", 'Pod "%s" is invalid: spec: Forbidden: pod '
                                   'updates may not change fields other than image' % name)
                new["status"] = cur["status"]
            validate(resource, new)
            return self.send_json(200, store.replace(resource, ns, name, new))
        if method == "DELETE":
            opts = self.read_body() or {}
            if not isinstance(opts, dict):
                raise ApiError(400, "BadRequest", "the body of the request is not DeleteOptions")
            obj = store.get(resource, ns, name)
            if resource == "pods":
                return self.delete_pod(obj, opts, q)
            store.remove(resource, ns, name)
            self.collect(obj["metadata"]["uid"])
            return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                        "status": "Success",
                                        "details": {"name": name, "kind": resource,
                                                    "uid": obj["metadata"]["uid"]}})
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")

    def delete_pod(self, obj, opts, q):
        """Graceful deletion, as the API server and kubelet do it: the pod
        is marked (deletionTimestamp, deletionGracePeriodSeconds from the
        DeleteOptions body, else the query, else the pod's
        terminationGracePeriodSeconds, else 30) and stays, Terminating,
        while the kubelet stops its container (SIGKILL at the end of the
        grace period); only then is it removed. Grace 0 removes at once."""
        store, md = self.server.store, obj["metadata"]
        ns, name, uid = md["namespace"], md["name"], md["uid"]
        grace = opts.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
        if grace is None:
            grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        grace = max(0, int(grace))
        if md.get("deletionTimestamp"):
            return self.send_json(200, obj)  # already terminating
        store.update_status(ns, name, lambda o: o["metadata"].update(
            deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=grace))
        obj = store.get("pods", ns, name)

        def stop():
            # sshd stops at once on SIGTERM; the kubelet then reports and
            # the API server removes the object.
            if grace:
                time.sleep(min(grace, self.server.faults.terminate_s))
            self.server.kubelet.kill(uid)
            if store.remove("pods", ns, name, uid) is not None:
                self.collect(uid)
        if grace == 0:
            stop()
        else:
            threading.Thread(target=stop, daemon=True).start()
        return self.send_json(200, obj)

    def collect(self, uid):
        """The garbage collector (--gc): dependents of a removed owner go
        a little later, not in the same request."""
        if not self.server.gc:
            return
        store = self.server.store

        def run():
            time.sleep(self.server.faults.gc_delay_s)
            for res, dns, dname in store.dependents(uid):
                store.remove(res, dns, dname)
        threading.Thread(target=run, daemon=True).start()

    def watch(self, resource, ns, lsel, fsel, q):
        store, faults = self.server.store, self.server.faults
        rv = q.get("resourceVersion")
        timeout = float(q.get("timeoutSeconds") or 1800)
        end = time.monotonic() + min(timeout, faults.watch_max_s)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(etype, obj):
            line = json.dumps({"type": etype, "object": obj}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()

        try:
            with store.cond:
                store.check_ns(ns)
                if faults.compact:
                    store.compact()
                gone = faults.watch_gone > 0
                if gone:
                    faults.watch_gone -= 1

                if rv not in (None, "", "0"):
                    if not rv.isdigit():
                        gone = True
                    elif int(rv) < store.oldest_rv:
                        gone = True
                    last = int(rv) if rv.isdigit() else 0
                    initial = []
                else:
                    # No resourceVersion: synthetic ADDED for what exists.
                    last = store.rv
                    initial = [copy.deepcopy(o) for (n, _), o in sorted(store.objects[resource].items())
                               if n == ns and labels_match(o["metadata"].get("labels") or {}, lsel)
                               and fields_match(o, fsel)]
                werr = faults.watch_error
                if werr and werr["count"] > 0 and not gone:
                    werr["count"] -= 1
                else:
                    werr = None
            if gone:
                send("ERROR", status_obj(410, "Expired", "too old resource version: %s (%d)"
                                         % (rv, store.oldest_rv)))
                return self.end_chunks()
            if werr:
                code = int(werr["code"])
                send("ERROR", status_obj(code, werr.get("reason", "InternalError"),
                                         werr.get("message", "etcdserver: leader changed")))
                return self.end_chunks()
            for o in initial:
                send("ADDED", o)
            bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
            quiet_since = time.monotonic()

            def bookmark():
                send("BOOKMARK", {"kind": KINDS[resource], "apiVersion": GROUP_VERSION[resource],
                                  "metadata": {"resourceVersion": str(last)}})
            while True:
                with store.cond:
                    pending = [e for e in store.events if e[0] > last]
                    if not pending:
                        left = end - time.monotonic()
                        if left <= 0 or self.server.stopping:
                            if bookmarks:
                                last = store.rv
                        elif bookmarks and time.monotonic() - quiet_since >= faults.bookmark_s:
                            last = store.rv
                        else:
                            store.cond.wait(min(left, 0.5, faults.bookmark_s))
                            continue
                if not pending:
                    # No event for a while, or the stream's end: tell the
                    # client how far it has got.
                    if bookmarks:
                        bookmark()
                        quiet_since = time.monotonic()
                    if time.monotonic() >= end or self.server.stopping:
                        break
                    continue
                quiet_since = time.monotonic()
                last = pending[-1][0]
                for _, res, etype, obj in pending:
                    if res != resource or obj["metadata"]["namespace"] != ns:
                        continue
                    if labels_match(obj["metadata"].get("labels") or {}, lsel) and fields_match(obj, fsel):
                        send(etype, obj)
            self.end_chunks()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- test control --------------------------------------------------------
    def control(self, method, parts):
        srv = self.server
        if parts == ["faults"] and method == "POST":
            srv.faults.set(self.read_body() or {})
            return self.send_json(200, {"ok": True})
        if parts == ["faults"] and method == "DELETE":
            srv.faults.reset()
            return self.send_json(200, {"ok": True})
        if parts == ["compact"] and method == "POST":
            srv.store.compact()
            return self.send_json(200, {"ok": True})
        if parts == ["state"] and method == "GET":
            with srv.store.cond:
                st = {res: [copy.deepcopy(o) for o in objs.values()]
                      for res, objs in srv.store.objects.items()}
            with srv.kubelet.lock:
                st["sshd"] = dict(srv.kubelet.pids)
            st["runc_root"] = srv.kubelet.runc_root
            st["requests"] = list(srv.requests)[-500:]
            st["request_count"] = len(srv.requests)
            return self.send_json(200, st)
        if len(parts) == 3 and parts[0] == "pods" and parts[2] == "crash" and method == "POST":
            # The container dies (as if OOM-killed); the pod turns Failed.
            uid = parts[1]
            if not srv.kubelet.crash(uid):
                raise ApiError(404, "NotFound", "no running pod with uid " + uid)
            return self.send_json(200, {"ok": True})
        raise ApiError(404, "NotFound", "unknown control endpoint")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--rootfs", default=os.path.join(ROOT, "var", "images", "sandbox_latest", "rootfs"))
    ap.add_argument("--image-files", default=os.path.join(ROOT, "deploy", "sandbox"),
                    help="folder with the files the sandbox Dockerfile copies in (sshd_config)")
    ap.add_argument("--state", default=None, help="per-pod folders (default var/fake_k8s-<port>)")
    ap.add_argument("--namespace", action="append", default=None)
    ap.add_argument("--token", default=None, help="require this bearer token")
    ap.add_argument("--gc", action="store_true",
                    help="garbage-collect dependents (ownerReferences) of deleted pods")
    ap.add_argument("--tls-cert", default=None, help="serve https with this certificate")
    ap.add_argument("--tls-key", default=None)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    if not ipaddress.ip_address(a.address).is_loopback:
        sys.exit("fake-k8s: loopback addresses only")
    if not os.path.isfile(os.path.join(a.rootfs, "usr", "sbin", "sshd")):
        sys.exit("fake-k8s: no sandbox rootfs with sshd at %s (make rootfs)" % a.rootfs)

    srv = Server((a.address, a.port), Handler)
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        # The handshake happens in the handler thread, not in accept().
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
    srv.port = a.port
    srv.verbose = a.verbose
    srv.token = a.token
    srv.gc = a.gc
    srv.rootfs = os.path.abspath(a.rootfs)
    srv.image_files = a.image_files
    srv.state = os.path.abspath(a.state or os.path.join(ROOT, "var", "fake_k8s-%d" % a.port))
    srv.stopping = False
    srv.requests = []
    srv.body_lock = threading.Lock()
    srv.faults = Faults()
    srv.store = Store(a.namespace or ["pico-sandboxes", "default"])
    os.makedirs(os.path.join(srv.state, "pods"), exist_ok=True)
    srv.kubelet = Kubelet(srv)
    srv.kubelet.sweep()

    def stop(signum, frame):
        srv.stopping = True
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("fake-k8s: listening on http://%s:%d" % (a.address, a.port), flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        srv.stopping = True
        srv.kubelet.kill_all()
        srv.server_close()


if __name__ == "__main__":
    main()
