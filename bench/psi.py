"""Benchmark of private matching: raw X25519, blinding rates, and an end-to-end match through a real server.

Prints, in one run:
1. the raw X25519 op rate of one core (tight loop), in both definitions: ``.exchange()`` on one reused
   public-key object, and with ``X25519PublicKey.from_public_bytes`` per item (which any X25519 on a
   new point needs);
2. the blinding rate of ``privacy.blind`` (hash-to-point + X25519) and the re-blind rate (X25519 only)
   per core, and both with every core through a process pool;
3. an end-to-end N x N match (default 1,000,000 x 1,000,000) on PostgreSQL: a throwaway database, a real
   ``alliance serve``, and two partner agents in their own processes (each with a process pool of
   every core) that publish their segments concurrently and then match under a cardinality contract.
   Reported: wall time from the first blinding to the released count, the pure crypto time of the
   same work (2N blindings + 2N re-blindings at the all-core rates measured above) and their ratio,
   the phases of each agent, and the server's peak RSS (VmHWM). Normalising the synthetic phone
   numbers is timed separately (it is not part of the match time).

    .venv/bin/python bench/psi.py [--items 1000000] [--overlap 250000] [--rate-items 4000] [--rounds 7]

Cleans up after itself: the server is stopped and the database dropped, even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from alliance.partner.agent import Agent, register_signing_key, sign_contract
from alliance.partner.blinding import blind_identifiers, reblind
from alliance.partner.client import PartnerClient
from alliance.partner.keystore import AgentStore
from alliance.partner.psi_client import PsiApi
from alliance.partner.publish import publish_canonicals
from privacy.blind import blind_batch, default_workers, hash_and_blind_batch, hash_to_point_batch, new_process_pool
from privacy.keys import clamp_scalar
from privacy.normalize import normalize_batch

ROOT = Path(__file__).resolve().parent.parent
ALLIANCE = b"bench-alliance"
EPOCH = "2026-11"
PG_ADMIN = os.environ.get("ALLIANCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


# --- 1 and 2: rates ---------------------------------------------------------------------------------


@dataclass
class Rates:
    raw: float
    raw_decode: float
    blind_core: float
    reblind_core: float
    blind_all: float
    reblind_all: float
    workers: int


def _best(tasks: dict[str, tuple[int, Callable[[], object]]], rounds: int) -> dict[str, float]:
    """Items per CPU second of each task: its best round, rounds interleaved (CPU time of this process)."""
    best = dict.fromkeys(tasks, float("inf"))
    for _ in range(rounds):
        for name, (_, run) in tasks.items():
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    return {name: tasks[name][0] / seconds for name, seconds in best.items()}


def measure_rates(items: int, rounds: int, parallel_items: int, workers: int) -> Rates:
    scalar = clamp_scalar(os.urandom(32))
    key = X25519PrivateKey.from_private_bytes(scalar)
    ids = [b"phone:+86138%08d" % i for i in range(items)]
    points = hash_to_point_batch(ALLIANCE, ids)
    point_list = [points[i : i + 32] for i in range(0, len(points), 32)]
    peer = X25519PublicKey.from_public_bytes(point_list[0])

    def raw() -> None:
        exchange = key.exchange
        for _ in range(items):
            exchange(peer)

    def raw_decode() -> None:
        exchange = key.exchange
        decode = X25519PublicKey.from_public_bytes
        for point in point_list:
            exchange(decode(point))

    core = _best(
        {
            "raw": (items, raw),
            "raw_decode": (items, raw_decode),
            "blind": (items, lambda: hash_and_blind_batch(ALLIANCE, scalar, ids)),
            "reblind": (items, lambda: blind_batch(scalar, points)),
        },
        rounds,
    )
    many = [b"phone:+86139%08d" % i for i in range(parallel_items)]
    with new_process_pool(workers) as pool:
        warm = [b"phone:+86137%08d" % i for i in range(2 * 16_384 * workers)]
        blind_identifiers(ALLIANCE, scalar, warm, executor=pool)  # start the workers outside the timing
        started = time.perf_counter()
        blinded = blind_identifiers(ALLIANCE, scalar, many, executor=pool)
        blind_all = parallel_items / (time.perf_counter() - started)
        started = time.perf_counter()
        reblind(scalar, blinded, executor=pool)
        reblind_all = parallel_items / (time.perf_counter() - started)
    return Rates(core["raw"], core["raw_decode"], core["blind"], core["reblind"], blind_all, reblind_all, workers)


def print_rates(r: Rates) -> None:
    print(f"cores available                               {default_workers()}")
    print(f"raw X25519 .exchange() on one reused key      {r.raw:9.0f} op/s  ({1e6 / r.raw:.2f} us)   [raw A]")
    print(
        f"raw X25519 incl. from_public_bytes per item   {r.raw_decode:9.0f} op/s  ({1e6 / r.raw_decode:.2f} us)"
        "   [raw B]"
    )
    print(
        f"blinding per core (hash + X25519)             {r.blind_core:9.0f} /s     "
        f"{r.blind_core / r.raw:6.1%} of raw A, {r.blind_core / r.raw_decode:6.1%} of raw B"
    )
    print(
        f"re-blinding per core (X25519 only)            {r.reblind_core:9.0f} /s     "
        f"{r.reblind_core / r.raw:6.1%} of raw A, {r.reblind_core / r.raw_decode:6.1%} of raw B"
    )
    print(
        f"blinding, {r.workers} processes                        {r.blind_all:9.0f} /s     "
        f"({r.blind_all / r.blind_core:.2f}x one core)"
    )
    print(
        f"re-blinding, {r.workers} processes                     {r.reblind_all:9.0f} /s     "
        f"({r.reblind_all / r.reblind_core:.2f}x one core)"
    )
    print(
        "  The 85% target is judged against raw B: every blinding is an X25519 on a point nobody has\n"
        "  decoded before, so from_public_bytes is part of the irreducible X25519 cost; raw A reuses one\n"
        "  decoded point object, which no real blinding can do (it is shown for reference)."
    )


# --- 3: the end-to-end match ------------------------------------------------------------------------


def synthetic_phones(n: int, overlap: int) -> tuple[list[str], list[str]]:
    """Two lists of n distinct valid CN mobile numbers with exactly ``overlap`` in common (deterministic)."""
    a = [f"138{i:08d}" for i in range(n)]
    b = [f"138{i:08d}" for i in range(n - overlap, n)] + [f"139{i:08d}" for i in range(n - overlap)]
    return a, b


def normalise(values: list[str]) -> tuple[list[bytes], list[str]]:
    result = normalize_batch(values, "phone")
    return result.canonicals, [values[x.row] for x in result.accepted]


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    name = f"bax_bench_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(database_url: str, log: Path) -> Iterator[tuple[str, int, dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update(ALLIANCE_DATABASE_URL=database_url, ALLIANCE_ALLIANCE_ID=ALLIANCE.decode(), ALLIANCE_LOG_LEVEL="WARNING")
    subprocess.run([sys.executable, "-m", "alliance.cli", "migrate"], env=env, check=True, capture_output=True)
    port = _free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "alliance.cli", "serve", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield base, process.pid, env
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _add_brand(env: dict[str, str], name: str) -> tuple[str, str]:
    import json

    done = subprocess.run(
        [sys.executable, "-m", "alliance.cli", "brand", "add", name, "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    created = json.loads(done.stdout)
    return created["brand"]["id"], created["api_key"]["secret"]


@dataclass
class AgentConfig:
    role: str  # "requester" | "responder"
    base: str
    api_key: str
    home: str
    workers: int


def _store(config: AgentConfig) -> AgentStore:
    return AgentStore(config.home, "bench passphrase")


def agent_process(
    config: AgentConfig,
    canonicals: list[bytes],
    members: list[str],
    start: Any,
    segments: Any,
    results: Any,
    done: Any,
) -> None:
    """One brand's agent: publish, then (requester) request the match and do its task, or (responder)
    answer tasks until the match is done. Reports its phase times through ``results``."""
    phases: dict[str, float] = {}
    with PartnerClient(config.base, config.api_key, timeout=600) as client, new_process_pool(config.workers) as pool:
        api = PsiApi(client)
        store = _store(config)
        warm = [b"phone:+86137%08d" % i for i in range(2 * 16_384 * config.workers)]
        blind_identifiers(ALLIANCE, store.psi_key(EPOCH).scalar, warm, executor=pool)  # start the workers
        agent = Agent(api, store, executor=pool)
        agent.brand_id  # noqa: B018 - resolve /v1/me outside the timing
        start.wait()
        t0 = time.perf_counter()
        report = publish_canonicals(
            api,
            store,
            canonicals,
            members,
            id_type="phone",
            name=config.role,
            tags=["bench"],
            key_epoch=EPOCH,
            executor=pool,
        )
        phases.update({f"publish.{k}": v for k, v in report.seconds.items()})
        segments.put((config.role, report.segment_id))
        if config.role == "requester":
            own = report.segment_id
            other = segments_for(segments, "responder")
            mark = time.perf_counter()
            outcome = agent.request_match(own, other, poll_seconds=0.05)
            phases["match"] = time.perf_counter() - mark
            done.set()
            results.put((config.role, phases, outcome.match, time.perf_counter() - t0))
        else:
            mark = time.perf_counter()
            task_seconds: dict[str, float] = {}
            while not done.is_set():
                for outcome in agent.run_once():
                    task_seconds.update({f"task.{k}": v for k, v in outcome.seconds.items()})
                time.sleep(0.05)
            phases.update(task_seconds)
            phases["until_done"] = time.perf_counter() - mark
            results.put((config.role, phases, None, time.perf_counter() - t0))


def segments_for(queue: Any, role: str) -> str:
    while True:
        who, segment_id = queue.get()
        if who == role:
            return str(segment_id)
        queue.put((who, segment_id))
        time.sleep(0.01)


@dataclass
class EndToEnd:
    items: int
    overlap: int
    count: int | None
    wall: float
    server_hwm_mib: float
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    normalise_seconds: float = 0.0


def run_end_to_end(
    items: int, overlap: int, workers: int, sides: tuple[list[bytes], list[str], list[bytes], list[str]]
) -> EndToEnd:
    canon_a, members_a, canon_b, members_b = sides
    with (
        tempfile.TemporaryDirectory(prefix="bax-bench-") as tmp,
        throwaway_database() as url,
        running_server(url, Path(tmp) / "server.log") as (base, server_pid, env),
    ):
        if True:
            ids = {role: _add_brand(env, f"Bench {role} {secrets.token_hex(2)}") for role in ("requester", "responder")}
            configs = {
                role: AgentConfig(role, base, key, str(Path(tmp) / role), workers) for role, (_, key) in ids.items()
            }
            stores = {role: _store(c) for role, c in configs.items()}
            clients = {role: PartnerClient(base, c.api_key) for role, c in configs.items()}
            for role, store in stores.items():
                store.keygen(EPOCH, scrypt_n=2**12)
                register_signing_key(PsiApi(clients[role]), store)
            (a_id, _), (b_id, _) = ids["requester"], ids["responder"]
            proposal = {
                "parties": [a_id, b_id],
                "settlement_currency": "CNY",
                "effective_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                "coupon_commission": {"kind": "fixed", "amount": 0},
                "referral": {"kind": "fixed", "amount": 0},
                "psi": {"segment_tags": ["bench"], "disclosure": "cardinality", "min_k": 100},
            }
            contract_id = clients["requester"].request("POST", "/v1/contracts", json=proposal).json()["contract_id"]
            for role in ("requester", "responder"):
                sign_contract(PsiApi(clients[role]), stores[role], contract_id)
            stores["requester"].allow(b_id, 10 * items)
            stores["responder"].allow(a_id, 10 * items)
            for client in clients.values():
                client.close()

            ctx = multiprocessing.get_context("spawn")
            start, done = ctx.Event(), ctx.Event()
            segments, results = ctx.Queue(), ctx.Queue()
            processes = [
                ctx.Process(
                    target=agent_process,
                    args=(configs["requester"], canon_a, members_a, start, segments, results, done),
                ),
                ctx.Process(
                    target=agent_process,
                    args=(configs["responder"], canon_b, members_b, start, segments, results, done),
                ),
            ]
            for p in processes:
                p.start()
            time.sleep(8)  # let both agents import, decrypt keys and warm their pools
            started = time.perf_counter()
            start.set()
            reports = [results.get(timeout=3600) for _ in processes]
            wall = time.perf_counter() - started
            for p in processes:
                p.join(timeout=60)
            hwm = vm_hwm_mib(server_pid)
    match = next(m for role, _, m, _ in reports if role == "requester")
    if match["state"] != "done":
        raise RuntimeError(f"the match did not finish: {match}")
    return EndToEnd(
        items=items,
        overlap=overlap,
        count=match["result"]["count"],
        wall=wall,
        server_hwm_mib=hwm,
        phases={role: phases for role, phases, _, _ in reports},
    )


def prepare_sides(items: int, overlap: int) -> tuple[tuple[list[bytes], list[str], list[bytes], list[str]], float]:
    """Synthetic phone numbers for both sides, normalised (timed; not part of the match time)."""
    a, b = synthetic_phones(items, overlap)
    started = time.perf_counter()
    with new_process_pool(2) as pool:
        (ca, ma), (cb, mb) = pool.map(normalise, [a, b])
    return (ca, ma, cb, mb), time.perf_counter() - started


def print_end_to_end(e: EndToEnd, rates: Rates) -> float:
    n = e.items
    crypto = 2 * n / rates.blind_all + 2 * n / rates.reblind_all
    print(
        f"\nend-to-end {n:,} x {n:,} match on PostgreSQL through a real server (two agents, {rates.workers} "
        f"processes each)"
    )
    print(f"  normalising 2 x {n:,} phone numbers (not in the match time)   {e.normalise_seconds:7.1f} s")
    print(f"  released count                      {e.count}  (true overlap {e.overlap:,})")
    print(f"  wall time, first blinding -> count  {e.wall:7.1f} s")
    print(
        f"  pure crypto time of the same work   {crypto:7.1f} s  (2N blindings at {rates.blind_all:.0f}/s + "
        f"2N re-blindings at {rates.reblind_all:.0f}/s)"
    )
    print(f"  ratio wall / crypto                 {e.wall / crypto:7.2f}  (target <= 1.3)")
    print(f"  server peak RSS (VmHWM)             {e.server_hwm_mib:7.0f} MiB  (target < 1536)")
    for role, phases in e.phases.items():
        shown = ", ".join(f"{k} {v:.1f}" for k, v in phases.items() if not k.endswith("total"))
        print(f"  {role:<10} {shown}")
    return crypto


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="members per side")
    parser.add_argument("--overlap", type=int, default=250_000)
    parser.add_argument("--rate-items", type=int, default=4000, help="items per single-core round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--parallel-items", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}")
    rates = measure_rates(args.rate_items, args.rounds, args.parallel_items, args.workers)
    print_rates(rates)
    sides, normalise_seconds = prepare_sides(args.items, args.overlap)
    result = run_end_to_end(args.items, args.overlap, args.workers, sides)
    result.normalise_seconds = normalise_seconds
    print_end_to_end(result, rates)


if __name__ == "__main__":
    main()
