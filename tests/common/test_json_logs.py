"""The JSON log line: its timestamp (whose second is remembered between lines), fields, and
values JSON has no type for."""

from __future__ import annotations

import json
import logging
import uuid

from services.common.logs import JsonFormatter, log_fields, request_id_var


def _record(
    created: float, message: str = "hello %s", args=("there",), **extra
) -> logging.LogRecord:
    record = logging.LogRecord("dropfile.test", logging.INFO, __file__, 1, message, args, None)
    record.created, record.msecs = created, (created % 1) * 1000
    record.__dict__.update(extra)
    return record


def test_each_line_carries_its_own_time_to_the_millisecond():
    formatter = JsonFormatter("upload")
    times = [1_700_000_000.25, 1_700_000_000.875, 1_700_000_001.0, 1_699_999_999.5]
    stamps = [json.loads(formatter.format(_record(t)))["ts"] for t in times]
    assert stamps == [
        "2023-11-14T22:13:20.250Z",
        "2023-11-14T22:13:20.875Z",
        "2023-11-14T22:13:21.000Z",
        "2023-11-14T22:13:19.500Z",
    ]


def test_a_line_has_the_message_the_request_id_and_fields_of_any_type():
    file_id = uuid.uuid4()
    token = request_id_var.set("req-1")
    try:
        line = JsonFormatter("gateway").format(
            _record(1_700_000_000.0, **log_fields(file_id=file_id, size=5))
        )
    finally:
        request_id_var.reset(token)
    assert json.loads(line) == {
        "ts": "2023-11-14T22:13:20.000Z",
        "level": "INFO",
        "service": "gateway",
        "logger": "dropfile.test",
        "msg": "hello there",
        "request_id": "req-1",
        "file_id": str(file_id),
        "size": 5,
    }
