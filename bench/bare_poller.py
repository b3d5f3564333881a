"""A bare poller of the exporter's stack, for comparison: the floor a sidecar cannot go under.

aiohttp + uvloop + orjson + pydantic + prometheus_client, nothing of the exporter: it GETs
/v1/support once per ``--interval``, checks the answer with a pydantic model, keeps a gauge of free
space and serves them on /metrics (prometheus_client's text format). Writes the wall time
at which its imports were done to stderr (``imported <time>``) as the exporter's bench wrapper
does, so the time from the imports to the first success is measured the same way for both.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import orjson
import pydantic
import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest

print(f"imported {time.time():.6f}", file=sys.stderr, flush=True)


class Support(pydantic.BaseModel):
    support: dict[str, object]


async def serve(url: str, api_key: str, port: int, interval: float) -> None:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    up = Gauge("bare_up", "1 if the last poll worked", registry=registry)
    free = Gauge("bare_free_space_bytes", "free space", ["directory"], registry=registry)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    headers = {"Authorization": f"Apikey {api_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            try:
                async with session.get(url) as response:
                    body = await response.read()
                parsed = Support.model_validate(orjson.loads(body))
                value = parsed.support.get("free_space_data")
                if isinstance(value, int | float):
                    free.labels("data").set(value)
                up.set(1)
            except (aiohttp.ClientError, ValueError):
                up.set(0)
            await asyncio.sleep(interval)


def main() -> None:
    url, api_key, port, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    uvloop.run(serve(url, api_key, port, interval))


if __name__ == "__main__":
    main()
