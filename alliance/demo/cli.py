"""``alliance demo``: build the demo alliance, print the summary and the console login, then serve.

With ``--json`` the progress goes to stderr and stdout carries one JSON document (the summary). SIGTERM -
how Docker, Kubernetes and systemd stop a process - ends the demo as Ctrl-C does: the exchange server it
started is stopped too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
from pathlib import Path
from types import FrameType

from rich.console import Console

from alliance.core.settings import Settings

__all__ = ["run"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the server and the blinding pool


def run(args: argparse.Namespace, settings: Settings, fresh_file: Path | None) -> None:
    from alliance.demo.scenario import DemoOptions, run_demo, stop_server
    from alliance.demo.summary import print_summary, summary_document

    signal.signal(signal.SIGTERM, _interrupt)
    console = Console(highlight=False, stderr=args.json)
    if not console.is_terminal:
        console = Console(highlight=False, width=140, stderr=args.json)
    options = DemoOptions(
        settings=settings,
        scale=args.scale,
        seed=args.seed,
        serve=not args.no_serve,
        fresh_file=fresh_file,
        workers=args.blind_workers,
    )
    console.print(f"[bold]Brand Alliance Exchange demo[/] - scale {args.scale:,}, seed {args.seed}")
    result, server = run_demo(options, console)
    try:
        if args.json:
            print(json.dumps(summary_document(result), ensure_ascii=False, indent=2), flush=True)
        else:
            print_summary(result, console)
        total = sum(result.seconds.values())
        console.print(f"\nDemo ready in {total:.0f} s.")
        console.print(f"Console:  {result.base_url}/console   (API docs: {result.base_url}/schema)")
        console.print(f"  admin    password {result.admin_password}")
        console.print(f"  auditor  password {result.auditor_password}")
        if options.serve:
            console.print("Serving until Ctrl-C.")
            try:
                server.wait()
            except KeyboardInterrupt:
                console.print("stopping")
    finally:
        stop_server(server)
        shutil.rmtree(result.workdir, ignore_errors=True)
