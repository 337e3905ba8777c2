"""argparse pieces both command modules share: where a subcommand is added, and the options every command spells the same."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

RUN_HELP = "run directory written by `snlad train`"


@dataclass(frozen=True)
class Commands:
    """Where subcommands are added: argparse's sub-parsers, and the options each subcommand also takes (``--debug``, ...)."""

    parsers: argparse._SubParsersAction
    common: argparse.ArgumentParser

    def add(
        self,
        name: str,
        summary: str,
        description: str,
        handler: Callable[[argparse.Namespace], object] | None = None,
    ) -> argparse.ArgumentParser:
        """The parser of ``NAME`` (``summary`` in the list of commands, ``description`` in its ``--help``) that calls ``handler``."""
        parser = self.parsers.add_parser(name, parents=[self.common], help=summary, description=description)
        if handler is not None:
            parser.set_defaults(handler=handler)
        return parser

    def group(self, name: str, summary: str, description: str) -> Commands:
        """A command made of commands of its own (``snlad probe mixup``); the one chosen is in ``args.<name>``."""
        return Commands(self.add(name, summary, description).add_subparsers(dest=name, required=True), self.common)


def run_option(parser: argparse.ArgumentParser) -> None:
    """``--run RUN``, the run a command reads."""
    parser.add_argument("--run", required=True, help=RUN_HELP)
