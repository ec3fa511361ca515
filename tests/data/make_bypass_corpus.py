"""Write ``tests/data/bypass_corpus.json``: hostile actions with the decision the spec gives them.

Run ``python tests/data/make_bypass_corpus.py`` after editing a table; the JSON
is committed, so a reviewer reads one case per line.

Every expectation below was written by hand from the example policies
(``policies/examples/*.json``), DESIGN.md section 4 and docs/policy-semantics.md;
nothing here imports or runs an engine. A case names:

- ``policy``: the example policy (file stem) it is decided under;
- ``action``: the ``input.action`` an agent (or a model's output) sends;
- ``expect``: what :meth:`PolicyEnforcer.check` decides, after the runtime's
  normalisation (``{"allow", "rules"}``, ``rules`` sorted), or
  ``{"error": "invalid_action"}`` when the runtime refuses the argument before
  asking (a wrong type, an empty name, NUL in a path, an unknown field);
- ``direct``: what OPA answers when a client sends the same action as is,
  without the runtime (the Rego normalises hosts itself and refuses paths that
  are not already normal);
- ``note``: why the expectation is what it is, where that is not obvious.

The example policies, in short:

- coding-assistant: models openai/anthropic, only gpt-4o and claude-3-opus;
  tools web_search, file_*, github:create_issue, denied file_delete; network
  with TLS, api.openai.com and *.anthropic.com, blocked evil.anthropic.com;
  files /workspace/* and /tmp/*, blocked /workspace/secrets/*, extensions
  .txt .md .json; apis openai, github; 60 requests/min, 1000/h.
- research-agent: models of anthropic/mistral/google, any model, denied
  *-preview and gemini-1.0-pro; tools web_search, web_fetch, pdf_*, arxiv:*,
  github:read_*, calculator, blocked pdf_sign, shell, exec_*; network without
  TLS: *.arxiv.org, api.anthropic.com, api.mistral.ai,
  generativelanguage.googleapis.com, *.wikipedia.org, 10.20.0.0/16,
  192.168.7.10, fd00:ab::/32, [2001:db8::53], blocked export.arxiv.org,
  *.upload.wikipedia.org, 10.20.99.0/24, 10.20.0.66, fd00:ab:dead::/48,
  [fd00:ab::66]; files /data/papers/*,
  /home/agent/notes/*, /etc/ssl/certs/ca-certificates.crt, blocked
  /data/papers/embargoed/* and /home/agent/notes/private.md, extensions .pdf
  .md .txt .csv .crt, operations read list create write; apis
  semantic-scholar, crossref, github:*, blocked github:admin; 30
  requests/min, 20000 tokens/min, 250000/h.
- locked-down: models openai, gpt-4o-mini and o3-*; network with TLS
  allowing api.openai.com, *.openai.com, 10.0.0.0/8, fd00::/8 and
  [2001:db8::1] but blocking "*" (a kill switch: every host, IP literals
  included); filesystem disabled; tools "*" but shell, file_*, browser; no
  apis section; 5 requests/min, 100/h, tokens unlimited.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("bypass_corpus.json")

CODING, RESEARCH, LOCKED = "coding-assistant", "research-agent", "locked-down"

ERR = "invalid_action"  # the runtime refuses the argument before any query
SAME = object()  # a direct query gets the same decision as the runtime

# Rule ids (DESIGN.md section 4).
INVALID = "input.invalid"
NET_INV, NET_NA, NET_BLK, NET_TLS, NET_OFF = (
    "network.invalid_host", "network.not_allowed", "network.blocked", "network.tls_required", "network.disabled",
)
FS_INV, FS_NA, FS_BLK, FS_EXT, FS_OP, FS_OFF = (
    "fs.invalid_path", "fs.not_allowed", "fs.blocked", "fs.ext", "fs.operation", "fs.disabled",
)
T_NA, T_BLK = "tool.not_allowed", "tool.blocked"
A_NA, A_BLK, A_MISS = "api.not_allowed", "api.blocked", "api.missing"
M_NA, M_DEN, M_PROV = "model.not_allowed", "model.denied", "model.provider_not_allowed"
RL_EXC = "rate_limit.exceeded"

_cases: list[dict[str, Any]] = []


def _decision(rules: Any) -> dict[str, Any]:
    if rules == ERR:
        return {"error": ERR}
    return {"allow": not rules, "rules": sorted(rules)}


def case(
    category: str, policy: str, action: Any, expect: Any, direct: Any = SAME, note: str = ""
) -> None:
    if direct is SAME:
        assert expect != ERR, "a refused argument still reaches OPA when sent directly: say what OPA answers"
        direct = expect
    entry: dict[str, Any] = {
        "id": f"{category}-{sum(c['category'] == category for c in _cases) + 1:03d}",
        "category": category,
        "policy": policy,
        "action": action,
        "expect": _decision(expect),
        "direct": _decision(direct),
    }
    if note:
        entry["note"] = note
    _cases.append(entry)


# -- host tricks --------------------------------------------------------------------------------------


def host(policy: str, value: Any, expect: Any, direct: Any = SAME, protocol: Any = "https", note: str = "") -> None:
    case("host", policy, {"type": "network", "host": value, "protocol": protocol}, expect, direct, note)


WS_KEPT = "whitespace around a host is not stripped by the runtime: the Rego accepts no whitespace at all"

for value in ["api.openai.com", "API.OPENAI.COM", "Api.OpenAI.Com", "api.openai.com.", "API.OPENAI.COM."]:
    host(CODING, value, [], note="case-insensitive, one trailing dot removed")
for value in ["api.openai.com:443", "api.openai.com:8443", "api.openai.com:0", "api.openai.com:65535",
              "api.openai.com.:443", "API.openai.com.:80"]:
    host(CODING, value, [], note="a port is removed before matching (0-65535)")
for value in ["api.openai.com..", "api.openai.com..:443", "api.openai.com:65536", "api.openai.com:",
              "api.openai.com:0443", "api.openai.com:443:443", "api.openai.com:https", "api.openai.com:-1",
              "api.openai.com: 443"]:
    host(CODING, value, [NET_INV], note="only one trailing dot and one port without leading zeros are tolerated")
for value in [" api.openai.com", "api.openai.com\t", "api.openai.com\n", "\r\napi.openai.com\r\n", "api.openai.com ",
              "\x0bapi.openai.com", "api.openai.com\x0c", " evil.anthropic.com", "[::1] "]:
    host(CODING, value, [NET_INV], note=WS_KEPT)
for value in ["api.openai.com\u00a0", "\u2003api.openai.com", "api.openai.com\u3000", "api.openai.com\u200b",
              "api.openai.com evil.net", "api.openai.com\r\nHost: evil.net"]:
    host(CODING, value, [NET_INV], note="non-ASCII or inner whitespace is never stripped")
for value in ["", " ", ".", "..", ".api.openai.com", "api..openai.com", ":443", "[]"]:
    host(CODING, value, [NET_INV], note="empty host or empty label")
for value in ["user@api.openai.com", "api.openai.com@evil.net", "a@b", "evil.net#@api.openai.com",
              "https://api.openai.com", "api.openai.com/v1", "evil.com/@api.openai.com", "api.openai.com\\@evil.net",
              "evil.net\\api.openai.com", "api.openai.com%2eevil.net", "api%2eopenai.com", "api.openai.com?x=1",
              "api.openai.com#frag", "//api.openai.com", "api.openai.com\u0000", "api.openai.com\u0000.evil.net",
              "*.anthropic.com", "*", "api.*.com", "[api.openai.com]", "[api.openai.com]:443"]:
    host(CODING, value, [NET_INV], note="userinfo, scheme, path, escapes, NUL, wildcards, brackets are not hosts")
for value in ["api.openai.com.evil.net", "evil-api.openai.com", "apiopenai.com", "openai.com",
              "www.api.openai.com", "api.openai.co", "api-openai.com", "api.openai.com.evil.net.",
              "xn--80ak6aa92e.com", "localhost", "metadata.google.internal", "-"]:
    host(CODING, value, [NET_NA], note="an exact entry matches only itself")
for value in ["anthropic.com", "x.anthropic.com", "a.b.c.anthropic.com", "ANTHROPIC.COM", "docs.anthropic.com:443",
              "_dmarc.anthropic.com", "xn--mnchen-3ya.anthropic.com"]:
    host(CODING, value, [], note="*.anthropic.com matches the domain itself and every subdomain")
host(CODING, "x.evil.anthropic.com", [],
     note="the blocked entry evil.anthropic.com is exact: its subdomains stay allowed by *.anthropic.com")
for value in ["evil-anthropic.com", "anthropic.com.evil.net", "evilanthropic.com", "anthropic.com.evil.net.",
              "anthropic.co", "anthropic.com-evil.net"]:
    host(CODING, value, [NET_NA], note="never a suffix match without a dot boundary")
for value in ["evil.anthropic.com", "EVIL.ANTHROPIC.COM", "evil.anthropic.com.", "evil.anthropic.com:443",
              "Evil.Anthropic.Com.:8443"]:
    host(CODING, value, [NET_BLK], note="blocked beats the *.anthropic.com allow, in every spelling")
for value in ["\u0430nthropic.com", "\uff41pi.openai.com", "api\uff0eopenai.com", "api\u3002openai.com",
              "ap\u0131.openai.com", "\u212aey.anthropic.com", "b\u00fccher.anthropic.com"]:
    host(CODING, value, [NET_INV], note="non-ASCII look-alikes are invalid: IDNs must arrive as punycode")
for value in ["2130706433", "0x7f.1", "0x7f000001", "127.1", "0177.0.0.1", "127.000.000.001", "1.2.3.4.5",
              "0x7f.0x0.0x0.0x1", "017700000001", "1.2.3.04", "10.0.0.0x1", "a.1", "a.0x1f"]:
    host(CODING, value, [NET_INV], note="a name whose last label is numeric is an IPv4 number to a resolver")
for value in ["127.0.0.1", "0.0.0.0", "169.254.169.254", "[::1]", "::1", "[::1]:443", "fe80::1"]:
    host(CODING, value, [NET_NA], note="IP literals match only IP entries and CIDRs; this policy has none")
for value in ["::ffff:127.0.0.1", "[::ffff:7f00:1]", "[fe80::1%25eth0]", "fe80::1%eth0", "[::1", "::1]",
              "1::2::3", ":::", "[::1]:", "[::1]:99999", "[::1]x", "1:2:3:4:5:6:7:8:9"]:
    host(CODING, value, [NET_INV], note="IPv4-mapped, zoned or malformed IPv6")
CARRIES_IPV4 = "the unspecified address and IPv6 that embeds or aliases IPv4 (an IPv4 CIDR could not see it)"
for value in ["::", "[::]", "[::]:443", "0:0:0:0:0:0:0:0", "::0.0.0.0", "::127.0.0.1", "[::127.0.0.1]", "::7f00:1",
              "::a9fe:a9fe", "::169.254.169.254", "::2", "::ffff:0:7f00:1", "[::ffff:0:a9fe:a9fe]",
              "::ffff:0:127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::169.254.169.254", "[64:ff9b::7f00:1]:80",
              "64:ff9b:1::a9fe:a9fe", "64:ff9b:1:ffff::1", "2002:7f00:1::", "2002:a9fe:a9fe::1", "[2002::1]",
              "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "[2001:0000:0:0::1]:443"]:
    host(CODING, value, [NET_INV], note=CARRIES_IPV4)
for value in ["::1:0:0:0", "64:ff9b:2::1", "2003::1", "2001:1::1", "2001:db8::1", "::fffe:7f00:1"]:
    host(CODING, value, [NET_NA], note="next to the IPv4 carriers but not in them: a valid IPv6 address")
host(CODING, "a" * 63 + ".anthropic.com", [], note="a 63-character label is a label")
host(CODING, "a" * 64 + ".anthropic.com", [NET_INV], note="a label has at most 63 characters")
host(CODING, ".".join(["a" * 60] * 4) + ".anthropic.com", [NET_INV], note="a name has at most 253 characters")
host(CODING, "-x.anthropic.com", [], note="labels of a-z 0-9 _ - in any order (docs/policy-semantics.md)")
# protocols (TLS required by this policy)
for protocol in ["https", "HTTPS", "Https", "wss", "WSS"]:
    host(CODING, "api.openai.com", [], protocol=protocol, note="https and wss pass, ASCII case-insensitive")
for protocol in ["http", "ws", "ftp", "https ", " https", "httpś", "file", "gopher"]:
    host(CODING, "api.openai.com", [NET_TLS], protocol=protocol, note="only https and wss pass with require_tls")
host(CODING, "api.openai.com", ERR, [NET_TLS], protocol="https\u0000", note="NUL is a bad argument to the runtime")
host(CODING, "api.openai.com", ERR, [NET_TLS], protocol="", note="an empty protocol is a bad argument to the runtime")
host(CODING, "api.openai.com", ERR, [NET_TLS], protocol=None,
     note="the runtime needs a string protocol; OPA reads null as absent, and TLS is required")
host(CODING, "api.openai.com", ERR, [INVALID], protocol=443)
host(CODING, "api.openai.com", ERR, [INVALID], protocol=["https"])
case("host", CODING, {"type": "network", "host": "api.openai.com"}, [], [NET_TLS],
     note="the runtime defaults the protocol to https; a direct query without one fails TLS")
host(CODING, "evil.anthropic.com", [NET_BLK, NET_TLS], protocol="http", note="every violation is reported")
host(CODING, "api.openai.com.evil.net", [NET_NA, NET_TLS], protocol="ws")
host(CODING, "user@api.openai.com", [NET_INV, NET_TLS], protocol="http",
     note="TLS is still checked for an invalid host")
for value in [5, None, ["api.openai.com"], {"host": "api.openai.com"}, True, 2130706433]:
    host(CODING, value, ERR, [INVALID], note="a host must be a string")
case("host", CODING, {"type": "network", "protocol": "https"}, ERR, [INVALID], note="no host")

# research-agent: TLS not required, CIDRs and IPv6 entries
for value in ["10.20.0.1", "10.20.255.255", "10.20.0.1.", "10.20.0.1:8080", "192.168.7.10", "192.168.7.10:443"]:
    host(RESEARCH, value, [], protocol="http", note="inside 10.20.0.0/16, or the exact 192.168.7.10")
for value in ["10.21.0.1", "10.19.255.255", "192.168.7.11", "192.168.7.1", "127.0.0.1", "169.254.169.254"]:
    host(RESEARCH, value, [NET_NA], protocol="http")
for value in ["10.20.99.5", "10.20.99.255", "10.20.99.0:22"]:
    host(RESEARCH, value, [NET_BLK], protocol="http", note="10.20.99.0/24 is blocked inside the allowed /16")
for value in ["010.20.0.1", "10.20.0.01", "10.20.1", "169090561", "0xa.0x14.0.1", "3232237322", "0xc0.0xa8.7.10",
              "192.168.7.010", "[10.20.0.1]", "::ffff:10.20.0.1", "[::ffff:a14:1]", "::ffff:192.168.7.10"]:
    host(RESEARCH, value, [NET_INV], protocol="http", note="other spellings of allowed IPv4 addresses are invalid")
for value in ["::10.20.0.1", "64:ff9b::10.20.0.1", "::ffff:0:10.20.0.1", "2002:a14:1::", "64:ff9b:1::a14:1"]:
    host(RESEARCH, value, [NET_INV], protocol="http", note=CARRIES_IPV4)
for value in ["[2001:db8::54]", "fd00:ac::1", "fd01::1"]:
    host(RESEARCH, value, [NET_NA], protocol="http", note="IPv6 never matches an IPv4 entry; outside the IPv6 entries")
for value in ["10.20.0.66", "10.20.0.66:443", "fd00:ab:dead::1", "[FD00:AB:DEAD:ffff::1]:8443", "fd00:ab::66",
              "[fd00:ab:0:0::0066]", "fd00:ab:0000:0000:0000:0000:0000:66"]:
    host(RESEARCH, value, [NET_BLK], protocol="http",
         note="a blocked IPv4 address, IPv6 CIDR or IPv6 address inside an allowed CIDR, in any spelling")
for value in ["10.20.0.67", "fd00:ab:deae::1", "fd00:ab::67", "[fd00:ab:dea::1]"]:
    host(RESEARCH, value, [], protocol="http", note="next to the blocked entries, inside the allowed CIDRs")
for protocol in ["ws", "wss", "WS", "http", "https"]:
    host(RESEARCH, "fd00:ab:dead::1", [NET_BLK], protocol=protocol, note="blocked whatever the protocol")
for value in ["[fd00:ab::1]", "fd00:ab::1", "FD00:AB::1", "[fd00:ab::1]:8443", "fd00:ab:ffff::1", "[2001:db8::53]",
              "2001:db8::53", "2001:DB8::53", "2001:db8:0:0:0:0:0:53", "[2001:0db8::0053]:443"]:
    host(RESEARCH, value, [], protocol="http", note="fd00:ab::/32 and 2001:db8::53 in any IPv6 spelling")
for value in ["[2001:db8::53%eth0]", "[fd00:ab::1]:99999", "fd00:ab::1]", "[fd00:ab::1", "fd00:ab::1:443:1:2:3:4"]:
    host(RESEARCH, value, [NET_INV], protocol="http")
for value in ["export.arxiv.org", "EXPORT.ARXIV.ORG.", "export.arxiv.org:443", "upload.wikipedia.org",
              "x.upload.wikipedia.org", "UPLOAD.Wikipedia.org."]:
    host(RESEARCH, value, [NET_BLK], protocol="https", note="blocked beats allowed")
for value in ["arxiv.org", "www.arxiv.org", "a.export.arxiv.org", "en.wikipedia.org", "wikipedia.org",
              "api.anthropic.com", "API.MISTRAL.AI", "generativelanguage.googleapis.com."]:
    host(RESEARCH, value, [], protocol="https")
for value in ["arxiv.org.evil.net", "evil-arxiv.org", "wikipedia.org.evil.net", "x.api.anthropic.com",
              "anthropic.com", "api.mistral.ai.evil.net", "googleapis.com", "upload-wikipedia.org"]:
    host(RESEARCH, value, [NET_NA], protocol="https")
host(RESEARCH, "arxiv.org", [], protocol="ftp", note="require_tls is false in this policy")
host(RESEARCH, "arxiv.org", ERR, [], protocol="",
     note="without require_tls a direct query may omit the protocol; the runtime refuses an empty one")
# locked-down: blocked_domains ["*"] is a kill switch, IP literals and allowed CIDRs included
KILL = "a blocked * blocks every host, IP literals included, whatever the allowed list says"
for value in ["api.openai.com", "x.openai.com", "API.OPENAI.COM.:443", "10.1.2.3", "10.0.0.1:8080", "[fd00::1]",
              "fd00:ab::1", "[2001:db8::1]", "2001:DB8:0::1"]:
    host(LOCKED, value, [NET_BLK], note=KILL)
for value in ["evil.net", "127.0.0.1", "169.254.169.254", "[::1]", "fe80::1", "8.8.8.8:53"]:
    host(LOCKED, value, [NET_BLK, NET_NA], note=KILL + "; not allowed either")
for value in ["user@api.openai.com", "", "[::]", "::ffff:10.1.2.3", "64:ff9b::a01:203", " api.openai.com"]:
    host(LOCKED, value, [NET_INV], note="an invalid host is network.invalid_host, kill switch or not")
for protocol in ["http", "ws"]:
    host(LOCKED, "api.openai.com", [NET_BLK, NET_TLS], protocol=protocol, note="every violation is reported")
host(LOCKED, "api.openai.com", [NET_BLK], protocol="wss")
host(LOCKED, 5, ERR, [INVALID], note="a bad argument is still input.invalid")


# -- path tricks --------------------------------------------------------------------------------------


def path(
    policy: str, value: Any, expect: Any, direct: Any = SAME, operation: Any = "read", note: str = "", **flags: bool
) -> None:
    case("path", policy, {"type": "filesystem", "path": value, "operation": operation}, expect, direct, note, **flags)


NORMALISED = "the runtime resolves it lexically first; OPA refuses paths that are not already normal"

for value in ["/workspace/a.txt", "/workspace/a.TXT", "/workspace/sub/dir/notes.md", "/tmp/x.json",
              "/workspace/a.exe.txt", "/workspace/..a/b.txt", "/workspace/a..txt", "/workspace/100%.txt",
              "/workspace/a%zz.txt", "/workspace/a%2.txt", "/workspace/a b.txt", "/workspace/ a.txt"]:
    path(CODING, value, [])
path(CODING, "/workspace/../etc/passwd", [FS_EXT, FS_NA], [FS_INV], note=NORMALISED)
path(CODING, "/workspace/../etc/passwd.txt", [FS_NA], [FS_INV], note=NORMALISED)
path(CODING, "/workspace/" + "../" * 50 + "etc/passwd", [FS_EXT, FS_NA], [FS_INV], note=NORMALISED)
path(CODING, "/tmp/../etc/shadow", [FS_EXT, FS_NA], [FS_INV], note=NORMALISED)
path(CODING, "/../etc/passwd", [FS_EXT, FS_NA], [FS_INV], note="never above /")
path(CODING, "/../../workspace/a.txt", [], [FS_INV], note="never above /: /../../workspace is /workspace")
for value in ["/workspace/./secrets/key.txt", "/workspace//secrets/key.txt", "/workspace/secrets/../secrets/key.txt",
              "/workspace/secrets/sub/../../secrets/key.txt", "/workspace/a/../secrets/key.txt",
              "/workspace/secrets/./key.txt", "//workspace/secrets/key.txt", "/./workspace/secrets/key.txt",
              "/workspace/secrets/key.txt/", "/tmp/../workspace/secrets/key.txt"]:
    path(CODING, value, [FS_BLK], [FS_INV], note=NORMALISED)
path(CODING, "/workspace/secrets/key.txt", [FS_BLK])
path(CODING, "/workspace/secrets/sub/deep/key.md", [FS_BLK], note="/dir/* covers every depth below /dir")
path(CODING, "/workspace/secrets/*", [FS_BLK, FS_EXT], note="a * in the input is a literal file name")
for value in ["//workspace/a.txt", "/workspace//a.txt", "/workspace/./a.txt", "/./workspace/a.txt", "/workspace/a.txt/",
              "/workspace/a.txt/.", "/workspace/x/../a.txt", "/workspace/a.txt//"]:
    path(CODING, value, [], [FS_INV], note=NORMALISED)
path(CODING, "/workspace/secrets", [FS_EXT], note="/workspace/secrets/* covers what is below, not the directory itself")
path(CODING, "/workspace/secrets", [], operation="list",
     note="listing the blocked directory itself is allowed: block /workspace/secrets as well to hide its names")
path(CODING, "/workspace/secrets/", [], [FS_INV], operation="list", note=NORMALISED)
path(CODING, "/workspace/SECRETS/key.txt", [],
     note="paths are case-sensitive: on a case-insensitive filesystem block every spelling")
path(CODING, "/workspace/Secrets/key.txt", [], note="paths are case-sensitive")
for value in ["/Workspace/a.txt", "/WORKSPACE/a.txt", "/workspacex/a.txt", "/workspace.txt", "/tmpfile.txt",
              "/etc/passwd.txt", "/home/user/.ssh/id_rsa.txt"]:
    path(CODING, value, [FS_NA])
path(CODING, "/workspace", [FS_NA], operation="list", note="/workspace/* does not cover /workspace itself")
path(CODING, "/workspace/", [FS_NA], [FS_INV], operation="list", note=NORMALISED)
path(CODING, "/", [FS_NA], operation="list")
path(CODING, "/tmp", [FS_NA], operation="list")
for value in ["workspace/a.txt", "./workspace/a.txt", "../workspace/a.txt", "~/a.txt", "", "a.txt", ".",
              "..", "C:\\workspace\\a.txt", "\\\\server\\share\\a.txt", "file:///workspace/a.txt"]:
    path(CODING, value, [FS_INV], note="relative paths are never resolved against a working directory")
for value in ["/workspace/a.txt\u0000.md", "/workspace/secrets\u0000/key.txt", "\u0000", "/workspace/\u0000"]:
    path(CODING, value, ERR, [FS_INV], note="NUL is a bad argument to the runtime and an invalid path to OPA")
for value in ["/workspace/\u2025/etc/passwd.txt", "/workspace/\uff0e\uff0e/secrets/key.txt",
              "/workspace/secrets\u2215key.txt", "/workspace/secrets\u2044key.txt"]:
    path(CODING, value, [], note="look-alike dots or slashes are literal name characters")
READ_DIFFERENTLY = "a path a tool could read as another (URL decoding, Windows) is fs.invalid_path"
for value in ["/workspace/%2e%2e/etc/passwd.txt", "/workspace/secrets%2fkey.txt", "/workspace/%2E%2E/%2E%2E/a.txt",
              "/workspace/%2e%2e%2fetc%2fpasswd", "/workspace/a%2Fb.txt", "/workspace/%41.txt", "/workspace/x%00.txt",
              "/workspace/..\\secrets\\key.txt", "/workspace\\..\\etc\\passwd.txt", "/workspace/a\\b.txt",
              "/workspace/secrets./key.txt", "/workspace/secrets /key.txt", "/workspace/secrets.. /key.txt",
              "/workspace/a.", "/workspace/a.txt ", "/workspace/a.txt.", "/workspace/.../a.txt", "/workspace/..."]:
    path(CODING, value, [FS_INV], note=READ_DIFFERENTLY)
path(CODING, "/workspace/secrets/x/../key.txt%20", [FS_INV], note="resolved by the runtime, then still an escape")
for operation in ["append", "create", "delete", "execute", "list", "read", "write"]:
    path(CODING, "/workspace/%2e%2e/etc/passwd", [FS_INV], operation=operation, note=READ_DIFFERENTLY)
    path(CODING, "/workspace/notes.md", [], operation=operation, note="no allowed_operations: every operation")
    path(CODING, "/workspace/secrets/k.md", [FS_BLK], operation=operation)
path(CODING, "/workspace/link-to-etc-passwd.txt", [], note="symlinks are not resolved: the policy judges names")
for value in ["/workspace/a.txt.exe", "/workspace/.txt", "/workspace/noext",
              "/workspace/a.t\u0445t", "/workspace/a.txt\n", "/workspace/a.TXT.sh", "/workspace/*",
              "/workspace/a.tx"]:
    path(CODING, value, [FS_EXT], note="the final suffix, as pathlib computes it, ASCII case-insensitive")
path(CODING, "/workspace/*.txt", [], note="a * in the input is a literal character")
path(CODING, "/workspace/" + "d/" * 254 + "f.txt", [], note="256 segments: the runtime's depth limit")
path(CODING, "/workspace/" + "d/" * 255 + "f.txt", ERR, [], note="257 segments: over the runtime's depth limit")
path(CODING, "/workspace/" + "d/" * 254 + "../" * 10 + "f.txt", [], [FS_INV],
     note="the depth limit applies to the normalised path")
path(CODING, "/workspace/" + "d/" * 1000 + "f.txt", ERR, [],
     note="over the depth limit; OPA and the embedded engine (its interpreter, past the VM's instruction budget) judge the path itself")
path(CODING, "/workspace/" + "a/" * 2100 + "x.txt", ERR, [],
     note="the runtime refuses values over 4096 characters; OPA judges the path itself")
path(CODING, "/workspace/" + "x" * 5000 + ".txt", ERR, [], note="the runtime refuses values over 4096 characters")
path(CODING, "/tmp/x.json", [], operation="delete", note="no allowed_operations: every operation")
for operation in ["DELETE", "rm", "Read", "read ", "", "readwrite"]:
    path(CODING, "/tmp/x.json", ERR, [INVALID], operation=operation, note="operations are a fixed, case-sensitive set")
path(CODING, "/tmp/x.json", ERR, [INVALID], operation=None)
path(CODING, "/tmp/x.json", ERR, [INVALID], operation=1)
case("path", CODING, {"type": "filesystem", "path": "/tmp/x.json"}, [], [INVALID],
     note="the runtime defaults the operation to read; a direct query must name one")
for value in [1, None, ["/workspace/a.txt"], {"path": "/workspace/a.txt"}, True]:
    path(CODING, value, ERR, [INVALID], note="a path must be a string")

# research-agent: extensions written with and without the dot, restricted operations, exact entries
for value in ["/data/papers/p.pdf", "/data/papers/P.PDF", "/data/papers/x.csv", "/data/papers/x.txt",
              "/data/papers/sub/dir/x.md", "/data/papers/Embargoed/e.pdf", "/home/agent/notes/Private.md",
              "/home/agent/notes/private.md.md", "/etc/ssl/certs/ca-certificates.crt"]:
    path(RESEARCH, value, [], note="case-sensitive paths; extensions compared case-insensitively")
for value in ["/data/papers/x.exe", "/data/papers/x.pdf.exe", "/data/papers/x"]:
    path(RESEARCH, value, [FS_EXT])
for value in ["/data/papers/embargoed/e.pdf", "/data/papers/embargoed/x/y/z.pdf", "/home/agent/notes/private.md"]:
    path(RESEARCH, value, [FS_BLK])
for value in ["/data/papers/embargoed/../embargoed/e.pdf", "/data/papers/./embargoed/e.pdf",
              "/data/papers//embargoed/e.pdf", "/home/agent/notes/private.md/", "/home/agent/notes/./private.md",
              "/home/agent/notes//private.md", "/home/agent/x/../notes/private.md"]:
    path(RESEARCH, value, [FS_BLK], [FS_INV], note=NORMALISED)
path(RESEARCH, "/data/papers/embargoed", [], operation="list",
     note="/dir/* does not cover /dir: listing the blocked directory is allowed")
path(RESEARCH, "/etc/ssl/certs/other.crt", [FS_NA], note="an entry without /* is exact")
path(RESEARCH, "/etc/ssl/certs/ca-certificates.crt/../../../shadow", [FS_EXT, FS_NA], [FS_INV], note=NORMALISED)
path(RESEARCH, "/etc/ssl/certs", [FS_NA], operation="list")
for operation in ["delete", "execute", "append"]:
    path(RESEARCH, "/data/papers/p.pdf", [FS_OP], operation=operation,
         note="allowed_operations: read list create write")
path(RESEARCH, "/data/papers/sub/../p.pdf", [FS_OP], [FS_INV, FS_OP], operation="delete",
     note="the operation is still checked for an invalid path")
path(RESEARCH, "/data/papers/../../etc/passwd", [FS_EXT, FS_NA], [FS_INV], operation="write", note=NORMALISED)
path(RESEARCH, "/data/papers/../../bin/sh", [FS_EXT, FS_NA, FS_OP], [FS_INV, FS_OP], operation="execute",
     note=NORMALISED)

# locked-down: the filesystem is disabled
for value in ["/workspace/a.txt", "relative/a.txt", "/etc/passwd", "/workspace/../etc/passwd"]:
    path(LOCKED, value, [FS_OFF], operation="write", note="enabled: false gives fs.disabled and nothing else")
path(LOCKED, "/a\u0000b", ERR, [FS_OFF], note="NUL is refused by the runtime; OPA stops at disabled")
path(LOCKED, "/tmp/x", ERR, [INVALID], operation="rm")


# -- name tricks (tools, capabilities, APIs) ----------------------------------------------------------


def tool(policy: str, name: Any, expect: Any, direct: Any = SAME, kind: str = "tool", note: str = "") -> None:
    case("name", policy, {"type": kind, "name": name}, expect, direct, note)


EXACT = "names are exact and case-sensitive"
DENY_EXACT = "a deny entry without * matches only that exact spelling; the allow glob still matches this one"

tool(CODING, "web_search", [])
for name in ["Web_Search", "WEB_SEARCH", "web_search ", " web_search", "web_searc", "web_searchx",
             "web\u200bsearch", "\uff57eb_search", "web_se\u0430rch", "web-search", "web_search\u00a0"]:
    tool(CODING, name, [T_NA], note=EXACT)
CONTROL = "a name with a control character (C0, DEL, C1) is a bad argument to the runtime and input.invalid to OPA"
for name in ["web_search\u0000", "web_search\n", "web_search\t", "file_\n", "file_read\r", "\u001bfile_read",
             "file_read\u007f", "file_read\u0085", "file_read\u009f", "file_delete\u0000", "file_delete\n"]:
    tool(CODING, name, ERR, [INVALID], note=CONTROL)
tool(CODING, "file_read\u0000", ERR, [INVALID], kind="capability", note=CONTROL)
for name in ["file_read", "file_", "file_*", "file_.*", "file_read/../delete", "file_read\u00a0"]:
    tool(CODING, name, [], note="file_* matches any run of characters after file_, * and newlines included")
for name in ["file", "files_read", "File_read", "FILE_DELETE", "*", ".*", "^web_search$", "web_search|shell",
             "(?i)WEB_SEARCH", "[w]eb_search", "web_s.arch", "%", "?"]:
    tool(CODING, name, [T_NA], note="a * or regex syntax in the input is literal")
tool(CODING, "file_delete", [T_BLK], note="denied beats the file_* allow")
for name in ["file_delete ", "file_Delete", "file_deletex"]:
    tool(CODING, name, [], note=DENY_EXACT)
tool(CODING, "github:create_issue", [], kind="capability")
for name in ["github:create_issues", "github:", "github:*", "GitHub:create_issue", "github:create_issue:admin",
             "github::create_issue"]:
    tool(CODING, name, [T_NA], kind="capability", note=EXACT)
tool(CODING, "file_delete", [T_BLK], kind="capability", note="capabilities read the same lists as tools")
for name in ["", 1, None, ["web_search"], {"name": "web_search"}, True, 0]:
    tool(CODING, name, ERR, [INVALID], note="a name must be a non-empty string")
case("name", CODING, {"type": "tool"}, ERR, [INVALID], note="no name")
case("name", CODING, {"type": "tool", "name": "shell", "allowed": True}, ERR, [T_NA],
     note="the runtime refuses unknown fields; OPA ignores them")
case("name", CODING, {"type": "tool", "name": "web_search", "policy": {"allow": True}}, ERR, [],
     note="the runtime refuses unknown fields; OPA ignores them")

for name in ["shell", "file_read", "file_", "file_*", "browser"]:
    tool(LOCKED, name, [T_BLK], note="blocked beats the * allow")
for name in ["Shell", "SHELL", "shell ", "File_read", "bash", "sh", "*", "shell;rm", "she\u200bll", "shell\u00a0"]:
    tool(LOCKED, name, [], note=DENY_EXACT + " (here *)")
for name in ["shell\u0000", "browser\n", "shell\u0085", "\u007fshell", "she\u0000ll"]:
    tool(LOCKED, name, ERR, [INVALID], note=CONTROL + ": never another name that * would allow")
tool(LOCKED, "shell", [T_BLK], kind="capability")
tool(LOCKED, "github:anything", [], kind="capability")
tool(LOCKED, "", ERR, [INVALID])

for name in ["calculator", "web_search", "pdf_read", "arxiv:search", "arxiv:", "github:read_repo", "github:read_",
             "github:read_*", "pdf_sign_x", "pdf_Sign"]:
    tool(RESEARCH, name, [], note="the union of both allowed lists; deny entries are exact")
for name in ["shell", "exec_rm", "exec_", "exec_*"]:
    tool(RESEARCH, name, [T_BLK, T_NA], note="blocked and not on any allowed list")
tool(RESEARCH, "pdf_sign", [T_BLK], note="denied beats pdf_*")
for name in ["exec", "arxiv", "github:write_repo", "github:readme", "Calculator", "pdf"]:
    tool(RESEARCH, name, [T_NA])


def api(policy: str, name: Any, expect: Any, direct: Any = SAME, note: str = "") -> None:
    case("name", policy, {"type": "api", "name": name}, expect, direct, note)


for name in ["openai", "github"]:
    api(CODING, name, [])
for name in ["OpenAI", "openai ", "github:admin", "*", "open*", "openai.evil"]:
    api(CODING, name, [A_NA], note=EXACT)
api(CODING, "", ERR, [INVALID])
for name in ["openai\u0000", "github\n", "openai\u009b"]:
    api(CODING, name, ERR, [INVALID], note=CONTROL)
api(CODING, ["openai"], ERR, [INVALID])
api(RESEARCH, "github:admin", [A_BLK], note="blocked beats github:*")
for name in ["github:Admin", "github:admin ", "github:admin:x", "github:", "semantic-scholar", "crossref"]:
    api(RESEARCH, name, [], note=DENY_EXACT)
for name in ["github", "crossref.evil", "Crossref", "semantic_scholar"]:
    api(RESEARCH, name, [A_NA])
api(LOCKED, "openai", [A_MISS], note="no permissions.apis section: every API is api.missing")
api(LOCKED, "*", [A_MISS])
api(LOCKED, 1, ERR, [INVALID])

# action types
for action in [{"type": "Tool", "name": "web_search"}, {"type": "TOOL", "name": "web_search"},
               {"type": "tool ", "name": "web_search"}, {"type": "tools", "name": "web_search"},
               {"type": "shell", "name": "web_search"}, {"type": None, "name": "web_search"},
               {"type": 1, "name": "web_search"}, {"type": ["tool"], "name": "web_search"}, {"name": "web_search"},
               {}]:
    case("name", CODING, action, ERR, [INVALID], note="the action type is one of a fixed, case-sensitive set")
for action in [None, "tool", ["tool", "web_search"], 7]:
    case("name", CODING, action, ERR, [INVALID], note="an action must be an object")


# -- model and provider tricks ------------------------------------------------------------------------


def model(policy: str, name: Any, expect: Any, direct: Any = SAME, provider: Any = "<absent>", note: str = "") -> None:
    action: dict[str, Any] = {"type": "model", "name": name}
    if provider != "<absent>":
        action["provider"] = provider
    case("model", policy, action, expect, direct, note)


INFERRED = "the provider is inferred from the ASCII-lower-cased name by the prefix table"
GIVEN = "a given provider wins over the inferred one: the provider must come from configuration, not a model"

model(CODING, "gpt-4o", [])
model(CODING, "claude-3-opus", [])
for name in ["gpt-4o-evil", "gpt-4o ", "GPT-4O", "gpt-4o-2024-08-06", "gpt-4", "gpt-4o-mini", "claude-3-opus-evil",
             "Claude-3-opus", "o1", "o3-mini", "gpt-*", "chatgpt-4o-latest"]:
    model(CODING, name, [M_NA], note="allowed_models is exact and case-sensitive; " + INFERRED)
for provider in ["openai", "OpenAI", "OPENAI", None]:
    model(CODING, "gpt-4o", [], provider=provider, note="a given provider is ASCII-lower-cased; null means absent")
for provider in ["azure", "openai-evil", "open ai", "openai ", "\u043epenai", "anthropic.evil"]:
    model(CODING, "gpt-4o", [M_PROV], provider=provider, note="providers are exact after ASCII case folding")
model(CODING, "gpt-4o", ERR, [INVALID], provider="", note="an empty provider is a bad argument")
model(CODING, "gpt-4o", ERR, [INVALID], provider=1)
model(CODING, "gpt-4o", ERR, [INVALID], provider=["openai"])
model(CODING, "claude-3-opus", [], provider="openai", note=GIVEN)
for name in ["gemini-1.5-pro", "my-local-model", "o1x", "gpt4o", "*", "llama3.1-70b", "mistral-large",
             "anthropic/claude-3-opus", "openai/gpt-4o", "gpt_4o", "claude_3_opus", "\u0261pt-4o"]:
    model(CODING, name, [M_NA, M_PROV], note="unknown or disallowed provider, and not an allowed model")
model(CODING, "my-local-model", [M_NA], provider="openai", note="the provider passes, the model does not")
for name in ["gpt-4o\u0000", "gpt-4o\n", "claude-3-opus\u0085"]:
    model(CODING, name, ERR, [INVALID], note=CONTROL)
for provider in ["openai\u0000", "openai\t", "\u0080openai"]:
    model(CODING, "gpt-4o", ERR, [INVALID], provider=provider, note=CONTROL)
for name in ["o3-mini\u0000", "gpt-4o-mini\n"]:
    model(LOCKED, name, ERR, [INVALID], note=CONTROL)
for name in ["", 1, None, ["gpt-4o"]]:
    model(CODING, name, ERR, [INVALID], note="a model name must be a non-empty string")
case("model", CODING, {"type": "model", "name": "gpt-4o", "allowed": True}, ERR, [],
     note="the runtime refuses unknown fields; OPA ignores them")

for name in ["claude-3-5-sonnet", "claude-evil", "claude-", "CLAUDE-3-OPUS", "mistral-large-latest", "codestral",
             "codestral-latest", "codestral:2501", "gemini-1.5-pro", "gemini-2.0-flash"]:
    model(RESEARCH, name, [], note="an empty allowed_models allows any model of an allowed provider; " + INFERRED)
for name in ["gemini-1.0-pro", "gemini-2.0-flash-preview", "claude-3-preview", "mistral-large-preview"]:
    model(RESEARCH, name, [M_DEN], note="denied_models: gemini-1.0-pro and *-preview")
for name in ["GEMINI-1.0-PRO", "gemini-1.0-pro ", "gemini-1.0-pro-001", "gemini-2.0-flash-PREVIEW",
             "claude-3-preview "]:
    model(RESEARCH, name, [], note="denied_models is case-sensitive and exact unless it has a *")
model(RESEARCH, "-preview", [M_DEN, M_PROV], note="denied, and no provider can be inferred")
for name in ["claude", "mistral", "codestralx", "gpt-4o", "o3-mini", "llama3.1-70b", "deepseek-chat", "grok-2",
             "command-r-plus", "my-model", "o1"]:
    model(RESEARCH, name, [M_PROV], note="not an allowed provider (or none can be inferred)")
for provider in ["anthropic", "Anthropic", "google"]:
    model(RESEARCH, "gpt-4o", [], provider=provider, note=GIVEN)
model(RESEARCH, "claude-3-opus", [M_PROV], provider="openai", note=GIVEN)
model(RESEARCH, "gemini-1.0-pro", [M_DEN], provider="google", note="the deny list applies whatever the provider")

for name in ["gpt-4o-mini", "o3-mini", "o3-evil", "o3-", "o3-mini-2025"]:
    model(LOCKED, name, [], note="gpt-4o-mini exactly, or o3-* (any run of characters)")
for name in ["gpt-4o-mini-evil", "gpt-4o", "o3", "o30-mini", "O3-mini", "GPT-4O-MINI", "o3_mini", "o1-mini"]:
    model(LOCKED, name, [M_NA], note="an openai model that is not allowed")
for name in ["o3mini", "claude-3-opus", "gemini-1.5-pro", "llama-3"]:
    model(LOCKED, name, [M_NA, M_PROV], note="no allowed provider can be inferred")
model(LOCKED, "o3-mini", [M_PROV], provider="anthropic", note=GIVEN)
model(LOCKED, "gpt-4o-mini", [], provider="OPENAI")


# -- rate-limit tricks ----------------------------------------------------------------------------------


def rate(policy: str, action: dict[str, Any], expect: Any, direct: Any = SAME, note: str = "") -> None:
    case("rate_limit", policy, {"type": "rate_limit", **action}, expect, direct, note)


NO_USAGE = "a direct query must carry the usage the runtime keeps"
rate(CODING, {"kind": "request", "amount": 1}, [], [INVALID], note=NO_USAGE)
rate(CODING, {"kind": "request", "amount": 60}, [], [INVALID], note=NO_USAGE)
rate(CODING, {"kind": "request", "amount": 61}, [RL_EXC], [INVALID], note="61 > 60 per minute; " + NO_USAGE)
rate(CODING, {"kind": "request", "amount": 1001}, [RL_EXC, RL_EXC], [INVALID],
     note="both windows exceeded, one violation each")
rate(CODING, {"kind": "request", "amount": 61, "usage": {"minute": 0, "hour": 0}}, ERR, [RL_EXC],
     note="the caller cannot supply its own usage to the runtime")
rate(CODING, {"kind": "request", "amount": 1, "usage": {"minute": -1000, "hour": 0}}, ERR, [INVALID],
     note="negative usage is refused everywhere")
for amount in [-1, 1.5, "1", True, None, 2**53, [1]]:
    rate(CODING, {"kind": "request", "amount": amount}, ERR, [INVALID, INVALID],
         note="amount must be a whole number from 0 to 2^53-1 (and the direct query lacks usage)")
for kind in ["requests", "Request", "", None, "tokens"]:
    rate(CODING, {"kind": kind, "amount": 1}, ERR, [INVALID, INVALID], note="kind must be request or token")
rate(RESEARCH, {"kind": "token", "amount": 20000}, [], [INVALID], note=NO_USAGE)
rate(RESEARCH, {"kind": "token", "amount": 20001}, [RL_EXC], [INVALID])
rate(RESEARCH, {"kind": "request", "amount": 10**6}, [RL_EXC], [INVALID], note="requests have no hourly limit here")
rate(LOCKED, {"kind": "token", "amount": 10**12}, [], [INVALID], note="no tokens section: tokens are not limited")
rate(LOCKED, {"kind": "request", "amount": 6}, [RL_EXC], [INVALID], note="5 per minute")
rate(LOCKED, {"kind": "request", "amount": 1, "usage": {"minute": 4, "hour": 99}}, ERR, [],
     note="a direct query judges the usage it is given")
rate(LOCKED, {"kind": "request", "amount": 1, "usage": {"minute": 5, "hour": 0}}, ERR, [RL_EXC])


def main() -> None:
    ids = [c["id"] for c in _cases]
    assert len(ids) == len(set(ids))
    lines = ",\n".join(json.dumps(c, ensure_ascii=True, sort_keys=False) for c in _cases)
    OUT.write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for c in _cases:
        counts[c["category"]] = counts.get(c["category"], 0) + 1
    print(f"wrote {len(_cases)} cases to {OUT}: {counts}")


if __name__ == "__main__":
    main()
