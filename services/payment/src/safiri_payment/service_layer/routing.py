"""Payment routes: which provider takes a new payment, and which one owns an existing payment.

A NEW payment goes to the route the ``payment-provider`` flag names, asked once per payment
(``choose``: a plain callable, so this layer knows nothing of the flags library). Everything
after the push (the callback, STK queries, the transaction list of reconciliation) goes to the
provider recorded on the payment, never to the route flagged now: a payment the backup took
is only known to the backup.

A flag naming a route this replica has no provider for (no backup configured, or a value
nobody knows) falls back to the default route, with a warning and a count
(``payment_route_fallbacks_total{provider}``), rather than failing the payment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from loguru import logger

from ..domain.payments import ProviderOutcome
from ..metrics import PaymentMetrics
from .provider import Charge, PaymentProvider, ProviderUnreachable, StkPush

__all__ = ["BACKUP", "DEFAULT_ROUTE", "MPESA", "ROUTES", "ChooseRoute", "Routes", "UnknownRoute"]

MPESA = "mpesa"
BACKUP = "backup"
# Every route name there is: the only values a ``provider`` label or attribute ever takes.
ROUTES = (MPESA, BACKUP)
DEFAULT_ROUTE = MPESA

ChooseRoute = Callable[[str], str]  # order id -> the route the flag names for it


class UnknownRoute(ProviderUnreachable):
    """A payment recorded with a route this replica has no provider for: nothing was sent."""


class _Unconfigured:
    """Stands for a recorded route with no provider here: every call fails as not sent."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _fail(self) -> UnknownRoute:
        return UnknownRoute(f"no provider is configured for the route {self.name!r}")

    async def stk_push(self, request: StkPush) -> str:
        raise self._fail()

    async def stk_query(self, checkout_request_id: str) -> ProviderOutcome | None:
        raise self._fail()

    async def charges(self, since: datetime, until: datetime) -> list[Charge]:
        raise self._fail()


class Routes:
    """The providers by route name, and the choice of one for each new payment."""

    def __init__(
        self,
        providers: Mapping[str, PaymentProvider],
        metrics: PaymentMetrics,
        choose: ChooseRoute | None = None,
        *,
        default: str = DEFAULT_ROUTE,
    ) -> None:
        if default not in providers:
            raise ValueError(f"the default route {default!r} has no provider")
        for name, provider in providers.items():
            if provider.name != name:
                raise ValueError(f"route {name!r} is served by a provider named {provider.name!r}")
        self._providers = dict(providers)
        self._metrics = metrics
        self._choose = choose or (lambda _order_id: default)
        self.default = default
        for route in self.names:
            metrics.route_fallbacks.labels(route)  # provider: the route asked for

    @classmethod
    def single(cls, provider: PaymentProvider, metrics: PaymentMetrics) -> Routes:
        """One provider for everything (no flag asked)."""
        return cls({provider.name: provider}, metrics, default=provider.name)

    @property
    def names(self) -> tuple[str, ...]:
        """The configured routes, then any other known route (their series start at 0)."""
        return tuple(dict.fromkeys([*self._providers, *ROUTES]))

    @property
    def configured(self) -> tuple[str, ...]:
        return tuple(self._providers)

    def for_new_payment(self, order_id: str) -> PaymentProvider:
        """The provider the flag names for this order, or the default one if it has none."""
        wanted = self._choose(order_id)
        provider = self._providers.get(wanted)
        if provider is not None:
            return provider
        label = wanted if wanted in ROUTES else "unknown"
        self._metrics.route_fallbacks.labels(label).inc()
        logger.bind(provider=label, fallback=self.default).warning(
            f"payment-provider names a route with no provider here; using {self.default}"
        )
        return self._providers[self.default]

    def recorded(self, name: str) -> PaymentProvider:
        """The provider that took a payment (its record's ``provider``)."""
        provider = self._providers.get(name)
        if provider is None:
            return _Unconfigured(name)
        return provider
