"""Dotted-key overrides of params (`train.epochs=60`), as `dvc exp run -S` takes them: the benchmark's `--set`.

params = override(load_params("params.yaml"), ["train.epochs=5", "model.pooling=mean"])
"""

from __future__ import annotations

import yaml

from ser.config import Params, ParamsError, parse_params


def override(params: Params, sets: list[str] | dict[str, object], origin: str = "--set") -> Params:
    """A copy of `params` with dotted keys replaced (`["train.epochs=60"]`, values as YAML, or a dict), as
    `dvc exp run -S` does; `origin` is named in errors.

    Raises:
        ParamsError: a malformed `key=value`, or a value the schema rejects (naming the key).
    """
    raw = params.model_dump(by_alias=True)
    items = sets.items() if isinstance(sets, dict) else [_split_set(s, origin) for s in sets]
    for key, value in items:
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ParamsError(f"{origin}: {key}: no such section {part!r}")
            node = node[part]
        if leaf not in node:
            raise ParamsError(f"{origin}: {key}: no such key; expected one of {sorted(node)}")
        node[leaf] = value
    return parse_params(raw, origin)


def _split_set(item: str, origin: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ParamsError(f"{origin}: {item!r}: expected key=value, e.g. train.epochs=60")
    return key.strip(), yaml.safe_load(value)
