"""The rollback floor on its own: in memory and in a file, its bounds, its refusals word for word, its permissions.

Python mutants of ``runtime/floor.py`` survived the client and trust suites (docs/security.md, "Mutation
testing"): an in-memory floor that could not be read, the file's size cap, its modes, the order of versions with
trailing zeros and the refusals' words and pointers. Each test here fails on one of them.
"""

from __future__ import annotations

import dataclasses
import json
import stat

import pytest
from sekuire.compiler.errors import KeyringError
from sekuire.runtime.floor import FloorEntry, PolicyRollbackError, RollbackFloor, check_succession, version_order

WS = "ws_floor"


def _entry(version: str, hash_: str = "aa", status: str = "verified") -> FloorEntry:
    return FloorEntry("policy_1", version, hash_, status)


@pytest.mark.parametrize("where", ["memory", "file"])
def test_the_floor_rises_and_refuses_what_is_older(where, tmp_path):
    floor = RollbackFloor(None if where == "memory" else tmp_path / "deep" / "er" / "floor.json")  # parents made
    assert floor.get(WS) is None
    floor.advance(WS, _entry("2", "bb"))
    with pytest.raises(PolicyRollbackError) as caught:
        floor.advance(WS, _entry("1", "cc"), source="backend")
    assert (caught.value.message, caught.value.pointer, caught.value.source) == (
        "version 1 is not newer than the held version 2; refusing a rollback", "/version", "backend")
    assert floor.get(WS) == FloorEntry("policy_1", "2", "bb")


def test_the_floor_file_and_its_lock_are_private(tmp_path):
    path = tmp_path / "floor.json"
    RollbackFloor(path).advance(WS, FloorEntry("pölicy", "1", "aa"))
    for written in (path, tmp_path / "floor.lock"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600, written
    document = {"workspaces": {WS: {"policy_id": "pölicy", "version": "1", "hash": "aa"}}}
    assert path.read_text(encoding="utf-8") == json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def test_a_floor_that_cannot_be_locked_or_recorded_says_so(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    try:
        blocker.mkdir(parents=True, exist_ok=True)  # what the floor does for its lock file
    except OSError as exc:
        reason = exc.strerror
    with pytest.raises(KeyringError) as locked:
        RollbackFloor(blocker / "floor.json").get(WS)
    assert locked.value.message == f"cannot lock the rollback floor: {reason}"

    from sekuire.runtime import floor as module

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "atomic_write", full)
    with pytest.raises(KeyringError) as recorded:
        RollbackFloor(tmp_path / "floor.json").advance(WS, _entry("1"))
    assert recorded.value.message == "cannot record the rollback floor: No space left on device"


def test_a_floor_file_of_16_mib_is_read_and_one_byte_more_is_refused(tmp_path):
    path = tmp_path / "floor.json"
    document = json.dumps({"workspaces": {WS: {"policy_id": "p", "version": "3", "hash": "aa"}}}).encode()
    path.write_bytes(document + b" " * ((16 << 20) - len(document)))
    assert RollbackFloor(path).get(WS) == FloorEntry("p", "3", "aa")
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(KeyringError) as caught:
        RollbackFloor(path).get(WS)
    assert caught.value.message == "cannot read the rollback floor: larger than the 16 MiB limit"


@pytest.mark.parametrize(("content", "message", "pointer"), [
    ('{"workspaces": [', "the rollback floor is corrupt: ", None),
    ('{"workspaces": []}', "the rollback floor is corrupt: expected an object", "/workspaces"),
    ('{"workspaces": {"ws_floor": {"policy_id": "p", "version": 3, "hash": "aa"}}}',
     "the rollback floor is corrupt: expected policy_id, version and hash strings", "/workspaces/ws_floor"),
])
def test_a_corrupt_floor_is_refused_naming_where(content, message, pointer, tmp_path):
    path = tmp_path / "floor.json"
    path.write_text(content)
    with pytest.raises(KeyringError) as caught:
        RollbackFloor(path).get(WS)
    assert caught.value.message.startswith(message) and caught.value.pointer == pointer
    assert caught.value.source == str(path)
    if pointer is not None:
        assert caught.value.message == message


def test_refusals_name_the_field_that_decided():
    with pytest.raises(PolicyRollbackError) as unsigned:
        check_succession(_entry("1"), _entry("2", status="unsigned"))
    assert (unsigned.value.message, unsigned.value.pointer) == (
        "an unsigned policy cannot replace a signed one", "/signature")
    with pytest.raises(PolicyRollbackError) as unordered:
        check_succession(_entry("1"), _entry("v2"))
    assert (unordered.value.message, unordered.value.pointer) == (
        "version 'v2' cannot be ordered against the held version '1'; refusing it", "/version")


@pytest.mark.parametrize(("version", "order"), [("0", (0,)), ("0.0", (0,)), ("2.1.0", (2, 1)), ("2.0.1", (2, 0, 1))])
def test_trailing_zeros_and_only_trailing_ones_do_not_count(version, order):
    assert version_order(version) == order


def test_a_floor_entry_is_verified_by_default_and_frozen():
    entry = FloorEntry("p", "1", "aa")
    assert entry.signature_status == "verified"
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.version = "0"  # type: ignore[misc]
