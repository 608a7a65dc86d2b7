"""What the quick CLI paths import (start-up time is import time): listing, showing and the version
import neither torch nor numpy nor rich, and only the invoked command's module is loaded; help still
lists every command. (Timings: benchmarks/cli_startup.py.)"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "rich", "transformers")


def imported_by(argv: list[str]) -> tuple[int, str, str, list[str]]:
    """Run ``tts-zoo ARGV`` in a fresh interpreter: (exit code, stdout, stderr, modules it imported)."""
    code = textwrap.dedent(f"""
        import json, sys
        from tts_zoo.cli import main
        try:
            main({argv!r})
            code = 0
        except SystemExit as e:
            code = e.code or 0
        sys.stdout.flush()
        print("\\nMODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr)
        sys.exit(code)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    err, _, modules = r.stderr.rpartition("\nMODULES ")
    return r.returncode, r.stdout, err, json.loads(modules)


@pytest.mark.parametrize("argv", [["--version"], ["list-components"], ["list-components", "--kind", "vocoder"],
                                  ["show", "istftnet"]])
def test_quick_commands_import_no_heavy_library(argv):
    code, out, err, modules = imported_by(argv)
    assert code == 0, err
    assert [m for m in HEAVY if m in modules] == []
    # no other command's module either (tts_zoo.evaluate imports numpy, synthesize typer's parts)
    assert not {"tts_zoo.evaluate", "tts_zoo.synthesize", "tts_zoo.train.commands", "tts_zoo_styletts2.commands"} & set(modules)


def test_list_components_prints_one_row_per_component_with_its_columns():
    code, out, err, _ = imported_by(["list-components", "--kind", "vocoder"])
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["kind", "name", "version", "package", "summary"]
    rows = [line.split(None, 4) for line in lines[1:]]
    assert rows[0][:4] == ["vocoder", "hifigan", "v1", "tts-zoo"]  # the kind once, then blank
    assert [r[0] for r in rows[1:]] == ["istftnet"] and "\x1b[" not in out  # no colour codes into a pipe


def test_show_prints_the_parameter_table_plainly():
    code, out, err, _ = imported_by(["show", "istftnet"])
    assert code == 0, err
    table = out[out.index("parameter"):].splitlines()
    assert table[0].split() == ["parameter", "type", "default", "description"]
    assert any(line.split()[:3] == ["upsample_rates", "list[int]", "[10,"] for line in table)


def test_the_invoked_plugin_or_core_command_is_still_found_and_help_lists_them_all():
    code, out, err, modules = imported_by(["import-styletts2", "--help"])
    assert code == 0 and "--checkpoint" in out and "tts_zoo_styletts2.commands" in modules
    assert "tts_zoo.evaluate" not in modules
    code, out, err, _ = imported_by(["--help"])
    assert code == 0
    for name in ("list-components", "show", "validate", "prepare", "train", "synthesize", "evaluate", "import-styletts2"):
        assert name in out, name
