"""Postgres rows to models: one mapping, shared by the ledger activities and the ledger reads."""

from __future__ import annotations

from typing import Any

from incentives.domain.models import Applied, CouponTerms, LedgerEntry, Lot, Redemption, RedemptionSummary

Row = Any  # asyncpg.Record: untyped columns, converted to models right away


def lot_from_row(row: Row) -> Lot:
    coupon = None
    if row["kind"] == "coupon":
        coupon = CouponTerms(
            amount_off=row["coupon_amount_off_minor"],
            percent_off=row["coupon_percent_off"],
            cap=row["coupon_cap_minor"],
            min_order=row["coupon_min_order_minor"],
            uses=row["uses_allowed"],
        )
    return Lot(
        lot_id=row["lot_id"],
        customer_id=row["customer_id"],
        promotion_id=row["promotion_id"],
        kind=row["kind"],
        currency=row["currency"],
        amount=row["amount_minor"],
        remaining=row["remaining_minor"],
        coupon=coupon,
        uses_left=row["uses_left"],
        status=row["status"],
        effective_at=row["effective_at"],
        expires_at=row["expires_at"],
        remind_before=row["remind_before"],
        reminded=row["reminded_at"] is not None,
        granted_at=row["granted_at"],
        clock_workflow_id=row["clock_workflow_id"],
    )


def ledger_entry_from_row(row: Row) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row["entry_id"],
        entry_type=row["entry_type"],
        lot_id=row["lot_id"],
        customer_id=row["customer_id"],
        promotion_id=row["promotion_id"],
        order_id=row["order_id"],
        reversal_id=row["reversal_id"],
        amount=row["amount_minor"],
        currency=row["currency"],
        reason=row["reason"],
        workflow_id=row["workflow_id"],
        run_id=row["run_id"],
        created_at=row["created_at"],
    )


def redemption_from_row(row: Row) -> Redemption:
    return Redemption(
        customer_id=row["customer_id"],
        order_id=row["order_id"],
        currency=row["currency"],
        total=row["total_minor"],
        discount=row["discount_minor"],
        to_pay=row["to_pay_minor"],
        applied=[Applied.model_validate(part) for part in row["breakdown"]],
        redeemed_at=row["redeemed_at"],
    )


def order_summary_from_row(row: Row) -> RedemptionSummary:
    return RedemptionSummary(
        order_id=row["order_id"],
        currency=row["currency"],
        discount=row["discount_minor"],
        reversed=row["reversed_minor"],
        reversal_ids=list(row["reversal_ids"]),
        redeemed_at=row["redeemed_at"],
    )
