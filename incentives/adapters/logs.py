"""structlog, configured once per process: JSON lines when stdout is not a terminal, colours when it is.

Everything the process logs goes through the same renderer, so one process writes one format: the
standard library's logging (Temporal's own loggers, `workflow.logger`, `activity.logger`), Python
warnings, and the Temporal core's (Rust) log, which is forwarded into Python logging instead of
being written to the terminal in its own colours.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any

import structlog
import temporalio.activity
import temporalio.workflow
from opentelemetry import trace
from temporalio.exceptions import ApplicationError
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from incentives.domain.errors import REJECTIONS

# The SDK's message for an activity that raised; kept in step with temporalio's worker.
_ACTIVITY_FAILED = "Completing activity as failed"


def configure_logging(level: str = "INFO", *, json: bool | None = None, path: Path | None = None) -> None:
    """Sets up structlog and the standard library's root logger. Safe to call more than once.

    With `path`, lines go to that file (created with its first line) rather than to stdout: the
    command's own log, where an internal error's traceback goes instead of the terminal.
    """
    use_json = (path is not None or not sys.stdout.isatty()) if json is None else json
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _add_trace_ids,
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
    handler = _handler(path)
    handler.setFormatter(formatter)
    handler.addFilter(BusinessRefusals())
    handler.addFilter(_core_record)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    # Temporal's workflow logger carries the workflow's ids as a structured field already
    # (`temporal_workflow`); appended to the message too, they would only make it unreadable.
    temporalio.workflow.logger.workflow_info_on_message = False
    temporalio.activity.logger.activity_info_on_message = False
    _forward_temporal_core_logs()


def _add_trace_ids(logger: Any, method_name: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    """`trace_id` and `span_id` of the span current where the line is logged, as OpenTelemetry
    writes them (32 and 16 hex digits), so that a trace leads to its lines and a line to its trace.
    Nothing when no span is current, as everywhere while tracing is off."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


def _handler(path: Path | None) -> logging.Handler:
    if path is None:
        return logging.StreamHandler(sys.stdout)
    # A log file that cannot be written must not put logging's own traceback on the terminal.
    logging.raiseExceptions = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return logging.NullHandler()
    return logging.FileHandler(path, delay=True, encoding="utf-8")


def log_destination() -> str:
    """Where the root logger writes: a file's path, or `stdout`."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return "stdout"


@functools.cache
def _forward_temporal_core_logs() -> None:
    """Makes the default Temporal runtime forward its core's log records into Python logging.

    Once per process, before any client connects: a runtime is a thread pool, and clients keep the
    runtime they were created with. When a default runtime exists already, it is left as it is.
    """
    runtime = Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            )
        )
    )
    try:
        Runtime.set_default(runtime)
    except RuntimeError:
        return


def _core_record(record: logging.LogRecord) -> bool:
    """A forwarded core record carries the core's entry object, which has no JSON form; its target
    and fields are in the message already."""
    record.__dict__.pop("temporal_log", None)
    return True


class BusinessRefusals(logging.Filter):
    """A business refusal inside an activity is an answer, not a fault: the SDK logs it as a warning
    with a traceback like any failure, and this turns it into one INFO line with the rule's type,
    its message and the activity's ids (dropped when INFO is not enabled)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not (
            isinstance(error, ApplicationError)
            and error.type in REJECTIONS
            and record.name == "temporalio.activity"
            and str(record.msg).startswith(_ACTIVITY_FAILED)
        ):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.INFO):
            return False
        activity: dict[str, Any] = record.__dict__.pop("temporal_activity", None) or {}
        record.__dict__.pop("__temporal_error_identifier", None)
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args, record.exc_info, record.exc_text = "business refusal", (), None, None
        record.__dict__.update(
            error_type=error.type,
            reason=error.message,
            activity=activity.get("activity_type"),
            workflow_id=activity.get("workflow_id"),
            run_id=activity.get("workflow_run_id"),
            attempt=activity.get("attempt"),
        )
        return True


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger.bind(**context) if context else logger
