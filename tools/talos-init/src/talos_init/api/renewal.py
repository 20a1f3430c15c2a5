"""Renewal of the node's API certificate before it expires.

A check runs when the server starts and then every ``period`` seconds (an hour by default):
once half of the certificate's lifetime has passed (Talos's rule), ``reissue`` makes a new one
(control plane: from ``machine.ca``; worker: through trustd) and ``install`` swaps it into the
running servers' TLS contexts: new handshakes get it, the listener and open connections stay.
A failed renewal is logged and tried again at the next check.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable

from libtalos.errors import TalosError
from libtalos.secrets import CertKey
from talos_init.api.certs import past_half_life

CHECK_PERIOD = 3600.0  # seconds between checks

Issued = tuple[CertKey, float, float]  # certificate and key, not-before, not-after (Unix times)


class CertRenewal:
    def __init__(
        self,
        issued: Issued,
        reissue: Callable[[], Awaitable[Issued]],
        install: Callable[[CertKey], None],
        log: Callable[[str], None],
        *,
        period: float = CHECK_PERIOD,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cert, self.not_before, self.not_after = issued
        self._reissue = reissue
        self._install = install
        self._log = log
        self.period = period
        self._clock = clock
        self.checks = 0
        self.renewals = 0

    def due(self) -> bool:
        return past_half_life(self.not_before, self.not_after, self._clock())

    async def check(self) -> bool:
        """Renew if due; True when a new certificate was installed."""
        self.checks += 1
        if not self.due():
            return False
        cert, not_before, not_after = await self._reissue()
        self._install(cert)
        self.cert, self.not_before, self.not_after = cert, not_before, not_after
        self.renewals += 1
        until = dt.datetime.fromtimestamp(not_after, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._log(f"machine API: server certificate renewed, valid until {until}")
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except TalosError as exc:
                self._log(f"machine API: certificate renewal failed: {exc.message}; will retry")
            await asyncio.sleep(self.period)
