"""Runs inside a sandbox (tests/e2e/test_preview.py): a page whose script
opens a WebSocket back to the app (a URL relative to the page, so it works
under any prefix), sends a word and writes the echo into #result; the
WebSocket echo itself (RFC 6455, stdlib only); /headers answers the path
and headers the app got. Usage: python3 ws_app.py PORT

The page's load event waits for the echo: its image, /hold, is answered
only once the script has rendered the echo and said so ("rendered") over
the WebSocket, so a headless browser's --dump-dom (taken after load) sees
the result without any timing."""

import base64
import hashlib
import http.server
import json
import struct
import sys
import threading

PAGE = b"""<!doctype html><html><body><h1 id="title">pico preview</h1>
<div id="result">waiting</div><img src="hold" alt=""><script>
var u = new URL("ws", location.href);
u.protocol = u.protocol.replace("http", "ws");
var ws = new WebSocket(u.href);
ws.onopen = function () { ws.send("echo-4711"); };
ws.onmessage = function (e) {
  document.getElementById("result").textContent = "got " + e.data;
  ws.send("rendered");
};
ws.onerror = function () {
  document.getElementById("result").textContent = "error";
};
</script></body></html>"""

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

rendered = threading.Condition()
counts = {"rendered": 0, "held": 0}


def frame(data, op=1):
    n = len(data)
    if n < 126:
        return bytes([0x80 | op, n]) + data
    return bytes([0x80 | op, 126]) + struct.pack("!H", n) + data


class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/ws":
            return self.websocket()
        if self.path == "/":
            body, ctype = PAGE, "text/html"
        elif self.path == "/hold":
            with rendered:
                counts["held"] += 1
                rendered.wait_for(lambda: counts["rendered"] >= counts["held"], 60)
            body, ctype = GIF, "image/gif"
        else:
            n = int(self.headers.get("Content-Length") or 0)
            body = json.dumps({"method": self.command, "path": self.path,
                               "headers": dict(self.headers),
                               "body": self.rfile.read(n).decode()}).encode()
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"].encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            h = self.rfile.read(2)
            if len(h) < 2:
                return
            op, n = h[0] & 0x0F, h[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if h[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if op == 8:
                self.wfile.write(frame(b"", 8))
                self.wfile.flush()
                return
            if op == 1 and data == b"rendered":
                with rendered:
                    counts["rendered"] += 1
                    rendered.notify_all()
            elif op in (1, 2):
                self.wfile.write(frame(data, op))
                self.wfile.flush()


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
