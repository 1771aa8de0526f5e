"""Our end-to-end match through the exchange against OpenMined's PSI library on the same sets, same run.

``openmined-psi`` (``import private_set_intersection.python``) is ECDH-PSI over P-256 in C++ and runs in
one thread; it is called here as one process holding both roles (no network, no storage), in its exact
cardinality mode (``reveal_intersection=False``, ``DataStructure.RAW``). Ours is the full thing: two
agents publishing and matching through a real server on PostgreSQL (``bench/psi.py``), using every core.
Both get the same normalised identifiers; both must find the same overlap.

    .venv/bin/python bench/psi_vs_openmined.py [--items 1000000] [--overlap 250000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from privacy.blind import default_workers

try:
    import private_set_intersection.python as openmined
except ImportError:  # pragma: no cover - reported, not hidden
    sys.exit("openmined-psi is not installed: .venv/bin/pip install openmined-psi")

HERE = Path(__file__).resolve().parent

_spec = importlib.util.spec_from_file_location("bench_psi", HERE / "psi.py")
assert _spec is not None
assert _spec.loader is not None
ours = importlib.util.module_from_spec(_spec)
sys.modules["bench_psi"] = ours
_spec.loader.exec_module(ours)


def openmined_cardinality(client_items: list[str], server_items: list[str]) -> tuple[int, float]:
    started = time.perf_counter()
    client = openmined.client.CreateWithNewKey(False)
    server = openmined.server.CreateWithNewKey(False)
    setup = server.CreateSetupMessage(1e-9, len(client_items), server_items, openmined.DataStructure.RAW)
    request = client.CreateRequest(client_items)
    response = server.ProcessRequest(request)
    size = int(client.GetIntersectionSize(setup, response))
    return size, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--overlap", type=int, default=250_000)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    sides, normalise_seconds = ours.prepare_sides(args.items, args.overlap)
    canon_a, _, canon_b, _ = sides

    theirs_count, theirs_seconds = openmined_cardinality([c.decode() for c in canon_a], [c.decode() for c in canon_b])
    print(f"openmined-psi (P-256, C++, one thread, in process)  overlap {theirs_count:,}  {theirs_seconds:7.1f} s")

    result = ours.run_end_to_end(args.items, args.overlap, args.workers, sides)
    print(
        f"ours end to end (X25519, {args.workers} processes per agent, through the server on PostgreSQL)  "
        f"overlap {result.count:,}  {result.wall:7.1f} s"
    )
    print(f"speed-up (openmined time / our end-to-end time)     {theirs_seconds / result.wall:7.2f}x  (target >= 3)")
    print(f"(normalising both sides, not in either time: {normalise_seconds:.1f} s)")
    if theirs_count != result.count:
        sys.exit(f"the two overlaps differ: {theirs_count} != {result.count}")


if __name__ == "__main__":
    main()
