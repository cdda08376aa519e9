"""Shared command-line plumbing of the training scripts: YAML config + `--set key=value` overrides."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeVar

import yaml

from common.config import ConfigError, from_dict

T = TypeVar("T")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="YAML preset (configs/train_*.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, dotted for nested keys (e.g. --set data.source=/x "
                             "--set total_kimg=50); the value is parsed as YAML")


def apply_override(data: dict, assignment: str, source: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(source, assignment, "override must look like key=value")
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(source, key, f"'{part}' is not a mapping, cannot set a sub-key")
    node[parts[-1]] = yaml.safe_load(value)


def load_with_overrides(path: Path, cls: type[T], overrides: list[str]) -> T:
    """load_config's strict validation, after applying the command-line overrides to the YAML."""
    if not path.is_file():
        raise ConfigError(str(path), "", "file not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for assignment in overrides:
        apply_override(data, assignment, f"{path} (--set)")
    return from_dict(cls, data, str(path))
