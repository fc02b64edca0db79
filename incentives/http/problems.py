"""Every error the API answers, as `application/problem+json` (RFC 9457): one problem type per
refusal class, each with one status code, a stable `type` URI (`/problems/<name>`, served by the
API itself, listed in the OpenAPI document), a `title`, the occurrence's `detail` and
`error_type`, the class name. A 400 also lists each field at fault (`errors`). Never a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from incentives.domain.errors import REJECTIONS, InvalidInput, Rejected, UnknownCustomer

PROBLEM_MEDIA_TYPE = "application/problem+json"
# How long a caller refused with 503 waits before trying again: the API checks the servers every second.
RETRY_AFTER_SECONDS = 2
# A 400 lists at most this many fields: a hostile body cannot make the answer large.
MAX_FIELD_ERRORS = 20

CONFLICTS = (
    "LotConflict",
    "OrderConflict",
    "ReversalConflict",
    "RevocationConflict",
    "PromotionConflict",
    "PoolConflict",
)


@dataclass(frozen=True)
class ProblemType:
    error_type: str
    status: int
    description: str

    @property
    def uri(self) -> str:
        return f"/problems/{slug(self.error_type)}"

    @property
    def title(self) -> str:
        """The class name in words: `NothingToRedeem` is "Nothing to redeem"."""
        words = re.findall(r"[A-Z][a-z]*", self.error_type)
        return " ".join([words[0], *(word.lower() for word in words[1:])])


def slug(error_type: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", error_type).lower()


_EDGE_PROBLEMS = [
    ProblemType(
        "InvalidInput", 400, "The request is malformed: which fields, and why, are in `errors`. Nothing was sent."
    ),
    ProblemType("Unauthenticated", 401, "No API key, a malformed one, or a key unknown or revoked."),
    ProblemType("Forbidden", 403, "The key's scopes do not include this operation."),
    ProblemType("NotFound", 404, "No such route."),
    ProblemType("UnknownPromotion", 404, "No promotion with this id was ever started."),
    ProblemType("UnknownCustomer", 404, UnknownCustomer.__doc__ or ""),
    ProblemType("MethodNotAllowed", 405, "The route exists, but not with this method (see the `Allow` header)."),
    ProblemType("InternalError", 500, "A bug: the detail is in the server's log. The request may be retried."),
    ProblemType(
        "Unavailable",
        503,
        "Temporal or Postgres did not answer before anything was sent: the same request again is safe.",
    ),
    ProblemType(
        "OutcomeUnknown",
        504,
        "No answer within the request's deadline: it may or may not have been applied, and the same request again "
        "is safe (same ids, same result).",
    ),
]
# The business refusals: a conflict (the same id with another payload, a control the state does not
# allow) is 409, any other rule 422; the edge's own come last, so an unknown customer is a 404.
PROBLEM_TYPES: dict[str, ProblemType] = {
    **{
        name: ProblemType(name, 409 if name in CONFLICTS else 422, (cls.__doc__ or "").strip())
        for name, cls in REJECTIONS.items()
    },
    **{problem.error_type: problem for problem in _EDGE_PROBLEMS},
}


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(
        description="the field at fault: a body field's path (`coupon.percent_off`), a path or "
        "query parameter's name, a header's name, or `body` for the body as a whole"
    )
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 has it, with the refusal's class name beside it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(description="the problem type's URI, one per refusal class (`/problems/nothing-to-redeem`)")
    title: str
    status: int
    detail: str = Field(description="what happened to this request, in words")
    error_type: str = Field(description="the refusal's class name, such as `NothingToRedeem`")
    errors: list[FieldError] | None = Field(default=None, description="a 400's fields at fault, each with why")


class InvalidRequest(InvalidInput):
    """A request with one or more fields at fault; the first is the `InvalidInput`'s own."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(*errors[0])
        self.errors = errors[:MAX_FIELD_ERRORS]


class HttpProblem(Exception):
    """A refusal the edge itself decides (401, 403, 404, 405), raised where it is found."""

    def __init__(self, error_type: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.error_type = error_type
        self.detail = detail
        self.headers = headers or {}


def problem_response(
    error_type: str, detail: str, *, errors: list[tuple[str, str]] | None = None, headers: dict[str, str] | None = None
) -> Response:
    kind = PROBLEM_TYPES[error_type]
    problem = Problem(
        type=kind.uri,
        title=kind.title,
        status=kind.status,
        detail=detail,
        error_type=error_type,
        errors=None if errors is None else [FieldError(field=field, message=message) for field, message in errors],
    )
    return Response(
        problem.model_dump_json(exclude_none=True),
        status_code=kind.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def invalid(error: InvalidInput) -> Response:
    errors = error.errors if isinstance(error, InvalidRequest) else [(error.field, error.reason)]
    more = f" (and {len(errors) - 1} more: see errors)" if len(errors) > 1 else ""
    return problem_response("InvalidInput", f"{errors[0][0]}: {errors[0][1]}{more}", errors=errors)


def rejected(error: Rejected) -> Response:
    name = type(error).__name__
    if name not in PROBLEM_TYPES:  # a subclass named for one use (UnknownPromotion is listed itself)
        name = next(cls.__name__ for cls in type(error).__mro__ if cls.__name__ in PROBLEM_TYPES)
    return problem_response(name, error.message)
