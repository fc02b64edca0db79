"""The search attributes the workflows set, so `temporal workflow list --query` and the Web UI can
filter by customer, promotion and state. Registered by `dev up` and the test servers; a real
cluster registers them once (README)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
PROMOTION_ID = SearchAttributeKey.for_keyword("PromotionId")
INCENTIVE_STATE = SearchAttributeKey.for_keyword("IncentiveState")
SEARCH_ATTRIBUTES: dict[str, str] = {key.name: "Keyword" for key in (CUSTOMER_ID, PROMOTION_ID, INCENTIVE_STATE)}
