"""Build, memory and start-up rows: compile scaling against `opa build` and OPA's activation, peak RSS, CLI start.

Durations of whole processes (``sekuire policy build``, ``opa build``, ``opa run``
until healthy, ``sekuire --help``) are medians of several runs; start-up rows
are timed in turn with their anchors (``opa version``, ``opa eval``).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from sekuire.compiler import load_policy
from sekuire.compiler.bundle.signing import BundleSigner
from sekuire.compiler.bundle.tarball import build_bundle
from sekuire.compiler.rego.compile import compile_policy
from sekuire.runtime import PolicyEnforcer
from sekuire.runtime.engine import rule_ref

from .core import Bench, progress, time_once
from .opa import RestClient, activate, peak_rss_kib, run_timed
from .stats import growth_exponent
from .workload import ACTIONS, AGENT_ID, CACHEABLE_TYPES, SIGNING_ALG, Workload, engine_input

__all__ = ["compile", "memory", "probe_rss", "startup"]

_ROOT = Path(__file__).resolve().parents[2]


# -- 7. start-up (rows timed in turn with their anchor) ----------------------------------------------------------


def startup(bench: Bench) -> None:
    """`sekuire --help`/`--version` against `opa version`; a first decision from a cold `sekuire policy eval`
    against `opa eval` of the same policy (the bundle) and input."""
    sekuire = str(Path(sys.executable).with_name("sekuire"))
    workload = bench.workload
    action = json.dumps(ACTIONS["tool"])
    runs = max(10, bench.settings.repeats * 4)
    commands = {
        "opa-version": [bench.opa, "version"],
        "python": [sys.executable, "-c", "pass"],  # the interpreter's own floor
        "help": [sekuire, "--help"],
        "version": [sekuire, "--version"],
        "opa-eval": [bench.opa, "eval", "--format", "json", "--bundle", str(workload.bundle(10)),
                     "--input", str(workload.input_file("tool")), rule_ref(workload.decision_path)],
        "policy-eval": [sekuire, "policy", "eval", "--keyring", str(workload.keyring.path),
                        "--file", str(workload.policy_file(10)), "--action", action, "--agent", AGENT_ID],
    }
    timings: dict[str, list[float]] = {name: [] for name in commands}
    env = workload.environment()
    for _ in range(runs):  # interleaved: load on the machine hits every command alike
        for name, command in commands.items():
            timings[name].append(run_timed(command, env=env) * 1e3)
    rows = {}
    for name, label in (
        ("opa-version", "`opa version`"),
        ("python", "`python -c pass` (no sekuire)"),
        ("help", "`sekuire --help`"),
        ("version", "`sekuire --version`"),
        ("opa-eval", "`opa eval` of the tool decision on the 10-entry bundle (a cold process)"),
        ("policy-eval", "`sekuire policy eval` of the same decision from the policy.json (a cold process)"),
    ):
        rows[name] = bench.add("startup", f"startup/{name}", label, "ms", statistics.median(timings[name]), n=runs)
    for name in ("python", "help", "version"):
        rows[name].compare(rows["opa-version"])
    rows["policy-eval"].compare(rows["opa-eval"])


# -- 5b. compile ---------------------------------------------------------------------------------------------------


def compile(bench: Bench) -> None:
    timings: dict[str, dict[int, float]] = {"build": {}, "stages": {}, "opa-build": {}, "activate": {}}
    for size in bench.settings.sizes:
        progress(f"  build/{size}")
        _compile_size(bench, size, timings)
    _growth(bench, timings)


def _compile_size(bench: Bench, size: int, timings: dict[str, dict[int, float]]) -> None:
    workload, keys, largest = bench.workload, bench.workload.keys, size == max(bench.settings.sizes) >= 100_000
    env = workload.environment()
    cli_out = workload.directory / f"cli-{size}.tar.gz"
    opa_out = workload.directory / f"opa-{size}.tar.gz"
    sign = ["--signing-key", str(keys.private_pem), "--signing-alg", SIGNING_ALG]
    sekuire = [str(Path(sys.executable).with_name("sekuire")), "policy", "build", "--keyring", str(workload.keyring.path)]
    build_command = [*sekuire, "--file", str(workload.policy_file(size)), "--out", str(cli_out), *sign]
    opa_command = [bench.opa, "build", "--bundle", str(workload.bundle_dir(size)), "--output", str(opa_out), *sign]

    build = timings["build"][size] = bench.median(lambda: run_timed(build_command, env=env))
    if cli_out.read_bytes() != workload.bundle(size).read_bytes():
        raise RuntimeError(f"the CLI's {size}-entry bundle differs from the harness's")
    opa_build = timings["opa-build"][size] = bench.median(lambda: run_timed(opa_command, env=env))
    stages = _stages(bench, size)
    timings["stages"][size] = sum(stages.values())
    activation = timings["activate"][size] = bench.median(lambda: _activation(bench, size))
    enforcer_start = bench.median(
        lambda: time_once(lambda: PolicyEnforcer(workload.policy(size), agent_id=AGENT_ID).close())
    )

    opa_row = bench.add(
        "compile",
        f"opa-build/{size}",
        f"`opa build` of the same files, signed {SIGNING_ALG}, {size:,} entries",
        "s",
        opa_build,
    )
    row = bench.add(
        "compile",
        f"build/{size}",
        f"`sekuire policy build`, signed {SIGNING_ALG}, {size:,} entries (CLI process)",
        "s",
        build,
    )
    row.compare(opa_row)
    if largest:
        row.aim("under 2 s", build < 2)
    bench.add(
        "compile",
        f"build-stages/{size}",
        f"in-process: load+verify {stages['load']:.3f} s, compile {stages['compile']:.3f} s, "
        f"bundle+sign {stages['bundle']:.3f} s",
        "s",
        timings["stages"][size],
        extra=stages,
    ).compare(opa_row)
    opa_size = bench.add(
        "compile", f"opa-bundle/{size}", f"`opa build` bundle, {size:,} entries", "KiB", opa_out.stat().st_size / 1024
    )
    policy_kib = workload.policy_file(size).stat().st_size / 1024
    bench.add(
        "compile",
        f"bundle/{size}",
        f"sekuire bundle, {size:,} entries (policy.json {policy_kib:,.0f} KiB)",
        "KiB",
        cli_out.stat().st_size / 1024,
    ).compare(opa_size)
    row = bench.add(
        "compile",
        f"activate/{size}",
        f"OPA activation: `opa run --bundle` spawn to /health?bundles 200, {size:,} entries",
        "s",
        activation,
    )
    anchor = bench.report.get(f"activate/{min(bench.settings.sizes)}")
    if anchor is not None and anchor is not row:
        row.compare(anchor)
    if largest:
        row.aim("under 1 s", activation < 1)
    bench.add(
        "compile",
        f"enforcer-start/{size}",
        f"PolicyEnforcer(policy) ready to decide: compile + RVM program, {size:,} entries",
        "s",
        enforcer_start,
    ).compare(row)


def _activation(bench: Bench, size: int) -> float:
    server, seconds = activate(bench.opa, bench.workload.bundle(size), bench.workload.keys.public_pem)
    try:
        client = RestClient(server.port, bench.workload.decision_path)
        if client.decide(engine_input("tool")).get("allow") is not True:
            raise RuntimeError(f"OPA denies the tool probe on the {size}-entry bundle")
        client.close()
    finally:
        server.stop()
    return seconds


def _stages(bench: Bench, size: int) -> dict[str, float]:
    """The CLI's work without process start and imports: read+verify, compile, write+sign the bundle."""
    path, keyring = bench.workload.policy_file(size), bench.workload.keyring
    signer = BundleSigner.from_file(bench.workload.keys.private_pem, alg=SIGNING_ALG)
    policy = load_policy(path, keyring)
    compiled = compile_policy(policy)
    return {
        "load": bench.median(lambda: time_once(lambda: load_policy(path, keyring))),
        "compile": bench.median(lambda: time_once(lambda: compile_policy(policy))),
        "bundle": bench.median(lambda: time_once(lambda: build_bundle(compiled, signer=signer))),
    }


def _growth(bench: Bench, timings: dict[str, dict[int, float]]) -> None:
    """k in time ~ N^k between the two largest sizes, where fixed costs no longer hide the slope."""
    sizes = sorted(size for size in bench.settings.sizes if size >= 1_000)
    if len(sizes) < 2:
        return
    low, high = sizes[-2:]
    for name, label in (
        ("build", "`sekuire policy build` CLI"),
        ("stages", "sekuire in-process load+compile+bundle"),
        ("opa-build", "`opa build`"),
        ("activate", "OPA activation"),
    ):
        series = timings[name]
        k = growth_exponent([low, high], [series[low], series[high]])
        fit = growth_exponent(sizes, [series[size] for size in sizes])
        per_thousand = (series[high] - series[low]) / ((high - low) / 1000)
        row = bench.add(
            "compile",
            f"growth/{name}",
            f"{label}: time ~ N^k from {low:,} to {high:,} entries; {per_thousand * 1000:.1f} ms per 1,000 entries "
            f"(fit over {sizes[0]:,}..{high:,}: k={fit:.2f})",
            "k",
            k,
            extra={"fit_all": fit, "seconds_per_1000_entries": per_thousand},
        )
        if name == "stages":  # the CLI's interpreter start would make any growth look sublinear
            row.aim("close to linear (k <= 1.15)", k <= 1.15)



# -- 6. memory -------------------------------------------------------------------------------------------------------


def memory(bench: Bench) -> None:
    sizes = dict.fromkeys(
        [bench.settings.main_size] if bench.settings.quick else [bench.settings.main_size, max(bench.settings.sizes)]
    )
    actions = json.dumps([ACTIONS[kind] for kind in bench.settings.actions if kind in CACHEABLE_TYPES] or [ACTIONS["tool"]])
    for size in sizes:
        progress(f"  rss/{size}")
        server = bench.server if size == bench.settings.main_size else bench.serve(size)
        client = RestClient(server.port, bench.workload.decision_path)
        for kind in bench.settings.actions:
            client.decide(engine_input(kind))
        client.close()
        assert server.proc is not None
        opa = bench.add(
            "memory",
            f"rss/opa/{size}",
            f"OPA server holding the {size:,}-entry bundle (VmHWM)",
            "MiB",
            peak_rss_kib(server.proc.pid) / 1024,
        )
        probe = probe_rss(bench.workload, size, actions)
        bench.add(
            "memory",
            f"rss/enforcer/{size}",
            f"agent process, embedded enforcer of the {size:,}-entry policy "
            f"(VmHWM; {probe['imports_kib'] / 1024:.0f} MiB after imports)",
            "MiB",
            probe["peak_kib"] / 1024,
            extra=probe,
        ).compare(opa)



def probe_rss(workload: Workload, size: int, actions: str) -> dict[str, int]:
    """Peak RSS of a fresh agent process holding an embedded enforcer of the ``size``-entry policy."""
    command = [
        sys.executable,
        "-m",
        "tests.bench.rss_probe",
        str(workload.policy_file(size)),
        str(workload.keyring.path),
        actions,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=workload.environment(), cwd=_ROOT, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"the RSS probe failed: {result.stderr.strip()[-300:]}")
    return json.loads(result.stdout)
