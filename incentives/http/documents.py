"""The API's own documents, beside the app's models it answers with: what no Python call returns
as one model (a report and whether it is final, a health answer), and what only HTTP sends
(customer ids in JSON for `add-audience`). Each is documented in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from incentives.domain.models import Id, Model
from incentives.domain.promotions import PromotionFigures


class PromotionReport(PromotionFigures):
    """`incentives promotion report --json`: the books from the ledger, and whether they are final."""

    final: bool = Field(description="true once the promotion closed: no lot it granted holds value")


class Health(Model):
    """`GET /healthz`: the process is up (it says nothing of Temporal or Postgres: `/readyz` does)."""

    status: Literal["up"] = "up"


class AudienceRequest(Model):
    """`POST /v1/promotions/{id}/audience` as JSON: the customers to add (a CSV body streams instead)."""

    customers: Annotated[list[Id], Field(min_length=1)]


class ProblemTypeDocument(Model):
    """`GET /problems/{name}`: what a problem type means."""

    type: str
    title: str
    status: int
    error_type: str
    description: str
