"""The trust chain: keys trust/list/remove, rotation statements (with the project's vectors), TOFU, the persisted floor."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from sekuire.compiler import BadSignatureError, Keyring, UnknownKeyError
from sekuire.compiler.cli import main
from sekuire.compiler.policy.keyring import fingerprint
from sekuire.compiler.policy.rotation import verify_rotation
from sekuire.runtime import PolicyClient, PolicyRollbackError
from sekuire.runtime.floor import RollbackFloor

from .backend_server import signed_policy
from .data import make_rotation_vectors

VECTORS = json.loads(make_rotation_vectors.TARGET.read_text(encoding="utf-8"))
WS = "ws_abc123"


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _trusted() -> Keyring:
    trusted = VECTORS["trusted"]
    return Keyring(keys={trusted["key_id"]: bytes.fromhex(trusted["public_key"])})


# -- rotation statements ----------------------------------------------------------------------------------


def test_rotation_vectors_are_current() -> None:
    assert make_rotation_vectors.TARGET.read_text(encoding="utf-8") == make_rotation_vectors.render()


@pytest.mark.parametrize("vector", VECTORS["statements"], ids=lambda v: v["name"])
def test_rotation_vector_verifies_exactly_when_it_says(vector: dict) -> None:
    rotation = vector["rotation"]
    args = (_trusted(), vector["key_id"], bytes.fromhex(vector["public_key"]), rotation["endorsed_by"],
            rotation["signature"])
    if vector["valid"]:
        verify_rotation(*args)
        assert fingerprint(bytes.fromhex(vector["public_key"])) == vector["fingerprint"]
    else:
        with pytest.raises((UnknownKeyError, BadSignatureError)) as info:
            verify_rotation(*args)
        # each refusal says which key and why (what `keys trust` and `policy pull` print)
        expected = {
            "self endorsement": "key 'key_old' endorses itself; a rotation needs a key already trusted",
            "untrusted endorser": "key 'key_new' is endorsed by 'key_unknown', which is not in the trusted keyring",
        }.get(vector["name"], f"rotation statement for key '{vector['key_id']}' is not signed by 'key_old'")
        assert str(info.value) == expected


def test_a_rotation_signature_that_is_not_hex_is_refused_as_such() -> None:
    trusted = VECTORS["trusted"]
    with pytest.raises(BadSignatureError) as info:
        verify_rotation(_trusted(), "key_new", bytes(32), trusted["key_id"], "XY" * 64)
    assert str(info.value) == "rotation signature: expected 128 lower-case hex digits"


# -- keys trust / list / remove ---------------------------------------------------------------------------


def test_keys_trust_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keyring = tmp_path / "keyring.json"
    public = SigningKey(bytes([9] * 32)).verify_key.encode()
    code, out, _ = _run(capsys, "keys", "trust", "--key-id", "key_a", "--public-key", public.hex(), "--keyring", keyring)
    assert code == 0 and fingerprint(public) in out
    assert Keyring.load(keyring).get("key_a") == public

    code, out, _ = _run(capsys, "keys", "list", "--keyring", keyring, "--format", "json")
    listed = json.loads(out)["keys"]
    assert code == 0 and listed == [{"key_id": "key_a", "algorithm": "ed25519", "public_key": public.hex(),
                                     "fingerprint": fingerprint(public)}]
    code, out, _ = _run(capsys, "keys", "list", "--keyring", keyring)
    assert out.split() == ["key_a", "ed25519", fingerprint(public)]

    assert _run(capsys, "keys", "remove", "--key-id", "key_a", "--keyring", keyring)[0] == 0
    assert Keyring.load(keyring).keys == {}


def test_keys_trust_refuses_a_fingerprint_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keyring = tmp_path / "keyring.json"
    public = SigningKey(bytes([9] * 32)).verify_key.encode()
    code, _, err = _run(capsys, "keys", "trust", "--key-id", "key_a", "--public-key", public.hex(),
                        "--fingerprint", "SHA256:not-it", "--keyring", keyring)
    assert code == 1 and err.count("\n") == 1 and not keyring.exists()


def _key_document(vector: dict) -> bytes:
    return json.dumps({"key_id": vector["key_id"], "algorithm": "ed25519", "public_key": vector["public_key"],
                       "rotation": vector["rotation"]}).encode()


@pytest.mark.parametrize("vector", VECTORS["statements"], ids=lambda v: v["name"])
def test_keys_trust_from_backend_follows_only_a_verified_rotation(vector: dict, backend, url, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    keyring_file = tmp_path / "kr.json"
    trusted = _trusted()
    trusted.path = keyring_file
    trusted.save()
    before = keyring_file.read_bytes()
    backend.keys[vector["key_id"]] = _key_document(vector)
    code, out, err = _run(capsys, "keys", "trust", "--key-id", vector["key_id"], "--from-backend", url,
                          "--keyring", keyring_file)
    if vector["valid"]:
        assert code == 0 and "endorsed by trusted key key_old" in out
        assert Keyring.load(keyring_file).get(vector["key_id"]) == bytes.fromhex(vector["public_key"])
    else:
        assert code == 1 and err.count("\n") == 1 and keyring_file.read_bytes() == before


def test_pull_trusts_on_first_use_only_an_empty_keyring(backend, url, tmp_path: Path, envelope_vectors,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    keyring_file = tmp_path / "kr.json"
    out_file = tmp_path / "policy.json"
    code, _, err = _run(capsys, "policy", "pull", "--workspace", WS, "--backend", url, "--out", out_file,
                        "--keyring", keyring_file)
    assert code == 1 and not out_file.exists() and not keyring_file.exists()  # no TOFU without the flag
    code, out, _ = _run(capsys, "policy", "pull", "--workspace", WS, "--backend", url, "--out", out_file,
                        "--keyring", keyring_file, "--trust-on-first-use")
    key = bytes.fromhex(envelope_vectors["key"]["public_key_hex"])
    assert code == 0 and fingerprint(key) in out and "Signature: verified" in out
    assert Keyring.load(keyring_file).get("key_test_1") == key


# -- the rollback floor -----------------------------------------------------------------------------------


def test_the_floor_survives_a_restart(backend, url, vector_keyring, vector_seed, envelope_vectors) -> None:
    v2 = signed_policy(envelope_vectors["valid"], vector_seed, version="2")
    backend.set_policy(v2)
    with PolicyClient(url, keyring=vector_keyring) as client:
        assert client.fetch_active_policy(WS).version == "2"
    floor_file = vector_keyring.path.with_name(vector_keyring.path.name + ".floor.json")
    assert json.loads(floor_file.read_text())["workspaces"][WS]["version"] == "2"
    backend.set_policy(envelope_vectors["valid"])  # the backend serves v1 again: a rollback
    with PolicyClient(url, keyring=vector_keyring) as restarted:  # a new process would read the same file
        with pytest.raises(PolicyRollbackError):
            restarted.fetch_active_policy(WS)


class _Version:
    def __init__(self, version: int) -> None:
        self.policy_id, self.version, self.hash = "p", str(version), f"{version:064x}"
        self.workspace_id, self.signature_status = WS, "verified"


def test_concurrent_agents_move_the_floor_to_the_highest_version(tmp_path: Path) -> None:
    path = tmp_path / "kr.json.floor.json"
    refused: list[int] = []

    def agent(versions: range) -> None:
        floor = RollbackFloor(path)  # each agent its own object, as separate processes would have
        for version in versions:
            try:
                floor.advance(WS, _Version(version))
            except PolicyRollbackError:
                refused.append(version)

    threads = [threading.Thread(target=agent, args=(range(start, 200, 8),)) for start in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entry = RollbackFloor(path).get(WS)
    assert entry is not None and entry.version == "199"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kr.json.floor.json", "kr.json.floor.lock"]
