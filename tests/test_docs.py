"""Every command has help with an example and is documented in the README (sqlite-utils style)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO


def commands():
    from aloe_cli.cli import app
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)


@pytest.mark.parametrize("name", commands())
def test_command_has_help_with_example(cli, name):
    r = cli(name, "--help")
    assert r.exit_code == 0
    assert "Example:" in r.stdout, f"`aloe {name} --help` has no Example: line"


@pytest.mark.parametrize("name", commands())
def test_command_is_in_readme(name):
    readme = (REPO / "README.md").read_text()
    assert re.search(rf"aloe {re.escape(name)}\b", readme), f"README does not show `aloe {name}`"


def test_help_is_instant_and_imports_nothing_heavy():
    code = ("import sys, aloe_cli.cli; "
            "heavy = [m for m in ('torch', 'h5py', 'mujoco', 'matplotlib', 'pandas', 'pyarrow') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing the CLI pulled in {out.stdout.strip()}"
    r = subprocess.run([sys.executable, "-m", "aloe_cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "ingest" in r.stdout


def test_library_never_imports_typer_or_rich():
    for path in (REPO / "aloe_cli").rglob("*.py"):
        rel = path.relative_to(REPO / "aloe_cli")
        if rel.parts[0] in ("commands",) or rel.name in ("cli.py", "__main__.py"):
            continue
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(typer|rich)\b", text, re.M), f"{rel} imports typer/rich"
