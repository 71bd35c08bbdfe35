"""What every `textgen COMMAND` parser shares: help, description and an epilog of examples."""

from __future__ import annotations

import argparse


def add_command(
    sub: argparse._SubParsersAction, name: str, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """Add `textgen NAME`; its description and epilog keep their own line breaks."""
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
