"""docs/porting.md runs as written: every Python and console example, against loopback servers, printing what the doc shows.

The doc's blocks run in order, like a reader pasting them: ``python`` blocks in
one namespace (a ``text`` block right after one is the stdout it must print),
the ``yaml`` block is the sekuire.yml of the Python examples, and each ``$``
line of a ``console`` block is a ``sekuire`` command whose stdout must be the
lines under it. The only change made to the examples is the address: the seed's
``https://api.sekuire.ai`` becomes the loopback test backend and the model
provider's URL the loopback chat server.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex

from sekuire.compiler.cli import main

from .backend_server import ChatServer, signed_policy
from .conftest import ROOT

DOC = ROOT / "docs" / "porting.md"
SEED_BACKEND = "https://api.sekuire.ai"
SEED_PROVIDER = "https://api.openai.com/v1"
#: The seed CLI page's example policy.json: models only, no rate_limits.
SEED_POLICY_CONTENT = {"agent": {"models": {"allowed_models": ["gpt-4", "claude-3-opus"],
                                            "allowed_providers": ["openai", "anthropic"]}}}


def blocks() -> list[tuple[str, str]]:
    return re.findall(r"^```(\w+)\n(.*?)^```$", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_doc_has_every_seed_example():
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("python") == 9 and kinds.count("console") == 2 and kinds.count("yaml") == 1
    seed_column = " ".join(line.split("|")[1] for line in DOC.read_text(encoding="utf-8").splitlines()
                           if line.startswith("| `"))
    for seed_name in ("PolicyClient", "fetchActivePolicy", "invalidateCache", "PolicyEnforcer", "enforceTool",
                      "enforceNetwork", "enforceFilesystem", "enforceApi", "enforceModel", "enforceRateLimit",
                      "SEKUIRE_POLICY_DEV_OVERRIDE", "getAgent", "PolicyGateway", "checkCapability",
                      "onHeartbeatResponse", "TaskWorker", "Beacon", "A2ATaskDelegator"):
        assert re.search(rf"\b{seed_name}\b", seed_column), seed_name


def test_every_example_runs_as_written(tmp_path, monkeypatch, capsys, url, http_server, envelope_vectors, vector_seed,
                                       vector_keyring):
    chat = ChatServer()
    chat_url = http_server(tmp_path, chat.handler())
    monkeypatch.setenv("SEKUIRE_KEYRING", str(vector_keyring.path))
    monkeypatch.setenv("SEKUIRE_BACKEND", url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-porting-test")
    monkeypatch.delenv("SEKUIRE_POLICY_DEV_OVERRIDE", raising=False)
    python_dir, cli_dir = tmp_path / "python", tmp_path / "cli"
    python_dir.mkdir()
    cli_dir.mkdir()
    seed_policy = signed_policy(envelope_vectors["valid"], vector_seed, content=SEED_POLICY_CONTENT)
    (python_dir / "policy.json").write_text(json.dumps(seed_policy))
    (cli_dir / "sekuire.yml").write_text("agent:\n  name: assistant\n  llm: {provider: openai, model: gpt-4o}\n"
                                         "logging:\n  enabled: true\n")

    namespace: dict = {"__name__": "porting_doc"}
    ran = {"python": 0, "console": 0}
    items = blocks()
    for index, (kind, body) in enumerate(items):
        if kind == "yaml":
            assert SEED_PROVIDER in body
            (python_dir / "sekuire.yml").write_text(body.replace(SEED_PROVIDER, chat_url + "/v1"))
        elif kind == "python":
            monkeypatch.chdir(python_dir)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body.replace(SEED_BACKEND, url), f"porting.md block {index}", "exec"), namespace)  # noqa: S102
            ran["python"] += 1
            following = items[index + 1] if index + 1 < len(items) else None
            expected_stdout = following[1] if following and following[0] == "text" else ""
            assert out.getvalue() == expected_stdout, f"block {index}:\n{body}"
        elif kind == "console":
            monkeypatch.chdir(cli_dir)
            _run_console(capsys, body, index)
            ran["console"] += 1
    assert ran == {"python": 9, "console": 2}
    for name in ("policy_client", "enforcer", "warn_only", "agent", "gateway"):  # what the examples left open
        namespace[name].close()
    # The agent examples reached the model server, with the key of api_key_env.
    chat_bodies = [json.loads(r.body) for r in chat.requests]
    assert [b["messages"] for b in chat_bodies] == [[{"role": "user", "content": "Summarize the latest incident report"}]] * 2
    assert all(r.headers["Authorization"] == "Bearer sk-porting-test" for r in chat.requests)


def _run_console(capsys, body: str, index: int) -> None:
    commands: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            commands[-1][1].append(line)
    for command, expected in commands:
        argv = shlex.split(command)
        assert argv[0] == "sekuire"
        capsys.readouterr()
        code = main(argv[1:])
        out, err = capsys.readouterr()
        assert code == 0, f"block {index}: {command}: {err}"
        assert out.splitlines() == expected, f"block {index}: {command}"
