"""Benchmark of the PSI blinding path (privacy.blind) on this machine.

Prints: raw X25519 op/s on one core (a tight loop of ``.exchange()`` on one public-key object, and
the same with ``from_public_bytes`` per item, which every real blinding needs), hash_to_point/s,
the blinding rate per core (hash_to_point + X25519 per item), the re-blind rate (X25519 only), the
rate with all cores through the multi-process path, and validate_points/s.

Single-core figures are CPU time of this (single-threaded) process, so other processes competing for
the cores inflate them far less than wall time would; the measurements are also interleaved round by
round and each keeps its best round. The multi-process figure is wall time and needs an idle machine.

    .venv/bin/python bench/blind.py [--items 3000] [--rounds 11] [--parallel-items 100000] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

from privacy.blind import (
    blind_batch,
    default_workers,
    hash_and_blind_batch,
    hash_and_blind_batch_parallel,
    hash_to_point_batch,
    new_process_pool,
    validate_points,
)
from privacy.keys import clamp_scalar

ALLIANCE = b"bench-alliance"


def identifiers(count: int, start: int = 0) -> list[bytes]:
    return [b"phone:+86138%08d" % i for i in range(start, start + count)]


def best_rates(tasks: dict[str, tuple[int, Callable[[], object]]], rounds: int) -> dict[str, float]:
    """Items per CPU second of each task: its best round, rounds interleaved across tasks."""
    best = dict.fromkeys(tasks, float("inf"))
    for _ in range(rounds):
        for name, (_, run) in tasks.items():
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    return {name: tasks[name][0] / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000, help="items per single-core round")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--parallel-items", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    args = parser.parse_args()
    n = args.items
    scalar = clamp_scalar(os.urandom(32))
    key = X25519PrivateKey.from_private_bytes(scalar)
    ids = identifiers(n)
    points = hash_to_point_batch(ALLIANCE, ids)
    point_list = [points[i : i + 32] for i in range(0, len(points), 32)]
    peer = X25519PublicKey.from_public_bytes(point_list[0])

    def raw_exchange() -> None:
        exchange = key.exchange
        for _ in range(n):
            exchange(peer)

    def raw_exchange_with_decode() -> None:
        exchange = key.exchange
        decode = X25519PublicKey.from_public_bytes
        for point in point_list:
            exchange(decode(point))

    rates = best_rates(
        {
            "raw": (n, raw_exchange),
            "raw_decode": (n, raw_exchange_with_decode),
            "hash": (n, lambda: hash_to_point_batch(ALLIANCE, ids)),
            "hash_blind": (n, lambda: hash_and_blind_batch(ALLIANCE, scalar, ids)),
            "reblind": (n, lambda: blind_batch(scalar, points)),
            "validate": (n, lambda: validate_points(points)),
        },
        args.rounds,
    )

    workers = args.workers or default_workers()
    many = identifiers(args.parallel_items, start=10**7)
    with new_process_pool(workers) as pool:
        # Warm the pool (process start-up and imports) outside the timed region.
        hash_and_blind_batch_parallel(ALLIANCE, scalar, many[: 2 * workers], executor=pool, chunk_records=1)
        started = time.perf_counter()
        parallel = hash_and_blind_batch_parallel(ALLIANCE, scalar, many, executor=pool)
        parallel_rate = len(many) / (time.perf_counter() - started)
    assert parallel[:320] == hash_and_blind_batch(ALLIANCE, scalar, many[:10])

    raw = rates["raw"]
    print(f"cores available                          {default_workers()}  (load average {os.getloadavg()[0]:.2f})")
    print(f"raw X25519 .exchange(), one core         {raw:10.0f} op/s  ({1e6 / raw:.2f} us)")
    print(
        f"  with from_public_bytes per item        {rates['raw_decode']:10.0f} op/s  "
        f"({1e6 / rates['raw_decode']:.2f} us)"
    )
    print(f"hash_to_point (batch), one core          {rates['hash']:10.0f} /s    ({1e6 / rates['hash']:.2f} us)")
    print(
        f"blinding per core (hash + X25519)        {rates['hash_blind']:10.0f} /s    "
        f"({1e6 / rates['hash_blind']:.2f} us)  = {rates['hash_blind'] / raw:.1%} of raw X25519, "
        f"{rates['hash_blind'] / rates['raw_decode']:.1%} of X25519 incl. from_public_bytes"
    )
    print(
        f"re-blind per core (X25519 only)          {rates['reblind']:10.0f} /s    "
        f"({1e6 / rates['reblind']:.2f} us)  = {rates['reblind'] / raw:.1%} of raw X25519"
    )
    print(
        f"blinding, {workers} worker processes          {parallel_rate:10.0f} /s    "
        f"({parallel_rate / rates['hash_blind']:.2f}x one core, {len(many)} items)"
    )
    print(
        f"validate_points, one core                {rates['validate']:10.0f} /s    ({1e6 / rates['validate']:.2f} us)"
    )


if __name__ == "__main__":
    main()
