"""Command-line options for a run, shared by the CLIs that start runs (train, protocol): one
option per :class:`~mixer_lib.config.RunConfig` field, checked by RunConfig itself."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from mixer_lib.config import RunConfig


def add_run_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """``--resume``, ``--overwrite``, ``--from-previous``, ``--no-progress`` and one option
    per :class:`RunConfig` field (values are checked by RunConfig, so bad ones get its
    message)."""
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="move an existing run in --out aside (renamed with a timestamp) "
                             "and start afresh")
    parser.add_argument("--from-previous", action="store_true",
                        help="with --resume: when checkpoint.pt is damaged, move it aside and "
                             "continue from checkpoint.prev.pt")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    for f in fields(RunConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.metadata.get("kind") is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=f.metadata["help"])
        else:
            parser.add_argument(flag, default=f.default, help=f.metadata["help"])


def config_from_args(args: argparse.Namespace, **override: Any) -> RunConfig:
    options = {f.name: getattr(args, f.name) for f in fields(RunConfig)
               if hasattr(args, f.name)}
    return RunConfig(**{**options, **override})
