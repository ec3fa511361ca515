"""Time-bounded fuzzing of the policy.json parser and the bundle reader (``make fuzz``; not part of CI).

``python -m tests.fuzz [--seconds N] [--target policy|content|bundle ...] [--engine atheris|hypothesis]``

Targets, each fed bytes:

- ``policy``: strict JSON parsing, the envelope model, hash and signature
  verification against the examples' keyring (what ``load_policy`` runs);
- ``content``: the content model and the compile step (lowering and Rego
  rendering) of an unsigned policy built around the bytes;
- ``bundle``: the bundle reader (gzip, tar, names, JSON), the data and module
  views, signature decoding and verification (what ``EmbeddedEngine.from_bundle``
  runs before it compiles anything).

A target may only return or raise the project's own error of its kind with a
one-line message; anything else (another exception, a hang beyond libFuzzer's
``-timeout``, a crash) is a finding. With atheris (coverage-guided libFuzzer,
``pip install atheris``) each target runs in a subprocess for its share of the
time, seeded with the example policies and signed bundles (and a dictionary of
their JSON keys), and a finding is saved under ``build/fuzz/``; without it, hypothesis drives
the same targets with random and mutated seeds (the ``fuzz`` profile of
tests/hypothesis_profiles.py). Nothing is imported here, so that atheris can
instrument the project's modules before they load.
"""
