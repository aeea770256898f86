"""Auth on: every REST call needs a valid bearer token; tokens come from
`pico-backend token`, are stored hashed and can be revoked; sessions
belong to their creator and look absent (404) to everyone else."""

import socket
import subprocess

from pico_stack import backend_binary


def token_cmd(st, *args):
    return subprocess.run([backend_binary(), "--config", st.conf_path("pico.conf"),
                           "token", *args], capture_output=True, text=True, timeout=30)


def test_auth(new_stack):
    st = new_stack(auth=True)
    alice = st.make_token("alice")
    bob = st.make_token("bob")
    assert alice.startswith("pico_") and len(alice) == 86

    # Only hashes are stored.
    tid = alice.split("_")[1]
    h = st.redis_cli("HGETALL", "pico:token:" + tid)
    assert "alice" in h and alice not in h and alice.split("_")[2] not in h

    # Missing, malformed and unknown tokens.
    for hdr in (None, "Bearer", "Bearer nonsense", "Basic dXNlcjpwdw==",
                "Bearer " + alice[:-1] + ("0" if alice[-1] != "0" else "1"),
                "Bearer pico_0123456789abcdef_" + "0" * 64):
        headers = {"Authorization": hdr} if hdr else {}
        for method, path in (("GET", "/v1/sessions"), ("POST", "/v1/sessions")):
            r = st.request(method, path, headers=headers)
            assert r.status == 401, (hdr, r)
            assert r.json()["error"]["code"]
            assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert st.request("GET", "/health").status == 200

    s = st.create(token=alice, ttl=300)
    sid = s["session_id"]
    assert st.redis_cli("HGET", "pico:session:" + sid, "owner") == "alice"
    assert st.request("GET", "/v1/sessions/" + sid, token=alice).status == 200
    # Bob sees nothing of it.
    assert st.request("GET", "/v1/sessions/" + sid, token=bob).status == 404
    assert st.delete(sid, token=bob).status == 404
    lst = st.request("GET", "/v1/sessions", token=bob).json()
    assert lst == {"sessions": [], "total": 0}
    lst = st.request("GET", "/v1/sessions", token=alice).json()
    assert [x["session_id"] for x in lst["sessions"]] == [sid]

    # token list shows both; revoke bob.
    out = token_cmd(st, "list")
    assert out.returncode == 0
    assert "alice" in out.stdout and "bob" in out.stdout
    assert alice not in out.stdout
    bob_id = bob.split("_")[1]
    r = token_cmd(st, "revoke", bob_id)
    assert r.returncode == 0, r.stderr
    assert st.request("GET", "/v1/sessions", token=bob).status == 401
    assert token_cmd(st, "revoke", bob_id).returncode != 0
    assert token_cmd(st, "revoke", "../x").returncode != 0
    assert token_cmd(st, "create", "bad name;rm").returncode != 0

    assert st.delete(sid, token=alice).status == 200
    assert st.request("GET", "/v1/sessions/" + sid, token=alice).status == 404


def test_one_authorization_rule_for_rest_and_tunnels(new_stack):
    """The REST API and the tunnel read Authorization with one parser
    (common/pico_parse.c): what one accepts, the other does too."""
    st = new_stack(auth=True)
    tok = st.make_token("carol")
    sid = st.create(token=tok, ttl=300)["session_id"]
    accepted = ["Bearer " + tok, "bearer " + tok, "BEARER\t" + tok,
                "Bearer \t " + tok, "Bearer " + tok + " \t"]
    refused = ["Bearer" + tok, "Bearer " + tok + "x", "Bearer " + tok.upper(),
               "Token " + tok, "Bearer " + tok + " extra"]
    for hdr in accepted + refused:
        want_rest = 200 if hdr in accepted else 401
        r = st.request("GET", "/v1/sessions/" + sid, headers={"Authorization": hdr})
        assert r.status == want_rest, (hdr, r)
        s = socket.create_connection(("127.0.0.1", st.port), 10)
        s.sendall(("CONNECT /v1/sessions/%s/tunnel HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: %s\r\n\r\n" % (sid, hdr)).encode())
        status = s.recv(4096).split(b"\r\n", 1)[0].decode()
        s.close()
        assert status.split()[1] == ("200" if hdr in accepted else "401"), (hdr, status)
