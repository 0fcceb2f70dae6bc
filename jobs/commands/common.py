"""Flags shared by several commands."""

from __future__ import annotations

import argparse


def add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (defaults: configs/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set dedup.threshold=0.8 (repeatable)",
    )


def add_ray_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        default=None,
        help="join a running Ray cluster (ADDR or 'auto'); default: an in-process Ray",
    )


def add_requester_pays(p: argparse.ArgumentParser, default: bool = False) -> None:
    p.add_argument(
        "--requester-pays",
        dest="requester_pays",
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"send RequestPayer=requester on S3 calls (default: {'on' if default else 'off'})",
    )


def not_yet(command: str, issue: str):
    from dsllm.errors import NotYetImplemented

    raise NotYetImplemented(f"`dsllm {command}` is not implemented yet ({issue})")
