"""CLI conventions users of opa, pip and conftest expect: --version, quiet closed pipes, fast start-up, an example per command."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sekuire.compiler import __version__
from sekuire.compiler.cli.commands import COMMANDS, EXAMPLES
from sekuire.compiler.cli.main import build_parser, main
from sekuire.compiler.version import OPA_VERSION

from .conftest import VECTORS

SEKUIRE = str(Path(sys.executable).with_name("sekuire"))
#: Modules that ``sekuire --help`` and ``--version`` must not load (each costs tens of milliseconds).
HEAVY = ("pydantic", "jinja2", "cryptography", "jwt", "nacl", "blake3", "httpx", "regorus", "yaml")


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_names_package_opa_and_engine(flag: str) -> None:
    result = subprocess.run([SEKUIRE, flag], capture_output=True, text=True, check=True)
    line = result.stdout.strip()
    assert line.startswith(f"sekuire-opa {__version__} ") and f"OPA {OPA_VERSION}" in line and "regorus" in line
    assert result.stderr == ""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["policy", "--help"]])
def test_start_up_loads_only_what_the_command_needs(argv: list[str]) -> None:
    probe = (
        "import sys\n"
        "from sekuire.compiler.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = eval(result.stdout.strip().splitlines()[-1])  # a list literal printed by the probe
    if argv[0] == "policy":
        assert loaded, "the policy commands need their modules: the probe itself is blind"
    else:
        assert loaded == []


def test_closed_pipe_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, as with `| head -0`
    try:
        result = subprocess.run(
            [SEKUIRE, "bundle", "inspect", str(VECTORS / "opa-bundle" / "bundle.tar.gz"), "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == ""


def _parsers(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _parsers(child, f"{path} {name}".strip())
    return found


PARSERS = _parsers(build_parser())


@pytest.mark.parametrize("path", [path for path, _ in PARSERS])
def test_every_command_help_ends_with_an_example(path: str) -> None:
    parser = dict(PARSERS)[path]
    assert path in EXAMPLES, f"`sekuire {path}` has no example in cli/commands.py EXAMPLES"
    assert EXAMPLES[path].startswith("sekuire "), EXAMPLES[path]
    help_text = parser.format_help().rstrip()
    assert help_text.endswith(EXAMPLES[path]), f"`sekuire {path} --help` does not end with its example"


def test_examples_name_only_existing_commands() -> None:
    assert set(EXAMPLES) <= {path for path, _ in PARSERS}


def test_table_lists_every_command_once() -> None:
    names = [name for name, _, _ in COMMANDS]
    assert len(names) == len(set(names))
    assert names == [path for path, _ in PARSERS if path and " " not in path]


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("name", [name for name, _, _ in COMMANDS])
def test_each_command_loads_on_its_own(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The lazy loader builds a working parser for every command, also those sharing a module with another."""
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.rstrip().endswith(EXAMPLES[name])


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))]


@pytest.mark.parametrize("path", [path for path, _ in PARSERS])
def test_every_option_has_help_text(path: str) -> None:
    missing = [a.option_strings or [a.dest] for a in _options(dict(PARSERS)[path]) if not a.help]
    assert missing == [], f"`sekuire {path}`: options without help: {missing}"


#: The read commands: each takes --format text|json (and --json as its alias).
READ_COMMANDS = ["policy show", "policy validate", "policy eval", "bundle inspect", "bundle verify", "keys list"]


@pytest.mark.parametrize("path", READ_COMMANDS)
def test_read_commands_take_format(path: str) -> None:
    actions = {option: a for a in _options(dict(PARSERS)[path]) for option in a.option_strings}
    assert set(actions["--format"].choices) == {"text", "json"}
    assert actions["--json"].dest == "format" and actions["--json"].const == "json"


def test_format_json_is_json_for_every_read_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keyring = tmp_path / "keyring.json"
    keyring.write_text((VECTORS.parent.parent / "policies" / "examples" / "keyring.json").read_text())
    policy = str(VECTORS / "policy.json")
    bundle, key = str(VECTORS / "opa-bundle" / "bundle.tar.gz"), str(VECTORS / "opa-bundle" / "test-rsa-public.pem")
    runs = {
        "policy show": ["policy", "show", "--file", policy, "--keyring", str(keyring)],
        "policy validate": ["policy", "validate", "--file", policy, "--keyring", str(keyring)],
        "policy eval": ["policy", "eval", "--file", policy, "--keyring", str(keyring),
                        "--action", '{"type": "tool", "name": "shell"}'],
        "bundle inspect": ["bundle", "inspect", bundle],
        "bundle verify": ["bundle", "verify", bundle, "--verification-key", key],
        "keys list": ["keys", "list", "--keyring", str(keyring)],
    }
    assert set(runs) == set(READ_COMMANDS)
    for path, argv in runs.items():
        code = main([*argv, "--format", "json"])
        document = json.loads(capsys.readouterr().out)
        assert isinstance(document, dict) and code in (0, 3), path
    assert main([*runs["policy eval"], "--format", "text"]) == 3
    assert capsys.readouterr().out.splitlines()[0] == "deny"
