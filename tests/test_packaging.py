"""Packaging: the wheel maps compiler/ and runtime/ to sekuire.*, ships the Rego library, and every module's __all__ is honest."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import sekuire.compiler
import sekuire.runtime

from .conftest import ROOT


def _modules():
    for package in (sekuire.compiler, sekuire.runtime):
        yield package.__name__
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_all_is_explicit_sorted_and_complete(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ names missing {symbol}"
    defined_here = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == name
    }
    assert defined_here <= set(exported), f"{name} defines public names missing from __all__: {defined_here - set(exported)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(out)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("sekuire_opa-*.whl"))


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "sekuire/compiler/__init__.py" in names and "sekuire/runtime/__init__.py" in names
    assert "sekuire/compiler/py.typed" in names
    assert not any(n.startswith(("compiler/", "runtime/", "tests/")) for n in names), "top-level modules leaked"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "sekuire = sekuire.compiler.cli:run" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_imports_from_any_directory(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    deps = sysconfig.get_paths()["purelib"]
    # -S: no site, so the editable install's finder cannot answer; only the wheel and the dependencies are visible.
    code = "import sekuire.compiler, sekuire.runtime; print(sekuire.compiler.__file__)"
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd="/",
        env={"PYTHONPATH": f"{target}:{deps}"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(target))
