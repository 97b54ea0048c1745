"""``python -m writepath.lab ARGS`` = ``writepath lab ARGS`` (usable before the CLI wires it)."""

from __future__ import annotations

import argparse
import sys

from writepath.lab.cli import add_parser, main


def _main() -> int:
    parser = argparse.ArgumentParser(prog="writepath")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["lab", *sys.argv[1:]])
    return main(args)


if __name__ == "__main__":
    sys.exit(_main())
