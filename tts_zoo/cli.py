"""The ``tts-zoo`` command line: a thin typer layer; every command calls a library function.

User errors (``TTSZooError``) print one line per problem on stderr and exit with code 2, without a
traceback. Listing, ``show`` and ``validate`` never import torch.
"""

from __future__ import annotations

import json
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


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


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
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("kind", "name", "version", "package", "summary"):
        table.add_column(col, overflow="fold")
    previous = None
    for c in components:
        status = "" if c.status == "ready" else f" [yellow]({c.status})[/]"
        table.add_row("" if c.kind == previous else c.kind, c.name + status, f"v{c.version}", c.distribution, escape(c.summary))
        previous = c.kind
    console = _console()
    console.print(table)
    for b in reg.broken:
        console.print(f"[red]broken plugin[/] {escape(b.plugin)} ({escape(b.distribution)}): {escape(b.error)}")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Component name (e.g. istftnet, adpm2, tts-zoo:istftnet, istftnet.v1)."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Disambiguate when several kinds share a name."),
) -> None:
    """Show a component's parameters (types, defaults, descriptions) and where it is defined."""
    from rich.markup import escape
    from rich.table import Table

    from tts_zoo.registry import default as reg

    c = reg.resolve(name, kind)
    console = _console()
    status = "" if c.status == "ready" else f"  [yellow]({c.status}: registered, not buildable yet)[/]"
    console.print(f"[bold]{c.name}[/] v{c.version} — {c.kind}{status}")
    console.print(escape(c.summary))
    console.print(f"defined in: {c.target}  (package {c.distribution}, plugin {c.plugin})")
    contract = reg.kinds[c.kind].contract if c.kind in reg.kinds else ""
    if contract:
        console.print(f"called as: {escape(contract)}")
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("parameter", "type", "default", "description"):
        table.add_column(col, overflow="fold")
    for p in c.params:
        default = "[red]required[/]" if p.required else escape(json.dumps(p.default, ensure_ascii=False))
        table.add_row(p.name, escape(p.type), default, escape(p.help))
    console.print(table)


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
    _console(stderr=True).print(f"[green]ok[/] {recipe}: model '{r.model['component']}', {len(r.train.stages)} training stage(s)")


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
# must import cheaply (no torch at module level): they are imported to build the command line.
CORE_COMMANDS = {
    "prepare": "tts_zoo.data.commands:prepare",
    "train": "tts_zoo.train.commands:train",
    "synthesize": "tts_zoo.synthesize:synthesize_command",
    "evaluate": "tts_zoo.evaluate:evaluate_command",
}
PLUGIN_COMMAND_GROUP = "tts_zoo.commands"  # plugins add commands (e.g. import-styletts2) here


def _register_commands() -> None:
    import importlib
    import importlib.metadata

    targets = dict(CORE_COMMANDS)
    for ep in importlib.metadata.entry_points(group=PLUGIN_COMMAND_GROUP):
        targets.setdefault(ep.name, ep.value)
    for name, target in targets.items():
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
    _register_commands()
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
