"""The floor of one REST-to-gRPC hop on this machine, to compare the gateway against.

`python -m bench.floor grpc PORT` serves the standard gRPC health service on a synchronous
server with a thread pool (the shape of Dropfile's services, without their work).
`python -m bench.floor http PORT GRPC_ADDR` serves a bare FastAPI app on uvicorn (uvloop,
httptools, one worker, as the gateway runs) whose POST endpoint makes one health-check call
over a grpc.aio channel and nothing else. It answers at the gateway's record-chunk path, so
the load generator sends it exactly the requests it sends the gateway (the body is ignored).
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from contextlib import asynccontextmanager

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

PATH = "/api/files/record-chunk"


def serve_grpc(port: int) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32), options=[("grpc.so_reuseport", 0)]
    )
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"floor-grpc: cannot listen on port {port}")
    server.start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    server.stop(1).wait()


def create_app(grpc_address: str):
    from fastapi import FastAPI

    state = {}

    @asynccontextmanager
    async def lifespan(app):
        channel = grpc.aio.insecure_channel(grpc_address)
        state["stub"] = health_pb2_grpc.HealthStub(channel)
        yield
        await channel.close()

    app = FastAPI(lifespan=lifespan)

    @app.post(PATH)
    async def one_hop():
        await state["stub"].Check(health_pb2.HealthCheckRequest(), timeout=30)
        return {"success": True}

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    return app


def serve_http(port: int, grpc_address: str) -> None:
    import uvicorn

    uvicorn.run(
        create_app(grpc_address),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        workers=1,
        log_config=None,
        access_log=False,
    )


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "grpc":
        serve_grpc(int(argv[1]))
    elif len(argv) == 3 and argv[0] == "http":
        serve_http(int(argv[1]), argv[2])
    else:
        raise SystemExit("usage: python -m bench.floor grpc PORT | http PORT GRPC_ADDR")


if __name__ == "__main__":
    main(sys.argv[1:])
