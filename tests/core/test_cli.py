"""The command line as a user meets it (subprocesses: exit codes, stderr, no traceback, no torch)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, "-m", "tts_zoo", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("tts-zoo ")


@pytest.mark.parametrize("argv", [["list-components"], ["list-components", "--json"], ["show", "istftnet"],
                                  ["validate", "recipes/demo.yaml"]])
def test_listing_showing_and_validating_never_import_torch(argv):
    code = textwrap.dedent(f"""
        import sys
        from tts_zoo.cli import main
        try:
            main({argv!r})
        except SystemExit as e:
            assert not e.code, e.code
        assert "torch" not in sys.modules, "torch was imported"
        # (the plugin's torch-free command module is imported to build the command table)
        assert not any(m.startswith("tts_zoo_styletts2.") and m != "tts_zoo_styletts2.commands"
                       for m in sys.modules), "a component module was imported"
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr


def test_list_components_shows_every_kind_of_styletts2():
    data = json.loads(run("list-components", "--json").stdout)
    names = {(c["kind"], c["name"]) for c in data["components"]}
    expected = {
        ("text_frontend", "espeak"), ("text_frontend", "phonemes"), ("text_frontend", "characters"),
        ("text_encoder", "text_encoder"), ("language_model", "plbert"), ("style_model", "style_encoder"),
        ("style_model", "style_diffusion"), ("sampler", "adpm2"), ("noise_schedule", "karras"),
        ("duration_model", "prosody_predictor"), ("vocoder", "hifigan"), ("vocoder", "istftnet"),
        ("discriminator", "mpd"), ("discriminator", "msd"), ("discriminator", "wavlm"), ("aligner", "asr_cnn"),
        ("pitch_extractor", "jdc"), ("model", "styletts2"), ("stage", "styletts2_stage1"), ("stage", "styletts2_stage2"),
    }
    assert expected <= names, expected - names
    assert data["broken_plugins"] == []


def test_bad_recipe_fails_with_one_line_per_error_exit_2_and_no_traceback(tmp_path):
    recipe = (REPO / "recipes" / "demo.yaml").read_text()
    assert "component: istftnet" in recipe
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.replace("component: istftnet", "component: istftnett", 1).replace("batch_size:", "batch_sise:", 1))
    r = run("validate", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr
    assert any(f"{bad}:" in l and "unknown vocoder 'istftnett'; did you mean 'istftnet'?" in l for l in lines)
    assert any("data.batch_sise: unknown key; did you mean 'batch_size'?" in l for l in lines)


def test_unknown_component_in_show_and_missing_recipe_exit_2():
    r = run("show", "adpm3")
    assert r.returncode == 2 and "did you mean 'adpm2'?" in r.stderr and "Traceback" not in r.stderr
    r = run("validate", "recipes/nope.yaml")
    assert r.returncode == 2 and "recipe file not found" in r.stderr


def test_overrides_are_validated_like_the_file():
    r = run("validate", "recipes/demo.yaml", "train.max_steps=0")
    assert r.returncode == 2 and "override 'train.max_steps=0'" in r.stderr
    assert run("validate", "recipes/demo.yaml", "train.max_steps=3").returncode == 0


def test_show_documents_the_call_signature_and_params():
    r = run("show", "adpm2", env={**__import__("os").environ, "COLUMNS": "200"})
    assert r.returncode == 0
    assert "sampler(denoise_fn, noise, sigmas, *, extra_args=None, callback=None, generator=None)" in r.stdout
    assert "tts_zoo_styletts2.diffusion.samplers:ADPM2Sampler" in r.stdout and "rho" in r.stdout


@pytest.mark.parametrize("argv, code, message", [
    (["--help"], 0, None),
    (["show", "--help"], 0, None),
    ([], 2, "Commands"),                                 # no command: the help, as a usage error
    (["--bogus"], 2, "No such option: --bogus"),
    (["show"], 2, "Missing argument 'name'"),
    (["list-components", "--kind", "vocoders"], 2, "did you mean 'vocoder'?"),
])
def test_every_command_exit_code_reaches_the_shell(argv, code, message):
    r = run(*argv)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    if message:
        assert message in r.stdout + r.stderr


def test_a_constructor_error_while_training_is_one_line_and_exit_2(tmp_path, toy_registry, monkeypatch, capsys):
    from tts_zoo.cli import main

    monkeypatch.setattr("tts_zoo.registry.default", toy_registry)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {component: toymodel, hidden: 1, vocoder: {component: toyvoc, channels: 0}}\n")
    with pytest.raises(SystemExit) as e:
        main(["train", str(recipe), "--output-dir", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"error: {recipe}: model.vocoder: vocoder 'toyvoc' (tests.core.toy_components:ToyVocoder) "
                                            "rejected its arguments: ValueError: channels must be positive, got 0")
