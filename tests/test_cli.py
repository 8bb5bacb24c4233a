"""The `rrn` entry point: every subcommand has --help with an example."""

from __future__ import annotations

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
