"""The asyncio path of OPAEngine (issue 14.6) against real OPA: concurrent decisions equal the synchronous path's.

The transport itself (keep-alive per event loop, chunked and interim answers, connections closed while idle, TLS,
bounds, deadlines) is tested in ``test_asynchttp.py``; bad answers on both paths in ``test_engines.py``.
"""

from __future__ import annotations

import asyncio

from sekuire.compiler import load_policy
from sekuire.runtime import OPAEngine, PolicyEnforcer

from .security_support import serve_bundles, signed_bundle
from .test_opa_admin import ACTIONS
from .test_opa_integration import CODING, KEYRING


def test_async_decisions_equal_sync_ones_against_real_opa(opa_bin, tmp_path):
    policy = load_policy(CODING, KEYRING)
    with serve_bundles(opa_bin, {"coding": signed_bundle(policy)}, tmp_path) as opa:
        engine = OPAEngine(opa.url)
        enforcer = PolicyEnforcer(policy, engine=engine, cache=False)

        async def decide() -> list:
            decisions = await asyncio.gather(*(enforcer.acheck(action) for action in ACTIONS * 3))
            await engine.aclose()
            return list(decisions)

        concurrent = asyncio.run(decide())
        with OPAEngine(opa.url) as sync_engine:
            expected = [PolicyEnforcer(policy, engine=sync_engine, cache=False).check(a) for a in ACTIONS * 3]
    assert concurrent == expected and {d.allow for d in expected} == {True, False}
