"""The floor: the same /metrics bytes served statically by aiohttp (with uvloop), own process.

``--mode precompressed`` serves bytes saved once (gzip-compressed already when the exporter sent
gzip): what a cache in front of a file would do. ``--mode compress`` serves the uncompressed
bytes and lets aiohttp compress them per request (``enable_compression``), the cost a naive
exporter would pay on every scrape.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--content-type", required=True)
    parser.add_argument("--encoding", default="identity")
    parser.add_argument("--mode", choices=("precompressed", "compress"), default="precompressed")
    args = parser.parse_args()
    body = args.body.read_bytes()
    content_type: str = args.content_type
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if args.mode == "precompressed" and args.encoding == "gzip":
        headers["Content-Encoding"] = "gzip"

    async def serve(request: web.Request) -> web.Response:
        response = web.Response(body=body, headers=headers)
        if args.mode == "compress" and args.encoding == "gzip":
            response.enable_compression(web.ContentCoding.gzip)
        return response

    app = web.Application()
    app.router.add_get("/metrics", serve)
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=loop_factory() if loop_factory else None,
    )


if __name__ == "__main__":
    main()
