"""The `rrn` entry point: every subcommand has --help with an example and --json."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustresnet.cli import SUBCOMMANDS, build_parser, main


def test_top_level_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "rrn" in capsys.readouterr().out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help_with_example(name):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[name]
    assert "examples:" in sub.format_help()


def _commands(parser, prefix=()):
    """(words, parser) of each command that does something: `data info`, not `data`."""
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not actions:
        yield prefix, parser
        return
    for name, sub in actions[0].choices.items():
        yield from _commands(sub, (*prefix, name))


def test_every_command_prints_its_result_as_json_when_asked():
    """Each is tested with json.loads where it runs (test_cli_arch, test_train_loggers, ...)."""
    commands = dict(_commands(build_parser()))
    assert ("data", "info") in commands and ("train",) in commands
    for words, parser in commands.items():
        assert "--json" in parser._option_string_actions, " ".join(words)


def test_version_names_the_package_torch_and_the_device(capsys):
    import torch

    from robustresnet import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"rrn {__version__} (torch {torch.__version__}, ")


def test_the_package_ships_its_license_citation_and_type_marker():
    root = Path(__file__).resolve().parents[1]
    assert "MIT License" in (root / "LICENSE").read_text()
    assert "2212.11005" in (root / "CITATION.cff").read_text()
    assert (root / "src" / "robustresnet" / "py.typed").is_file()
    pyproject = (root / "pyproject.toml").read_text()
    assert '"torch>=2.3",' in pyproject and '"py.typed", "recipes/**/*.yaml"' in pyproject


def test_a_closed_pipe_ends_quietly():
    """`rrn zoo --json | true`: the reader is gone before rrn writes; no BrokenPipeError
    traceback, and the exit status a shell reports for SIGPIPE."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = "from robustresnet.cli import main; raise SystemExit(main(['zoo', '--json']))"
    shell = f'{sys.executable} -c "{code}" | true; echo "${{PIPESTATUS[0]}}"'
    env = {"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.stderr == "" and done.stdout.strip() == "141"
