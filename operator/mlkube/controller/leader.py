"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

Several operator replicas may run; only the Lease's holder reconciles. The others keep
their watches (a warm cache makes a takeover cheap) and their liveness endpoint, and poll
the Lease. Expiry is judged on the candidate's own monotonic clock — from the moment it
*saw* the holder's record change, never from the ``renewTime`` written by another machine
— so clock skew between nodes cannot make two holders.

Timing, with a lease of L seconds renewed every R seconds: the holder gives up acting if
it has not renewed for L - R seconds (it stops its workers before anyone else may take
over, since a candidate waits a full L from the last change it saw); a killed holder is
replaced within about L + R; a holder shut down gracefully hands over at once, by
clearing the holder and shortening the lease to one second.

Every write is a PUT with the resourceVersion just read, so two candidates racing for an
expired Lease cannot both win: the loser gets 409 and stays a candidate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from mlkube.controller.kube import ApiError, Kube

log = logging.getLogger("mlkube.controller.leader")

RETRY_SECONDS = 2.0
RELEASE_TIMEOUT = 5.0
TRANSIENT = (ApiError, aiohttp.ClientError, OSError, TimeoutError)


@dataclass(frozen=True)
class LeaseConfig:
    """Which Lease, who we are, and its timing (see the module docstring)."""

    namespace: str
    name: str
    identity: str
    duration: int = 15
    renew_period: int = 5

    @property
    def renew_deadline(self) -> float:
        return float(self.duration - self.renew_period)


def micro_time(moment: datetime | None = None) -> str:
    """A ``MicroTime`` as the API server stores it (RFC 3339, microseconds, UTC)."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires, renews and releases one Lease, calling back on each change of leadership."""

    def __init__(
        self,
        kube: Kube,
        config: LeaseConfig,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
    ) -> None:
        self.kube = kube
        self.config = config
        self._on_started = on_started
        self._on_stopped = on_stopped
        self.leading = False
        self.holder: str | None = None
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    async def run(self) -> None:
        """Candidate → leader → (lost the Lease) → candidate …, until cancelled."""
        while True:
            await self._acquire()
            self.leading = True
            log.info("leading: Lease %s/%s", self.config.namespace, self.config.name)
            await self._on_started()
            await self._keep()
            self.leading = False
            log.warning(
                "stopped leading: Lease %s/%s not renewed (holder now %s)",
                self.config.namespace,
                self.config.name,
                self.holder or "nobody",
            )
            await self._on_stopped()

    async def _acquire(self) -> None:
        while True:
            try:
                if await self._try_acquire_or_renew():
                    return
            except TRANSIENT as error:
                log.warning("Lease %s/%s: %s", self.config.namespace, self.config.name, error)
            await asyncio.sleep(RETRY_SECONDS * (1 + random.random()))  # noqa: S311 jitter

    async def _keep(self) -> None:
        """Renews every ``renew_period``; returns once the Lease is lost or not renewable."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.config.renew_period)
            while True:
                remaining = renewed + self.config.renew_deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    ok = await asyncio.wait_for(self._try_acquire_or_renew(), remaining)
                except TRANSIENT as error:
                    log.warning("renewing Lease %s: %s", self.config.name, error)
                    ok = False
                if ok:
                    renewed = time.monotonic()
                    break
                if self.holder not in (None, "", self.config.identity):
                    return
                await asyncio.sleep(min(RETRY_SECONDS, max(remaining, 0.0)))

    async def _try_acquire_or_renew(self) -> bool:
        """One round: read the Lease, and take or renew it if it is ours to take."""
        config = self.config
        try:
            lease = await self.kube.get("Lease", config.namespace, config.name)
        except ApiError as error:
            if not error.not_found:
                raise
            return await self._create()
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        self._observe(spec)
        duration = int(spec.get("leaseDurationSeconds") or config.duration)
        expired = time.monotonic() - self._observed_at >= duration
        if holder and holder != config.identity and not expired:
            return False
        now = micro_time()
        ours = holder == config.identity
        lease["spec"] = {
            "holderIdentity": config.identity,
            "leaseDurationSeconds": config.duration,
            "acquireTime": spec.get("acquireTime") if ours else now,
            "renewTime": now,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if ours else 1),
        }
        try:
            written = await self.kube.replace(lease)
        except ApiError as error:
            if error.conflict:
                return False
            raise
        if not ours:
            log.info("took Lease %s from %s", config.name, holder or "nobody")
        self._observe(written.get("spec") or {})
        return True

    async def _create(self) -> bool:
        now = micro_time()
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.config.name, "namespace": self.config.namespace},
            "spec": {
                "holderIdentity": self.config.identity,
                "leaseDurationSeconds": self.config.duration,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            written = await self.kube.create(lease)
        except ApiError as error:
            if error.conflict:
                return False
            raise
        self._observe(written.get("spec") or {})
        return True

    def _observe(self, spec: Mapping[str, Any]) -> None:
        self.holder = str(spec.get("holderIdentity") or "")
        record = (
            self.holder,
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseDurationSeconds"),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()

    async def release(self) -> None:
        """Hands the Lease over at once (graceful shutdown); best effort, bounded in time."""
        if not self.leading:
            return
        self.leading = False
        config = self.config
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                lease = await self.kube.get("Lease", config.namespace, config.name)
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != config.identity:
                    return
                lease["spec"] = {
                    "leaseDurationSeconds": 1,
                    "renewTime": micro_time(),
                    "acquireTime": spec.get("acquireTime"),
                    "leaseTransitions": spec.get("leaseTransitions") or 0,
                }
                await self.kube.replace(lease)
        except TRANSIENT as error:
            log.warning("could not release Lease %s: %s", config.name, error)
            return
        log.info("released Lease %s/%s", config.namespace, config.name)
