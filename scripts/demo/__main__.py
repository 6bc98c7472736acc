"""`python -m scripts.demo up|stop|status|supervise` (run it through `bash scripts/demo.sh`)."""

from __future__ import annotations

import argparse
import sys

from scripts.demo.common import fmt_duration, read_state, same_process, state_path


def status() -> int:
    state = read_state()
    if state is None:
        print(f"no demo running ({state_path()} does not exist)")
        return 1
    alive = same_process(state.get("supervisor")) is not None
    air = state.get("airflow") or {}
    print(f"supervisor: {'running' if alive else 'NOT running'}; ready: {bool(state.get('ready'))}")
    if state.get("dead_components"):
        print(f"airflow components that exited: {', '.join(state['dead_components'])}")
    if air.get("url"):
        print(f"Airflow UI: {air['url']}   login: {air.get('username')} / {air.get('password')}")
    for c in state.get("postgres") or []:
        print(f"postgres {c['name']}: 127.0.0.1:{c['port']} ({c['role']})")
    for r in state.get("results") or []:
        took = fmt_duration(r["duration_s"]) if r.get("duration_s") is not None else "?"
        rpo = f", achieved RPO {r['achieved_rpo_s']:.1f}s" if r.get("achieved_rpo_s") is not None else ""
        print(f"{r['dag_id']}: {r['state']} in {took}{rpo} (run {r['run_id']})")
    return 0 if alive else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__)
    parser.add_argument("command", nargs="?", default="up", choices=["up", "stop", "status", "supervise"])
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the runs")
    args = parser.parse_args(argv)
    if args.command == "up":
        from scripts.demo.up import up

        return up(args.timeout)
    if args.command == "stop":
        from scripts.demo.stop import stop_demo

        return stop_demo()
    if args.command == "supervise":
        from scripts.demo.supervisor import main as supervise

        return supervise()
    return status()


if __name__ == "__main__":
    sys.exit(main())
