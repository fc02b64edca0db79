"""The custom search attributes the project sets on its workflows, registered by `dev up`."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")

SEARCH_ATTRIBUTES: dict[str, str] = {CUSTOMER_ID.name: "Keyword"}
