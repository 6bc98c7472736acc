"""The run simulation behind the estimates: a task graph, greedy list scheduling under caps, and
the longest path. Plain Python over integers (microseconds): no Airflow, no plan types but Plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from heapq import heapify, heappop, heappush

from recovery_provider.plan.model import DEFAULT_POOL, Plan

_US = timedelta(microseconds=1)


# -- the task graph of one scenario ---------------------------------------------------------------
@dataclass(frozen=True)
class Demand:
    """What a task holds while it runs; tasks with equal demands queue together."""

    pool: str | None  # None: not pool-capped
    slots: int
    group: tuple[str, str] | None  # (phase, step) whose running instances max_parallel counts


@dataclass(slots=True)
class Node:
    label: str
    kind: str
    phase_id: str | None
    step_id: str | None
    target: int | None
    wave: int | None
    duration: int  # microseconds: integer time keeps "at the same instant" exact
    deps: tuple[int, ...]  # always lower ids: creation order is a topological order
    demand: int  # index into Graph.demands; -1 for tasks that hold no slot
    hidden: bool  # a modelling join, not a task the DAG has


@dataclass
class Graph:
    nodes: list[Node]
    demands: list[Demand]
    children: list[list[int]] = field(init=False)

    def __post_init__(self) -> None:
        self.children = [[] for _ in self.nodes]
        for index, node in enumerate(self.nodes):
            for dep in node.deps:
                self.children[dep].append(index)


def us(duration: timedelta | None) -> int:
    return duration // _US if duration is not None else 0


def seconds(microseconds: int) -> float:
    return microseconds / 1_000_000


# -- simulation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Caps:
    pools: dict[str, int]  # pool -> slots
    max_parallel: dict[str, int]  # phase -> running instances per step
    max_active: int | None


def caps_of(plan: Plan) -> Caps:
    pools = {name: pool.slots for name, pool in plan.spec.pools.items() if name != DEFAULT_POOL}
    max_parallel = {p.id: p.fan_out.max_parallel for p in plan.phases if p.fan_out and p.fan_out.max_parallel}
    return Caps(pools, max_parallel, plan.max_active_tasks)


class Run:
    """Greedy list scheduling under caps, event by event.

    Ready tasks wait in one queue per demand (same pool, slots and max_parallel group), so a
    scheduling round only looks at queue heads: a task behind a head that does not fit would not fit
    either. That keeps a 10,000-target fan-out fast.
    """

    def __init__(self, graph: Graph, caps: Caps) -> None:
        self.graph = graph
        size = len(graph.nodes)
        self.waiting = [len(node.deps) for node in graph.nodes]
        self.start = [0] * size
        self.end = [0] * size
        self.events: list[tuple[int, int]] = []
        self.queues: list[list[int]] = [[] for _ in graph.demands]
        self.pool = [d.pool if d.pool in caps.pools else None for d in graph.demands]
        # A step asking for more slots than its pool has would never start; let it take them all.
        self.slots = [min(d.slots, caps.pools[p]) if p else 0 for d, p in zip(graph.demands, self.pool, strict=True)]
        self.group = [d.group if d.group and d.group[0] in caps.max_parallel else None for d in graph.demands]
        self.free_pool = dict(caps.pools)
        self.free_group = {g: caps.max_parallel[g[0]] for g in self.group if g}
        self.free_active = caps.max_active if caps.max_active is not None else size + 1

    def run(self) -> Run:
        for index, waiting in enumerate(self.waiting):
            if not waiting:
                self.ready(index, 0)
        self.dispatch(0)
        while self.events:
            now = self.events[0][0]
            while self.events and self.events[0][0] == now:
                self.finish(heappop(self.events)[1], now)
            self.dispatch(now)
        return self

    def ready(self, index: int, now: int) -> None:
        demand = self.graph.nodes[index].demand
        if demand < 0:
            self.begin(index, now)
        else:
            heappush(self.queues[demand], index)

    def fits(self, demand: int) -> bool:
        pool, group = self.pool[demand], self.group[demand]
        return (pool is None or self.free_pool[pool] >= self.slots[demand]) and (group is None or self.free_group[group] > 0)

    def dispatch(self, now: int) -> None:
        """Start every queued task that fits, highest priority (lowest id) first."""
        heads = [(queue[0], demand) for demand, queue in enumerate(self.queues) if queue]
        heapify(heads)
        while heads and self.free_active > 0:
            _, demand = heappop(heads)
            if self.fits(demand):
                queue = self.queues[demand]
                self.begin(heappop(queue), now)
                if queue:
                    heappush(heads, (queue[0], demand))

    def begin(self, index: int, now: int) -> None:
        self.take(self.graph.nodes[index].demand, -1)
        self.start[index] = now
        self.end[index] = now + self.graph.nodes[index].duration
        heappush(self.events, (self.end[index], index))

    def finish(self, index: int, now: int) -> None:
        self.take(self.graph.nodes[index].demand, +1)
        for child in self.graph.children[index]:
            self.waiting[child] -= 1
            if not self.waiting[child]:
                self.ready(child, now)

    def take(self, demand: int, sign: int) -> None:
        """Hold (sign -1) or give back (+1) what a task of this demand uses."""
        if demand < 0:
            return
        self.free_active += sign
        pool, group = self.pool[demand], self.group[demand]
        if pool is not None:
            self.free_pool[pool] += sign * self.slots[demand]
        if group is not None:
            self.free_group[group] += sign


def critical_path(graph: Graph) -> tuple[int, tuple[str, ...]]:
    """Longest path by duration with unlimited resources, and the labels along it."""
    finish = [0] * len(graph.nodes)
    before = [-1] * len(graph.nodes)
    for index, node in enumerate(graph.nodes):
        for dep in node.deps:
            if before[index] < 0 or finish[dep] > finish[before[index]]:
                before[index] = dep
        finish[index] = (finish[before[index]] if before[index] >= 0 else 0) + node.duration
    if not graph.nodes:
        return 0, ()
    index = max(range(len(finish)), key=lambda i: (finish[i], i))
    length, labels = finish[index], []
    while index >= 0:
        node = graph.nodes[index]
        if node.kind not in ("gate", "control"):
            labels.append(node.label)
        index = before[index]
    return length, tuple(reversed(labels))
