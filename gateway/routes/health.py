"""Probes: /healthz (the process is up: liveness, whatever the backends) and /readyz
(every backend answers its gRPC health check SERVING, so requests can be served; a
backend says NOT_SERVING while a dependency it needs, PostgreSQL, is unreachable)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2

from ..deps import BackendsDep, SettingsDep
from ..errors import NOT_READY, retry_after_header
from ..responses import error_responses
from ..schemas import HealthReply, NotReadyReply, ReadinessReply

router = APIRouter(tags=["health"])
SERVING = health_pb2.HealthCheckResponse.ServingStatus


@router.get(
    "/healthz",
    operation_id="getLiveness",
    response_model=HealthReply,
    summary="Liveness: the process is up",
)
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


async def _backend_status(stub: Any, timeout: float) -> str:
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return (
            "UNREACHABLE"
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            else exc.code().name
        )
    status: str = SERVING.Name(reply.status)
    return status


@router.get(
    "/readyz",
    operation_id="getReadiness",
    response_model=ReadinessReply,
    responses={503: {"model": NotReadyReply, **error_responses("NOT_READY")[503]}},
    summary="Readiness: auth, upload and events answer their health checks",
)
async def readyz(backends: BackendsDep, settings: SettingsDep) -> dict[str, Any] | JSONResponse:
    names = list(backends.health)
    statuses = await asyncio.gather(
        *(
            _backend_status(backends.health[name], settings.readiness_timeout_seconds)
            for name in names
        )
    )
    report = dict(zip(names, statuses))
    down = [name for name, status in report.items() if status != "SERVING"]
    if down:
        return JSONResponse(
            status_code=503,
            headers=retry_after_header(None),
            content={
                "status": "not ready",
                "backends": report,
                "error": f"backend not serving: {', '.join(down)}",
                "code": NOT_READY,
            },
        )
    return {"status": "ready", "backends": report}
