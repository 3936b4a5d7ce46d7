"""Logging set-up for the `touchline` command: plain text lines, or one JSON object per line
(`TOUCHLINE_LOG_FORMAT=json`) for touchline's and uvicorn's loggers alike."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from touchline.config import Settings
from touchline.requestctx import current_request_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message"}`, plus `request_id` inside a request and
    `exc_info` (the formatted traceback) when an exception is logged."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(settings: Settings) -> None:
    """The root logger's one handler; uvicorn's loggers reach it too (see uvicorn_log_config)."""
    level = settings.log_level.upper()
    if settings.log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, format=TEXT_FORMAT)


def uvicorn_log_config(settings: Settings) -> dict[str, Any] | None:
    """What `uvicorn.run(log_config=...)` gets: its own text set-up, or (JSON) none, so that
    its loggers keep no handlers of their own and propagate to the root's JSON handler."""
    if settings.log_format == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG
