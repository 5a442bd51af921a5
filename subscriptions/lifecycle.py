"""The subscription state machine: every allowed transition, and nothing else.

(status, action) → new status. Anything not in the table is refused with
`invalid_transition` before any row is touched.
"""

from __future__ import annotations

from typing import Final

from billing_project.errors import Conflict

TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    # the trial ends: the first paid period starts
    ("trialing", "activate"): "active",
    ("trialing", "suspend"): "suspended",
    ("trialing", "cancel"): "canceled",
    ("trialing", "end"): "ended",
    # a paid period rolls into the next
    ("active", "renew"): "active",
    ("active", "mark_past_due"): "past_due",  # a payment failed (dunning starts)
    ("active", "suspend"): "suspended",
    ("active", "cancel"): "canceled",
    ("active", "end"): "ended",
    ("past_due", "renew"): "past_due",
    ("past_due", "recover"): "active",  # the overdue invoice was paid
    ("past_due", "suspend"): "suspended",
    ("past_due", "cancel"): "canceled",
    ("past_due", "end"): "ended",
    ("suspended", "resume"): "active",
    ("suspended", "resume_trial"): "trialing",  # suspended during a trial that has not ended
    ("suspended", "cancel"): "canceled",
    ("suspended", "end"): "ended",
    # canceled and ended are final
}

ACTIONS: Final[frozenset[str]] = frozenset(action for _, action in TRANSITIONS)
# Operations that keep the status but need a live, serving subscription.
CHANGEABLE: Final[frozenset[str]] = frozenset({"trialing", "active"})


class InvalidTransition(Conflict):
    code = "invalid_transition"


def next_status(status: str, action: str) -> str:
    try:
        return TRANSITIONS[(status, action)]
    except KeyError:
        allowed = sorted(a for (s, a) in TRANSITIONS if s == status)
        raise InvalidTransition(
            f"A {status} subscription cannot {action.replace('_', ' ')}"
            + (f" (it can: {', '.join(allowed)})." if allowed else " (it is final)."),
            details={"status": status, "action": action, "allowed": allowed},
        ) from None
