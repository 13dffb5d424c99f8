"""Record-chunk requests coalesced into RecordParts calls: group commit for the hot path.

A client uploading in parallel records a part every few milliseconds, and each record cost
a gRPC call, a statement and a commit of its own. Here concurrent requests share them:
while `batches_in_flight` calls are outstanding, new records wait and leave together in
the next call, as soon as one returns (no timer: a lone request leaves at once, so one at
a time nothing is added). Each record keeps its own access token, which the upload
coordinator verifies, and gets its own result: a request is answered only once its part is
committed, or with the error RecordPart would have given it.

The queue is not one line a single caller can block: waiting records are kept per access
token (one signed-in session) and each call takes them round-robin, one from each session
in turn, so a session flooding records delays another's by at most about one call per
waiting session, whatever the size of its flood. A session that already has
`max_waiting_per_session` records waiting is refused (429, Retry-After) until they leave.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque

import grpc

from dropfile.upload.v1 import upload_pb2, upload_pb2_grpc

from .errors import TOO_MANY_PARTS_WAITING, ApiError, rpc_error

_CODES = {code.value[0]: code for code in grpc.StatusCode}
TOO_MANY_WAITING = "too many parts of this session are waiting to be recorded; retry shortly"
RETRY_AFTER_SECONDS = 1

_Waiting = tuple[upload_pb2.PartRecord, "asyncio.Future[None]"]


class PartRecorder:
    def __init__(
        self,
        stub: upload_pb2_grpc.UploadServiceAsyncStub,
        *,
        batch_size: int,
        batches_in_flight: int,
        timeout: float,
        max_waiting_per_session: int | None = None,
    ) -> None:
        self._stub = stub
        self._batch_size = batch_size
        self._batches_in_flight = batches_in_flight
        self._timeout = timeout
        self._max_waiting = max_waiting_per_session
        # Each session's waiting records in arrival order; sessions in the order they are
        # served next (a served session with more waiting goes to the back).
        self._waiting: OrderedDict[str, deque[_Waiting]] = OrderedDict()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def record(
        self, part: upload_pb2.RecordPartRequest, *, access_token: str, request_id: str
    ) -> None:
        """Returns once the part is recorded; raises the grpc.aio.AioRpcError a RecordPart
        call would have raised otherwise, or a 429 ApiError when the session has too
        many records waiting."""
        waiting = self._admit(access_token, 1)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting.append(
            (
                upload_pb2.PartRecord(access_token=access_token, request_id=request_id, part=part),
                done,
            )
        )
        if self._in_flight < self._batches_in_flight:
            self._start_call()
        # A client that hangs up cancels only its own wait, never the call it shares.
        await done

    async def record_all(
        self, parts: list[upload_pb2.RecordPartRequest], *, access_token: str, request_id: str
    ) -> list[BaseException | None]:
        """Records `parts` together, each as `record` would: their outcomes in order (None
        or the error). Admitted or refused (429) as a whole: a refused batch records
        nothing."""
        if not parts:
            return []
        waiting = self._admit(access_token, len(parts))
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for part in parts:
            done: asyncio.Future[None] = loop.create_future()
            waiting.append(
                (
                    upload_pb2.PartRecord(
                        access_token=access_token, request_id=request_id, part=part
                    ),
                    done,
                )
            )
            futures.append(done)
        if self._in_flight < self._batches_in_flight:
            self._start_call()
        return await asyncio.gather(*futures, return_exceptions=True)

    def _admit(self, access_token: str, count: int) -> deque[_Waiting]:
        """The session's queue, to append `count` records to; a 429 when it is full. A
        session with nothing waiting is always admitted, so a batch larger than the limit
        is not refused for ever."""
        waiting = self._waiting.get(access_token)
        if waiting is None:
            waiting = self._waiting[access_token] = deque()
        elif self._max_waiting is not None and len(waiting) + count > self._max_waiting:
            raise ApiError(
                429,
                TOO_MANY_WAITING,
                code=TOO_MANY_PARTS_WAITING,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return waiting

    def waiting_of(self, access_token: str) -> int:
        """Records of this session not yet sent."""
        return len(self._waiting.get(access_token, ()))

    def _take_batch(self) -> list[_Waiting]:
        """Up to batch_size waiting records, one from each session in turn."""
        taken: list[_Waiting] = []
        waiting = self._waiting
        while waiting and len(taken) < self._batch_size:
            session, records = waiting.popitem(last=False)
            taken.append(records.popleft())
            if records:
                waiting[session] = records
        return taken

    def _start_call(self) -> None:
        self._in_flight += 1
        # The batch is taken when the task first runs, not now: requests that arrive in
        # the same turn of the event loop leave together.
        task = asyncio.get_running_loop().create_task(self._call())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self) -> None:
        try:
            taken = self._take_batch()
            if taken:
                await self._send([record for record, _ in taken], [waiter for _, waiter in taken])
        finally:
            self._in_flight -= 1
            if self._waiting and self._in_flight < self._batches_in_flight:
                self._start_call()

    async def _send(
        self, records: list[upload_pb2.PartRecord], waiters: list[asyncio.Future[None]]
    ) -> None:
        try:
            reply = await self._stub.RecordParts(
                upload_pb2.RecordPartsRequest(records=records), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            for waiter in waiters:
                _settle(waiter, exc)
            return
        except BaseException:  # cancelled at shutdown, or a bug: nobody waits forever
            error = rpc_error(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down")
            for waiter in waiters:
                _settle(waiter, error)
            raise
        if len(reply.results) != len(waiters):
            error = rpc_error(
                grpc.StatusCode.INTERNAL, "RecordParts answered for a different number of records"
            )
            for waiter in waiters:
                _settle(waiter, error)
            return
        for waiter, result in zip(waiters, reply.results):
            _settle(
                waiter,
                None
                if result.code == 0
                else rpc_error(
                    _CODES.get(result.code, grpc.StatusCode.UNKNOWN),
                    result.message,
                    reason=result.reason or None,
                ),
            )

    async def close(self) -> None:
        """Waits for the calls in flight (their requests are being answered)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _settle(waiter: asyncio.Future[None], error: BaseException | None) -> None:
    if waiter.done():
        return
    if error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)
