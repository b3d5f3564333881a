"""The floor for a poll: a bare aiohttp + uvloop GET of /v1/support, nothing else, own process.

Requests go one after another, spaced as the exporter's polls were (``--spacing`` seconds), over
one keep-alive connection. Spacing matters on a virtual machine: waking a process that has been
idle for tens of milliseconds costs far more CPU than waking it after two, so the exporter's CPU
per poll is only comparable with a client that sleeps as long between requests. Prints the CPU
milliseconds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import resource

import aiohttp
import uvloop


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(url: str, api_key: str, spacing: float, n: int) -> float:
    headers = {"Authorization": f"Apikey {api_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(20):  # warm up: connection, caches
            async with session.get(url) as response:
                await response.read()
        start = cpu_seconds()
        for _ in range(n):
            async with session.get(url) as response:
                await response.read()
            await asyncio.sleep(spacing)
        return (cpu_seconds() - start) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the full /v1/support URL")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--spacing", type=float, required=True)
    parser.add_argument("-n", type=int, default=300)
    args = parser.parse_args()
    print(f"{uvloop.run(measure(args.url, args.api_key, args.spacing, args.n)):.4f}")


if __name__ == "__main__":
    main()
