"""Loading grids: the shipped ones by name (``study/grids/NAME.yaml``) or any grid file by path,
read with a YAML loader that refuses a key given twice."""

from __future__ import annotations

from pathlib import Path

import yaml

from study.core.errors import StudyConfigError
from study.core.paths import grids_dir
from study.core.registry import lookup
from study.grid.expansion import Grid
from study.grid.parse import parse_grid


def available_grids() -> list[str]:
    """Names of the grids shipped in ``study/grids/``."""
    return sorted(p.stem for p in grids_dir().glob("*.yaml"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (a later value would silently replace the first)",
                key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_grid(name_or_path: str | Path) -> Grid:
    """Load a grid by shipped name (``smoke``) or by path to a YAML file.

    Raises:
        StudyConfigError: no such grid (lists the shipped ones), bad YAML (a duplicate key
            included), or bad content.
    """
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        shipped = {p.stem: p for p in grids_dir().glob("*.yaml")}
        if str(name_or_path) not in shipped:
            if path.suffix in (".yaml", ".yml"):
                raise StudyConfigError(f"Grid file {str(path)!r} does not exist.")
            lookup(shipped, str(name_or_path), "grid")
        path = shipped[str(name_or_path)]
    try:
        spec = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"Grid file {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_grid(spec, source=path)
