#!/usr/bin/env python3
"""What the simulated Graph API costs to serve: CPU and memory of the simulator alone.

    python bench/graph_simulator.py --accounts 1000 --numbers 10 --rounds 3

Starts ``python -m whatsapp_api_simulator --graph-accounts N`` in its own process, then polls
every account as the exporter does (the account, then its numbers with every field, 50 at a
time) for a few rounds, and prints the simulator's CPU seconds and RSS per round. The figures
go into ``docs/simulator.md``: a benchmark of the exporter on this simulator measures the
exporter, not the fake, only if the fake's share is small.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import time

import aiohttp
import psutil

ACCOUNT_FIELDS = "name,health_status,account_review_status,business_verification_status"
NUMBER_FIELDS = (
    "id,display_phone_number,verified_name,quality_rating,status,platform_type,throughput,"
    "messaging_limit_tier,whatsapp_business_manager_messaging_limit,name_status,"
    "code_verification_status,account_mode,last_onboarded_time,health_status"
)


async def poll_all(url: str, token: str, waba_ids: list[str], concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

        async def one(waba: str) -> None:
            async with gate:
                base = f"{url}/v24.0/{waba}"
                async with http.get(f"{base}?fields={ACCOUNT_FIELDS}") as resp:
                    await resp.read()
                async with http.get(
                    f"{base}/phone_numbers?fields={NUMBER_FIELDS}&limit=100"
                ) as resp:
                    await resp.read()

        await asyncio.gather(*(one(w) for w in waba_ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--numbers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    token = secrets.token_urlsafe(16)
    started = time.perf_counter()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "whatsapp_api_simulator",
            "--listen",
            "127.0.0.1:0",
            "--graph-accounts",
            str(args.accounts),
            "--graph-numbers",
            str(args.numbers),
            "--graph-token",
            token,
            "--graph-rate-limit",
            "1000000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        sim.stdout.readline()  # the On-Premises targets
        settings = dict(sim.stdout.readline().strip().split("=", 1) for _ in range(3))
        print(f"simulator up in {time.perf_counter() - started:.2f} s")
        url = settings["WA_CLOUD_GRAPH_URL"]
        waba_ids = [p.split("=", 1)[1] for p in settings["WA_CLOUD_WABA_IDS"].split(",")]
        proc = psutil.Process(sim.pid)
        for round_ in range(args.rounds):
            cpu = sum(proc.cpu_times()[:2])
            wall = time.perf_counter()
            asyncio.run(poll_all(url, token, waba_ids, args.concurrency))
            print(
                f"round {round_}: {2 * len(waba_ids)} requests in "
                f"{time.perf_counter() - wall:.2f} s, simulator CPU "
                f"{sum(proc.cpu_times()[:2]) - cpu:.2f} s, RSS {proc.memory_info().rss >> 20} MiB"
            )
    finally:
        sim.terminate()
        sim.wait(timeout=10)


if __name__ == "__main__":
    main()
