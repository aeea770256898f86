"""Apps run inside a sandbox for the ports and preview tests: a TCP echo
server, `python -m http.server`, a small WebSocket echo app. Commands
reach the sandbox over SSH through its endpoint socket (as test_sandbox.py
does), and the apps are started detached so they outlive that connection.
"""

import os

from pico_stack import wait_for
from test_sandbox import Sandbox, endpoint_path

TCP_ECHO = r"""
import socketserver

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            self.request.sendall(data)

socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", PORT), Echo).serve_forever()
"""


class Box(Sandbox):
    """SSH straight to a sandbox's endpoint socket, with the apps."""

    def __init__(self, stack, sid, timeout=20):
        super().__init__(endpoint_path(stack, sid), timeout=timeout)

    def put(self, path, text):
        sftp = self.transport.open_sftp_client()
        try:
            with sftp.open(path, "w") as f:
                f.write(text)
        finally:
            sftp.close()

    def start(self, cmd, port):
        """Starts cmd detached and waits until something listens on port."""
        self.ok("setsid nohup %s >/tmp/app-%d.log 2>&1 </dev/null &" % (cmd, port))
        probe = ("python3 -c 'import socket; socket.create_connection("
                 "(\"127.0.0.1\", %d), 1).close()'" % port)
        wait_for(lambda: self.run(probe)[0] == 0, timeout=30,
                 what="app on port %d" % port)

    def tcp_echo(self, port):
        self.put("/tmp/echo-%d.py" % port, TCP_ECHO.replace("PORT", str(port)))
        self.start("python3 /tmp/echo-%d.py" % port, port)

    def ws_app(self, port):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "apps", "ws_app.py")) as f:
            self.put("/tmp/ws_app.py", f.read())
        self.start("python3 /tmp/ws_app.py %d" % port, port)

    def http_server(self, port, html):
        self.ok("mkdir -p /tmp/www-%d" % port)
        self.put("/tmp/www-%d/index.html" % port, html)
        self.start("python3 -m http.server %d --bind 127.0.0.1 --directory "
                   "/tmp/www-%d" % (port, port), port)

    def interfaces(self):
        return sorted(self.ok("ls /sys/class/net").split())

    def close(self):
        self.transport.close()
        self.sock.close()
