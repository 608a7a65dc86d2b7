"""The ``tts-zoo`` command line: a thin typer layer; every command calls a library function.

User errors (``TTSZooError``) print one line per problem on stderr and exit with code 2, without a
traceback. Start-up is import time: listing, ``show``, ``validate`` and ``--version`` import neither
torch nor numpy nor rich, and a command defined in another module is imported only when it is the one
invoked (or for the help), so ``tts-zoo list-components`` answers in a fraction of a second
(``benchmarks/cli_startup.py``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from tts_zoo import __version__
from tts_zoo.errors import TTSZooError

COMPUTE_COMMANDS = {"train", "synthesize", "evaluate", "prepare", "import-styletts2"}

app = typer.Typer(
    name="tts-zoo",
    help="A text-to-speech model zoo built around a registry of swappable components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _styled(text: str, code: str, stream: Any = None) -> str:
    """``text`` in an ANSI style (``1`` bold, ``31`` red, ``32`` green, ``33`` yellow) on a terminal,
    unless NO_COLOR is set; plain otherwise. (No rich here: importing it costs start-up time.)"""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return text
    return f"\033[{code}m{text}\033[0m"


def _print_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; on a terminal the last column wraps to its width."""
    import shutil
    import textwrap

    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers) - 1)]
    indent = sum(widths) + 2 * len(widths)
    wrap = shutil.get_terminal_size().columns - indent if sys.stdout.isatty() else 0
    for n, row in enumerate((headers, *rows)):
        lines = textwrap.wrap(row[-1], max(wrap, 20)) if wrap and row[-1] else [row[-1]]
        cells = "".join(f"{cell:<{w}}  " for cell, w in zip(row, widths))
        print(_styled(cells + lines[0], "1") if n == 0 else cells + lines[0])
        for line in lines[1:]:
            print(" " * indent + line)


def _version_callback(value: bool) -> None:
    if value:
        print(f"tts-zoo {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """tts-zoo: train, synthesize and extend TTS models from YAML recipes."""
    from tts_zoo.threads import configure_threads

    # Before torch is imported: a busy machine gets fewer threads (OMP_NUM_THREADS wins). The commands
    # that compute for long measure the idle cores over 0.2 s; the others use the load average (no delay).
    configure_threads(0.2 if ctx.invoked_subcommand in COMPUTE_COMMANDS else 0.0)


@app.command("list-components")
def list_components(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Only this kind (e.g. vocoder, sampler)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List every registered component (name, kind, version, providing package, summary)."""
    from tts_zoo.registry import default as reg

    components = reg.list(kind)
    if as_json:
        rows = [
            {"name": c.name, "kind": c.kind, "version": c.version, "status": c.status,
             "distribution": c.distribution, "plugin": c.plugin, "target": c.target, "summary": c.summary}
            for c in components
        ]
        broken = [{"plugin": b.plugin, "distribution": b.distribution, "error": b.error} for b in reg.broken]
        print(json.dumps({"components": rows, "broken_plugins": broken}, indent=2))
        return
    rows, previous = [], None
    for c in components:
        status = "" if c.status == "ready" else f" ({c.status})"
        rows.append(("" if c.kind == previous else c.kind, c.name + status, f"v{c.version}", c.distribution, c.summary))
        previous = c.kind
    _print_table(("kind", "name", "version", "package", "summary"), rows)
    for b in reg.broken:
        print(f"{_styled('broken plugin', '31')} {b.plugin} ({b.distribution}): {b.error}")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Component name (e.g. istftnet, adpm2, tts-zoo:istftnet, istftnet.v1)."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Disambiguate when several kinds share a name."),
) -> None:
    """Show a component's parameters (types, defaults, descriptions) and where it is defined."""
    from tts_zoo.registry import default as reg

    c = reg.resolve(name, kind)
    status = "" if c.status == "ready" else "  " + _styled(f"({c.status}: registered, not buildable yet)", "33")
    print(f"{_styled(c.name, '1')} v{c.version} — {c.kind}{status}")
    print(c.summary)
    print(f"defined in: {c.target}  (package {c.distribution}, plugin {c.plugin})")
    contract = reg.kinds[c.kind].contract if c.kind in reg.kinds else ""
    if contract:
        print(f"called as: {contract}")
    rows = [(p.name, p.type, "required" if p.required else json.dumps(p.default, ensure_ascii=False), p.help)
            for p in c.params]
    _print_table(("parameter", "type", "default", "description"), rows)


@app.command("validate")
def validate(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.max_steps=10."),
    print_recipe: bool = typer.Option(False, "--print", help="Print the resolved recipe."),
    allow_import_paths: bool = typer.Option(False, "--allow-import-paths", help="Allow module:Class component names."),
) -> None:
    """Validate a recipe (schema and every component block) without building anything."""
    from tts_zoo.recipe import dump_recipe, load_recipe

    r = load_recipe(recipe, overrides or [], allow_import_paths=allow_import_paths)
    if print_recipe:
        print(dump_recipe(r), end="")
    print(f"{_styled('ok', '32', sys.stderr)} {recipe}: model '{r.model['component']}', {len(r.train.stages)} training stage(s)",
          file=sys.stderr)


@app.command("catalogue")
def catalogue(
    check: bool = typer.Option(False, "--check", help="Exit 1 if a catalogue is out of date with the code."),
) -> None:
    """Regenerate the installed plugins' registry.yaml params/summaries from their constructors."""
    import importlib.resources

    import yaml

    from tts_zoo.catalogue import regenerate
    from tts_zoo.registry import CATALOGUE_FILE, _import_target, default as reg, entry_point_sources

    stale = []
    for source in entry_point_sources():
        path = Path(str(importlib.resources.files(source.module).joinpath(CATALOGUE_FILE)))
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        new = regenerate(data, _import_target, reg.kind_of_class)
        header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
        new_text = header + yaml.safe_dump(new, sort_keys=False, allow_unicode=True, width=100)
        if new_text != text:
            stale.append(path)
            if not check:
                path.write_text(new_text, encoding="utf-8")
    verb = "out of date" if check else "updated"
    for p in stale:
        print(f"{verb}: {p}")
    if check and stale:
        print("run `tts-zoo catalogue` to regenerate", file=sys.stderr)
        raise typer.Exit(1)


# Commands that live beside the library code they wrap ("name": "module:function"). Their modules
# should import cheaply (no torch at module level): the invoked one is imported, all of them for --help.
CORE_COMMANDS = {
    "prepare": "tts_zoo.data.commands:prepare",
    "train": "tts_zoo.train.commands:train",
    "synthesize": "tts_zoo.synthesize:synthesize_command",
    "evaluate": "tts_zoo.evaluate:evaluate_command",
}
PLUGIN_COMMAND_GROUP = "tts_zoo.commands"  # plugins add commands (e.g. import-styletts2) here


def _register_commands(argv: List[str]) -> None:
    """Add the commands defined outside this module: only the one invoked when ``argv`` names one (so
    that e.g. ``list-components`` imports neither numpy nor the plugins' command modules), else all
    of them (help, usage errors)."""
    import importlib

    invoked = next((a for a in argv if not a.startswith("-")), None)
    if invoked is None and "--version" in argv:
        return
    present = {c.name for c in app.registered_commands}
    if invoked in present:
        return
    targets = dict(CORE_COMMANDS)
    if invoked not in targets:
        import importlib.metadata

        for ep in importlib.metadata.entry_points(group=PLUGIN_COMMAND_GROUP):
            targets.setdefault(ep.name, ep.value)
    if invoked in targets:
        targets = {invoked: targets[invoked]}
    for name, target in targets.items():
        if name in present:
            continue
        module, _, attr = target.partition(":")
        try:
            function = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:  # a broken plugin must not break the CLI
            if not module.startswith("tts_zoo."):
                print(f"warning: command {name!r} unavailable ({target}: {e})", file=sys.stderr)
            continue
        app.command(name)(function)


def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point: user errors → one line each on stderr, exit code 2.

    Every command's exit code reaches the shell: ``raise typer.Exit(code)`` (which click, run with
    ``standalone_mode=False``, hands back as the return value rather than raising) or an ``int``
    returned by the command; ``None`` is success.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    _register_commands(argv)
    try:
        code = app(args=argv, standalone_mode=False)
    except TTSZooError as e:
        for line in str(e).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Abort as e:  # an EOF at a prompt (click's Ctrl-C, with older typer)
        interrupted = isinstance(e.__cause__, KeyboardInterrupt)
        print("interrupted" if interrupted else "aborted", file=sys.stderr)
        sys.exit(130 if interrupted else 1)
    except Exception as e:
        # Usage errors (unknown option, missing argument, no command). Recent typer releases vendor
        # their own click, so these are recognised by what they do rather than by click's class.
        if callable(getattr(e, "show", None)) and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            sys.exit(e.exit_code)
        raise
    if isinstance(code, int) and not isinstance(code, bool) and code:
        if code == 130:
            print("interrupted", file=sys.stderr)
        sys.exit(code)


if __name__ == "__main__":
    main()
