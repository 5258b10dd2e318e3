#!/usr/bin/env python3
"""Writes testdata/compat/keywords/*.conf: one file per keyword of vrrpd's registry, in its block, with the
first candidate value keepalived -t takes without a message at that line (run as root, from the repository:
`sudo python3 testdata/compat/make_keyword_corpus.py`). The files are kept in git; this is how they were made."""
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
import vrrpd  # noqa: E402

OUT = HERE / "keywords"
NS = f"vrrpd-kwcorpus-{os.getpid()}"
TMP = Path(tempfile.mkdtemp())
INST = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 100\n%s    virtual_ipaddress {\n        10.0.0.1/24\n    }\n}\n"
GLOBAL = "global_defs {\n    enable_script_security\n    script_user root\n%s}\n"
VS = "virtual_server 10.1.1.1 80 {\n    protocol TCP\n%s    real_server 10.2.2.2 80 {\n%s    }\n}\n"
CANDIDATES = ["", "1", "10", "3", "yes", "on", "10.0.0.9", "eth0", "/bin/true", '"/bin/true"', "TCP", "rr", "NAT",
              "inet", "0.5", "root", "a@b.c", "224.0.0.20", "fd00::1", "2 3", "/tmp/x", "VS", "sip", "exact",
              "255.255.255.0", "A", "example.com", "1.1", "localhost", "tcp 900", "eth0 VI_1", "UDP", "0", "ipip",
              "-", "forever", "100", "keepalived", "1 1", "9b3a0c85a887a256d6939da88aabd8cd", "200", "/", "text",
              "BACKUP", "0x10", "eth1"]
ENTRIES = ["10.0.0.9", "eth1", "chk", "VI_1", "a@b.c", "10.0.0.0/8 via 10.0.0.1 dev eth0", "from 10.0.0.9 table 100"]


def wrap(block, line):
    if block == "top":
        return line + INST % ""
    if block == "global_defs":
        return GLOBAL % ("    " + line) + INST % ""
    if block == "vrrp_instance":
        return GLOBAL % "" + INST % ("    " + line)
    if block == "authentication":
        return INST % ("    authentication {\n        auth_type PASS\n        auth_pass secret\n        " + line + "    }\n")
    if block == "vrrp_script":
        return GLOBAL % "" + "vrrp_script chk {\n    script /bin/true\n    " + line + "}\n" + INST % "    track_script {\n        chk\n    }\n"
    if block == "vrrp_sync_group":
        return GLOBAL % "" + INST % "" + INST.replace("VI_1", "VI_2").replace("51", "52").replace("10.0.0.1", "10.0.0.2") % "" + "vrrp_sync_group G1 {\n    group {\n        VI_1\n        VI_2\n    }\n    " + line + "}\n"
    if block == "track_file":
        return "track_file tf {\n    file /tmp/vrrpd-compat-track\n    " + line + "}\n" + INST % "    track_file {\n        tf\n    }\n"
    if block == "vrrp_track_process":
        return "vrrp_track_process tp {\n    process sshd\n    " + line + "}\n" + INST % "    track_process {\n        tp\n    }\n"
    if block == "virtual_server":
        return GLOBAL % "" + VS % ("    " + line, "")
    if block == "real_server":
        return GLOBAL % "" + VS % ("", "        " + line)
    if block in ("HTTP_GET", "TCP_CHECK", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK"):
        extra = "            misc_path /bin/true\n" if block == "MISC_CHECK" else ""
        extra += "            url {\n                path /\n            }\n" if block == "HTTP_GET" else ""
        return GLOBAL % "" + VS % ("", f"        {block} {{\n{extra}            " + line + "        }\n")
    if block == "url":
        return GLOBAL % "" + VS % ("", "        HTTP_GET {\n            url {\n                path /\n                " + line + "            }\n        }\n")
    return None


def keepalived(text):
    p = TMP / "kw.conf"
    p.write_text(text)
    r = subprocess.run(["ip", "netns", "exec", NS, "keepalived", "-t", "-f", str(p)], capture_output=True, text=True)
    return r.returncode, r.stderr


def target_line(text, line):
    return text.split("\n").index(next(l for l in text.split("\n") if l.strip() == line.strip().split("\n")[0].strip())) + 1


subprocess.run(["ip", "netns", "add", NS], check=True)
subprocess.run(["ip", "-n", NS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], check=True)
for name in ("lo", "eth0", "eth1"):
    subprocess.run(["ip", "-n", NS, "link", "set", name, "up"], check=True)
n = 0
for block, spec in vrrpd.KEYWORDS.items():
    for name, kw in spec.items():
        if block == "top" and kw.block is not None:
            continue  # the top-level blocks are the contexts of the others
        sub = kw.block
        if sub is not None and sub != "skip" and not isinstance(sub, vrrpd.ValueBlock):
            continue  # a nested statement block: its keywords have their own files
        if isinstance(sub, vrrpd.ValueBlock) or sub == "skip":
            cands = [f"{name} {{\n            {e}\n        }}\n" for e in ENTRIES]
        else:
            cands = [f"{name} {v}".rstrip() + "\n" for v in CANDIDATES]
        best = None
        for c in cands:
            text = wrap(block, c)
            if text is None:
                break
            rc, err = keepalived(text)
            ln = target_line(text, c)
            bad = [l for l in err.splitlines() if re.search(r"Line %d\)" % ln, l)]
            if not bad:
                best = (text, rc)
                if rc == 0:
                    break
        if best is None:
            text = wrap(block, cands[0])
            if text is None:
                print("skip", block, name)
                continue
            best = (text, -1)
        fname = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{block}-{name}") + ".conf"
        (OUT / fname).write_text(f"! compat corpus: keyword '{name}' in {block}\n" + best[0])
        n += 1
print(n, "files")
subprocess.run(["ip", "netns", "del", NS], check=False)
