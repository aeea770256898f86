#!/usr/bin/python3
"""A small Dockerfile lint for pico's images (hadolint is not in Debian).

Rules, each one a reason an image build goes wrong later:
  DL-FROM     every FROM names a pinned tag (or digest), never `latest`
              and never a bare name; stage references are fine
  DL-ADD      no ADD of URLs (unverified downloads); use COPY for files
  DL-APT      each RUN that runs apt-get install also runs apt-get update,
              uses --no-install-recommends and -y, and removes
              /var/lib/apt/lists in the same layer
  DL-USER     the final stage sets USER; USER root only with a comment
              right above it that says why ("... because ...")
  DL-PIPE     no `curl ... | sh`-style installs
  DL-CMD      the final stage has CMD or ENTRYPOINT in exec (JSON) form

usage: lint_dockerfiles.py FILE...    ("N passed, M failed"; exit 1 on M>0)
       lint_dockerfiles.py --selftest
"""

import json
import re
import sys


def instructions(text):
    """(line number, INSTRUCTION, arguments, comment block above) with
    continuation lines joined."""
    out, buf, start, comments, pending = [], "", 0, [], []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and line.strip().startswith("#"):
            pending.append(line.strip())
            continue
        if not buf and not line.strip():
            pending = []
            continue
        if line.strip().startswith("#"):
            continue  # comment inside a continued instruction
        if not buf:
            start, comments, pending = n, pending, []
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, args = buf.strip().partition(" ")
        out.append((start, word.upper(), args.strip(), comments))
        buf = ""
    return out


def lint(text, path="Dockerfile"):
    errors, passed = [], [0]

    def ok(cond, line, rule, msg):
        if cond:
            passed[0] += 1
        else:
            errors.append("%s:%d: %s %s" % (path, line, rule, msg))

    ins = instructions(text)
    stages, final = [], []
    for item in ins:
        if item[1] == "FROM":
            final = []
        final.append(item)
    for line, word, args, comments in ins:
        if word == "FROM":
            parts = args.split()
            image = [p for p in parts if not p.startswith("--")][0]
            if image.lower() in stages:
                passed[0] += 1
            else:
                tagged = "@sha256:" in image or re.search(r":[^/]+$", image)
                ok(tagged and not image.endswith(":latest"), line, "DL-FROM",
                   "pin a tag for %s (not latest, not bare)" % image)
            if len(parts) >= 3 and parts[-2].upper() == "AS":
                stages.append(parts[-1].lower())
        elif word == "ADD":
            ok(not re.search(r"https?://", args), line, "DL-ADD", "ADD of a URL; download and verify in RUN, or COPY")
        elif word == "RUN":
            if re.search(r"apt-get\s+install", args):
                ok("apt-get update" in args, line, "DL-APT", "apt-get install without apt-get update in the same RUN")
                ok("--no-install-recommends" in args, line, "DL-APT", "apt-get install without --no-install-recommends")
                ok(re.search(r"\s-y\b|--yes", args), line, "DL-APT", "apt-get install without -y")
                ok("rm -rf /var/lib/apt/lists" in args, line, "DL-APT", "apt lists not removed in the same RUN")
            ok(not re.search(r"(curl|wget)[^|;&]*\|\s*(ba|da)?sh\b", args), line, "DL-PIPE",
               "piping a download into a shell")
    users = [i for i in final if i[1] == "USER"]
    last_line = final[-1][0] if final else 1
    ok(users, last_line, "DL-USER", "the final stage sets no USER")
    if users:
        line, _, args, comments = users[-1]
        if args.split(":")[0] in ("root", "0"):
            ok(any("because" in c for c in comments), line, "DL-USER",
               "USER root needs a comment above it saying why")
    cmds = [i for i in final if i[1] in ("CMD", "ENTRYPOINT")]
    ok(cmds, last_line, "DL-CMD", "the final stage has no CMD/ENTRYPOINT")
    for line, word, args, _ in cmds:
        try:
            good = isinstance(json.loads(args), list)
        except ValueError:
            good = False
        ok(good, line, "DL-CMD", "%s in shell form; use the JSON (exec) form" % word)
    return passed[0], errors


BAD = {
    "DL-FROM": "FROM debian\nUSER 1\nCMD [\"x\"]\n",
    "DL-FROM latest": "FROM debian:latest\nUSER 1\nCMD [\"x\"]\n",
    "DL-ADD": "FROM debian:12\nADD https://x.example/a /a\nUSER 1\nCMD [\"x\"]\n",
    "DL-APT": "FROM debian:12\nRUN apt-get update && apt-get install -y x\nUSER 1\nCMD [\"x\"]\n",
    "DL-USER": "FROM debian:12\nCMD [\"x\"]\n",
    "DL-USER root": "FROM debian:12\nUSER root\nCMD [\"x\"]\n",
    "DL-PIPE": "FROM debian:12\nRUN curl -s https://x.example/i | sh\nUSER 1\nCMD [\"x\"]\n",
    "DL-CMD": "FROM debian:12\nUSER 1\nCMD x y\n",
}
GOOD = ("FROM debian:12 AS b\nRUN true\nFROM b\n# USER root because sshd switches users\n"
        "USER root\nCMD [\"x\"]\n")


def main(argv):
    passed, errors = 0, []
    if argv == ["--selftest"]:
        for name, text in BAD.items():
            p, e = lint(text, name)
            if e:
                passed += 1
            else:
                errors.append("selftest: %s not detected" % name)
        p, e = lint(GOOD, "good")
        passed += 1 if not e else 0
        errors += ["selftest: false alarm: " + m for m in e]
    else:
        for path in argv:
            with open(path) as f:
                p, e = lint(f.read(), path)
            passed += p
            errors += e
    for m in errors:
        print("FAIL " + m)
    print("%d passed, %d failed" % (passed, len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
