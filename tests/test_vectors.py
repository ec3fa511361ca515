"""The copied test vectors stay byte-identical to the shared originals (tests/vectors/README.md)."""

from __future__ import annotations

import hashlib

import pytest

from .conftest import VECTORS

#: SHA-256 of each vector file as copied from the shared vectors; a change here is a change of contract.
PINNED = {
    "policy-envelope.json": "3ea08bffc02e7325816f9c951e3c36931d1cd77e478b5bf790f2c57069da67f0",
    "policy.json": "d1113289fa3882a685b67fff2a0a4e17945acbdaab69b02ad21295756a115743",
    "opa-bundle/README.md": "55c43d060f62d9c078ba262596b7bbec96eb506763f5e711b9735aefe5105846",
    "opa-bundle/bundle.tar.gz": "77282d5355ddb8bd0eec3cc3ddedc277cad900f43ee25ac2b0d5617daaa758bc",
    "opa-bundle/canonical-data.json.bin": "0f0fe6b9c5cd4c0a00d2c1ce4f68690331afa7845ed06ae54501b1f6f9b5bb0d",
    "opa-bundle/canonical-manifest.bin": "eb4ba5f38163943b1ac42b8a2f15cc6dba9f20f6bc59f82a98fba3f11fc54384",
    "opa-bundle/digests.json": "bcc40b408838a7e16ec57e7e9487d946d3f7c09a0f77ec552109aef20a237a4c",
    "opa-bundle/test-rsa-private.pem": "2478f505a765ec6ab6f1cba8985c69bedf102981690d7c2e25735784dce18f6d",
    "opa-bundle/test-rsa-public.pem": "83aaa796e610ed56d4f3a223f6cbfaf93b3aef5ae30e5a6dba1cd97206fda16f",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_vector_file_is_unchanged(name: str) -> None:
    assert hashlib.sha256((VECTORS / name).read_bytes()).hexdigest() == PINNED[name]


def test_no_unpinned_vector_files() -> None:
    present = {p.relative_to(VECTORS).as_posix() for p in VECTORS.rglob("*") if p.is_file()}
    assert present - {"README.md"} == set(PINNED)
