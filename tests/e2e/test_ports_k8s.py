"""Ports tunnels and HTTP preview on the kubernetes runtime: the module
connects to <pod IP>:<port> directly (no port relay; the NetworkPolicy
lets the server pods reach any TCP port of a sandbox pod). The fake API
server's pods are runc containers sharing the host's network with an
address of their own in 127.0.0.0/8, so an app there listens on its pod
IP (on a real cluster 0.0.0.0 in the pod's own namespace does)."""

import subprocess

from test_k8s import (READY_TIMEOUT_S, fake, kstack, no_faults,  # noqa: F401
                      prerequisites, run, ssh_over_tunnel)
from test_ports import connect_port, body_of, echo_roundtrip

ECHO = ("import socketserver\n"
        "class E(socketserver.BaseRequestHandler):\n"
        "    def handle(self):\n"
        "        while True:\n"
        "            d = self.request.recv(65536)\n"
        "            if not d: break\n"
        "            self.request.sendall(d)\n"
        "socketserver.ThreadingTCPServer.allow_reuse_address = True\n"
        "socketserver.ThreadingTCPServer(('%s', %d), E).serve_forever()\n")


def test_ports_and_preview_reach_the_pod(kstack, fake):
    sid = kstack.create(ttl=600)["session_id"]
    try:
        ep = kstack.redis_cli("HGET", "pico:session:" + sid, "endpoint")
        ip = ep.rsplit(":", 1)[0]
        client, _ = ssh_over_tunnel(kstack, sid)
        sftp = client.open_sftp()
        with sftp.open("/tmp/echo.py", "w") as f:
            f.write(ECHO % (ip, 7000))
        sftp.close()
        _, _, rc = run(client, "mkdir -p /tmp/www && echo pod-page > /tmp/www/index.html")
        assert rc == 0
        run(client, "setsid nohup python3 /tmp/echo.py >/dev/null 2>&1 </dev/null &")
        run(client, "setsid nohup python3 -m http.server 8000 --bind %s --directory "
                    "/tmp/www >/dev/null 2>&1 </dev/null &" % ip)
        probe = ("python3 -c 'import socket,time\n"
                 "for p in (7000, 8000):\n"
                 "  for i in range(300):\n"
                 "    try: socket.create_connection((\"%s\", p), 1).close(); break\n"
                 "    except OSError: time.sleep(0.05)\n'" % ip)
        run(client, probe)
        client.close()

        s, status, _, _ = connect_port(kstack, sid, 7000)
        try:
            assert " 200 " in status, status
            assert echo_roundtrip(s, b"pod echo" * 1000) == b"pod echo" * 1000
        finally:
            s.close()
        s, status, head, rest = connect_port(kstack, sid, 7001)
        try:
            assert " 502 " in status, status
            assert "Nothing listens on port 7001" in body_of(s, head, rest)
        finally:
            s.close()
        p = subprocess.run(["curl", "-s", "--max-time", "20",
                            "%s/v1/sessions/%s/ports/8000/" % (kstack.url, sid)],
                           capture_output=True, text=True, timeout=60)
        assert p.stdout.strip() == "pod-page", p.stdout
    finally:
        assert kstack.delete(sid).status == 200
