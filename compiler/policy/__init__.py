"""Policy trust: the policy.json model, canonical JSON, BLAKE3/Ed25519 integrity, the keyring, loading and the backend client.

Modules: :mod:`.model` (envelope and content sections), :mod:`.canonical`
(the one canonical JSON serializer), :mod:`.integrity` (hash and signature),
:mod:`.keyring` (trusted keys), :mod:`.document` (``load_policy``/``Policy``),
:mod:`.backend` (fetching policies and keys over HTTP). Public names are
re-exported by :mod:`sekuire.compiler`; this package imports nothing itself so
that importing one module stays cheap.
"""

__all__: list[str] = []
