"""The spend gate between validation and the first upstream request: quote the call, apply the
budgets against the ledger's day, ask for confirmation above the threshold, and settle the call's
ledger row however it ends. Plain Python with no MCP in it: the app turns ConfirmationNeeded into
an elicitation form where the client has one, else into the refusal that carries the token.

Every method takes an optional `user`: budgets, tokens and the ledger's rows are then that user's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import anyio

from .errors import (
    AuthFailed,
    ConfigError,
    ContentRefused,
    InsufficientBalance,
    InvalidRequest,
    ModelNotFound,
    NotConfigured,
    RateLimited,
    shown,
)
from .generation import Outcome
from .ledger import TOKEN_SECONDS, Ledger, Planned, Refused, Settled, UsageReport, call_digest
from .pricing import Budgets, ConfirmationNeeded, Pricing, Quote, SpendRefused, judge, money
from .validation import ImageRequest

__all__ = ["Admission", "Spend"]


NOT_BILLED = (
    ConfigError,
    InvalidRequest,
    NotConfigured,
    AuthFailed,
    InsufficientBalance,
    RateLimited,
    ModelNotFound,
    ContentRefused,
)
"""Failures where no upstream did the work: refused before anything was sent, or by the upstream at
the door (a refused prompt makes no image). Any other failure of a sent call may have been billed."""


@dataclass(frozen=True)
class Admission:
    """A call past validation and the spend rules, before anything is sent: its request, its quote,
    its ledger row (reserved at the estimate), and a note its answer must carry (an unknown price)."""

    tool: str
    request: ImageRequest
    quote: Quote
    row: int | None = None
    note: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class Spend:
    """Prices, budgets and the ledger (None: no ledger, no budgets: every call goes)."""

    pricing: Pricing = field(default_factory=Pricing)
    budgets: Budgets = field(default_factory=Budgets)
    ledger: Ledger | None = None

    def quote(self, request: ImageRequest) -> Quote:
        return self.pricing.quote(request.route, request.n, request.size, request.knobs)

    async def admit(
        self, tool: str, request: ImageRequest, arguments: Mapping[str, Any] | None, user: str | None = None
    ) -> Admission:
        """Apply the spend rules to a validated call and reserve its ledger row. Raises SpendRefused,
        ConfirmationNeeded (with a one-time token), or InvalidRequest for a `confirm` token that is
        not this call's."""
        quote = self.quote(request)
        ledger = self.ledger
        if ledger is None:
            return Admission(tool, request, quote, user=user)
        args = {k: v for k, v in (arguments or {}).items() if v is not None}
        digest, token = call_digest(tool, args), args.get("confirm")
        if token is not None and not await ledger.in_thread(lambda: ledger.redeem(str(token), digest, user)):
            message = (
                f'confirm "{shown(token)}" is not a token for this call (unknown, used, expired, or given '
                "for other arguments); call again without it for a new one"
            )
            raise InvalidRequest("confirm", shown(token), "the token this call's confirmation gave", message)
        verdicts = []

        def decide(spent: float) -> tuple[str, str]:
            verdicts.append(verdict := judge(quote, spent, self.budgets, confirmed=token is not None))
            return verdict.action, verdict.text

        planned = self._planned(tool, request, quote, user)
        try:
            row = await ledger.in_thread(lambda: ledger.reserve(planned, decide))
        except Refused as refused:
            raise SpendRefused(str(refused), provider=request.route.provider) from None
        if row is None:
            await self._ask(ledger, tool, digest, quote, verdicts[-1].text, user)
        return Admission(tool, request, quote, row, verdicts[-1].text or None, user)

    async def _ask(
        self, ledger: Ledger, tool: str, digest: str, quote: Quote, question: str, user: str | None
    ) -> None:
        token = await ledger.in_thread(lambda: ledger.issue(digest, user))
        threshold = money(self.budgets.confirm_above or 0.0, "USD")
        message = (
            f"confirmation needed, nothing was sent: {quote.label} is {quote.words()}, above the "
            f"IMAGEGATE_CONFIRM_ABOVE threshold of {threshold}. Ask the user; to go ahead, call {tool} again "
            f'with the same arguments plus "confirm": "{token}" '
            f"(once, within {TOKEN_SECONDS / 60:.0f} minutes)."
        )
        raise ConfirmationNeeded(message, quote, token, question)

    async def decline(self, tool: str, request: ImageRequest, why: str, user: str | None = None) -> str:
        """Record a call whose confirmation was declined or not answered (nothing is sent); the answer."""
        quote = self.quote(request)
        if self.ledger is not None:
            ledger, planned = self.ledger, self._planned(tool, request, quote, user)
            await ledger.in_thread(lambda: ledger.append(planned, Settled("declined", note=why)))
        return f"not sent: the confirmation was {why} ({quote.label}, {quote.words()}); nothing was spent"

    @staticmethod
    def _planned(tool: str, request: ImageRequest, quote: Quote, user: str | None) -> Planned:
        route = request.route
        size = request.size.label()
        return Planned(
            tool, route.model, route.provider, request.n, size, quote.total, quote.currency, quote.usd, user
        )

    async def usage(self, since: date | None = None, user: str | None = None) -> UsageReport | None:
        """Spend since a day (default: today) by provider and model; None without a ledger."""
        ledger = self.ledger
        if ledger is None:
            return None
        return await ledger.in_thread(lambda: ledger.usage(since or ledger.now().date(), user))  # type: ignore[no-any-return]

    async def run(self, admission: Admission, work: Callable[[], Awaitable[Outcome]]) -> Outcome:
        """Run an admitted call (`work` sends it) and settle its ledger row however it ends."""
        try:
            outcome = await work()
        except BaseException as e:
            with anyio.CancelScope(shield=True):
                await self._settle(admission, None, e)
            raise
        with anyio.CancelScope(shield=True):
            await self._settle(admission, outcome)
        return replace(outcome, warnings=(*outcome.warnings, admission.note)) if admission.note else outcome

    async def _settle(
        self, admission: Admission, outcome: Outcome | None, failure: BaseException | None = None
    ) -> None:
        ledger, row = self.ledger, admission.row
        if ledger is None or row is None:
            return
        settled = self.settled(admission, outcome, failure)
        await ledger.in_thread(lambda: ledger.settle(row, settled))

    def settled(
        self, admission: Admission, outcome: Outcome | None, failure: BaseException | None = None
    ) -> Settled:
        """What a call is charged: what the upstream reported, else the estimate for the images made.
        A call that ended without an outcome is charged its whole estimate unless the failure shows
        that no upstream did the work (refused before sending, or a 4xx): a timeout, a lost reply or
        a cancellation may have been billed, and a budget must not forget it."""
        if outcome is None:
            name = type(failure).__name__ if failure is not None else "failed"
            status = getattr(failure, "status", None)
            unbilled = isinstance(failure, NOT_BILLED) or (isinstance(status, int) and 400 <= status < 500)
            if unbilled or admission.quote.usd is None:
                return Settled("failed", note=name)
            note = f"{name}: charged the estimate, as the upstream may have billed a request it received"
            return Settled("failed", charged_usd=admission.quote.usd, note=note)
        made, quote, cost = len(outcome.images), admission.quote, outcome.cost
        charge = None
        if cost is not None and cost.reported is not None:
            rate = self.pricing.usd_rate(cost.currency)
            charge = cost.reported * rate if rate is not None else None
        if charge is None and quote.usd is not None:
            charge = quote.usd / quote.n * made
        return Settled(
            "ok" if made >= admission.request.n else "partial",
            images=made,
            reported=cost.reported if cost is not None else None,
            charged_usd=charge or 0.0,
            paths=[str(i.path) for i in outcome.images],
            request_ids=list(outcome.request_ids),
        )
