"""Where a team's inventory says which shards are damaged (a python step's callable, by import path)."""

from __future__ import annotations


def damaged_shards() -> list[str]:
    return ["shard-03", "shard-11"]
