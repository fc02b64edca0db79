"""structlog, configured once per process: JSON lines when stdout is not a terminal, colours when it is.

The standard library's logging (Temporal's own loggers, `workflow.logger`, `activity.logger`) goes
through the same renderer, so one process writes one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
import temporalio.workflow


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Sets up structlog and the standard library's root logger. Safe to call more than once."""
    use_json = not sys.stdout.isatty() if json is None else json
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=True)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Temporal's workflow logger carries the workflow's ids as a structured field already
    # (`temporal_workflow`); appended to the message too, they would only make it unreadable.
    temporalio.workflow.logger.workflow_info_on_message = False


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger.bind(**context) if context else logger
