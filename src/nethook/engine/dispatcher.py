"""The dispatcher: claim events with a lease, run the matching rules' actions, record results.

Crash-safety comes from the store: an event is leased, each action attempt is recorded, and
a step recorded as succeeded is skipped when the event is processed again (after a crash, a
lost lease or a retry). Transient failures put the event back in the queue with a backoff;
exhausted retries and permanent failures make it ``dead``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pydantic
import structlog

from .. import artifacts, metrics
from ..actions.base import ActionContext, ActionResult, get_action
from ..config import Config
from ..events import ActionRun, Event, EventStatus, RunStatus
from ..exceptions import ActionTimeout, PermanentError, StoreUnavailable, TransientError
from ..store.base import Store
from .retry import backoff_delay
from .rules import Rule, Rulebook, Step, names_for
from .throttle import Decision, Verdict, Window, group_key
from .throttle import decide as throttle_decide

log = structlog.get_logger("nethook.dispatcher")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How processing one event ended (for sync replies and tests)."""

    event_id: str
    status: EventStatus
    results: dict[str, Any]
    error: str | None = None


async def run_action(ctx: ActionContext, step: Step, args: Any, timeout: float) -> ActionResult:
    """Validate options, run one action with a timeout, and turn every failure into data."""
    started = time.monotonic()
    try:
        action = get_action(step.action)
        opts = action.Options.model_validate(args)
        # asyncio.timeout, not wait_for: no extra task per action on the hot path.
        async with asyncio.timeout(timeout):
            result = await action.run(ctx, opts)
        return ActionResult(
            result.ok,
            result.output,
            result.error,
            time.monotonic() - started,
            result.transient,
            result.artifacts,
            result.retry_after,
        )
    except TimeoutError:
        err: Exception = ActionTimeout(f"{step.action} timed out after {timeout:g}s")
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        err = PermanentError(f"{step.action}: invalid arguments after rendering: {problems}")
    except (TransientError, PermanentError) as exc:
        err = exc
    except Exception as exc:  # an action bug must not kill the worker; keep it as a result
        log.exception("action.crashed", action=step.action)
        err = PermanentError(f"{step.action} crashed: {type(exc).__name__}: {exc}")
    return ActionResult(
        ok=False,
        error=str(err),
        elapsed=time.monotonic() - started,
        transient=isinstance(err, TransientError),
        retry_after=err.retry_after if isinstance(err, TransientError) else None,
    )


class Dispatcher:
    """Claims and processes events until stopped. Several may share one store."""

    def __init__(
        self,
        store: Store,
        config: Config,
        rulebook: Callable[[], Rulebook],
        http: httpx.AsyncClient,
        owner: str | None = None,
        inventory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.time,
        extras: dict[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.cfg = config.dispatcher
        self.rulebook = rulebook
        self.inventory = inventory or (lambda: None)
        self.clock = clock
        self.extras = extras if extras is not None else {}
        self.http = http
        self.owner = owner or worker_id()
        self.lease = config.store.lease_seconds
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._main: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._ran_any: dict[str, list[bool]] = {}
        self._final_runs: dict[str, ActionRun] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._main = asyncio.create_task(self.run(), name="nethook-dispatcher")
        self._heartbeat = asyncio.create_task(self._renew_leases(), name="nethook-leases")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; let in-flight events finish for ``grace`` seconds, then cancel.

        A cancelled event keeps its lease until it expires, then another worker resumes it.
        """
        self._stopping.set()
        if hasattr(self.store, "notify_work"):
            self.store.notify_work()
        if self._main is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        if self._inflight:
            _done, pending = await asyncio.wait(list(self._inflight.values()), timeout=grace)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    def wait_for(self, event_id: str) -> asyncio.Future[Outcome]:
        """A future resolved when this dispatcher finishes ``event_id`` (sync replies)."""
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(event_id, []).append(fut)
        return fut

    def forget(self, event_id: str, fut: asyncio.Future[Outcome]) -> None:
        futs = self._waiters.get(event_id)
        if futs and fut in futs:
            futs.remove(fut)
            if not futs:
                del self._waiters[event_id]

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        idle_wait = self.config.store.poll_interval
        while not self._stopping.is_set():
            free = self.cfg.concurrency - len(self._inflight)
            if free <= 0:
                await asyncio.wait(
                    list(self._inflight.values()), return_when=asyncio.FIRST_COMPLETED
                )
                continue
            try:
                events = await self.store.claim(self.owner, free, self.lease)
            except StoreUnavailable as exc:
                log.warning("dispatcher.claim_failed", error=str(exc))
                await asyncio.sleep(min(5.0, idle_wait * 4))
                continue
            for event in events:
                if event.id in self._inflight:
                    # Our own task is still on it: its lease lapsed (a stall longer than the
                    # lease) and this claim renewed it. A second copy would run steps twice.
                    log.warning("dispatcher.reclaimed_own", event_id=event.id)
                    continue
                task = asyncio.create_task(self._process_guarded(event), name=f"event-{event.id}")
                self._inflight[event.id] = task
                task.add_done_callback(self._forget_task)
            if not events:
                await self.store.wait_for_work(idle_wait)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task.get_name().removeprefix("event-"), None)

    async def _gate(self, event: Event, rule: Rule, book: Rulebook, inventory: Any) -> Decision:
        policy = rule.policy
        assert policy is not None
        key = group_key(rule.name, policy, names_for(event, book.variables, inventory))
        clock = self.clock

        def decide(state: Any | None) -> tuple[dict[str, Any], Any | None]:
            decision, window = throttle_decide(policy, Window.from_dict(state), event.id, clock())
            return decision.as_dict(), window.as_dict() if window is not None else None

        return Decision.from_dict(
            await self.store.gate(event.id, f"{rule.name}#gate", rule.name, key, decide)
        )

    async def _views(self, ids: tuple[str, ...], limit: int = 100) -> list[dict[str, Any]]:
        """The collected events of a window, as templates see events (at most ``limit``)."""
        out = []
        for eid in ids[:limit]:
            ev = await self.store.get_event(eid)
            if ev is not None:
                out.append(ev.template_view())
        return out

    async def _still_ours(self, event_id: str) -> bool:
        """Renew one lease between steps: False when another worker holds the event now."""
        return event_id in await self.store.renew(self.owner, [event_id], self.lease)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            ids = list(self._inflight)
            if not ids:
                continue
            try:
                kept = await self.store.renew(self.owner, ids, self.lease)
            except StoreUnavailable as exc:
                log.warning("dispatcher.renew_failed", error=str(exc))
                continue
            # An event that finished while the renew was queued is not a lost lease.
            for lost in (set(ids) - kept) & self._inflight.keys():
                log.warning("dispatcher.lease_lost", event_id=lost)

    async def _process_guarded(self, event: Event) -> None:
        try:
            outcome = await self.process(event)
        except StoreUnavailable as exc:
            # The lease will expire and the event will be claimed again: nothing is lost.
            log.warning("dispatcher.store_unavailable", event_id=event.id, error=str(exc))
            return
        except Exception:
            log.exception("dispatcher.crashed", event_id=event.id)
            return
        for fut in self._waiters.pop(event.id, []):
            if not fut.done():
                fut.set_result(outcome)

    # ------------------------------------------------------------------ one event

    async def process(self, event: Event) -> Outcome:
        """Run every matching rule's steps for one leased event, then finish it."""
        elog = log.bind(event_id=event.id, source=event.source, type=event.type)
        book = self.rulebook()
        inventory = self.inventory()
        try:
            rules = book.match(event, inventory)
        except PermanentError as exc:
            await self.store.finish(event.id, self.owner, EventStatus.DEAD, str(exc))
            elog.warning("event.dead", error=str(exc))
            return Outcome(event.id, EventStatus.DEAD, {}, str(exc))

        # First claim: nothing can have run yet, so skip the read on the hot path.
        history = await self.store.list_runs(event.id) if event.attempts > 1 else []
        done = {r.step: r.output for r in history if r.status is RunStatus.SUCCEEDED}
        tries: dict[str, int] = {}
        for r in history:
            tries[r.step] = max(tries.get(r.step, 0), r.attempt)

        results: dict[str, Any] = {}
        self._ran_any[event.id] = [False]
        try:
            return await self._process_rules(
                event, rules, book, inventory, done, tries, results, elog
            )
        finally:
            self._ran_any.pop(event.id, None)
            self._final_runs.pop(event.id, None)

    def _settled(self, event_id: str) -> None:
        # Forget the event as soon as its end is stored, before the task winds down, so a
        # lease renewal racing with the finish does not report a lost lease.
        self._inflight.pop(event_id, None)

    async def _process_rules(
        self,
        event: Event,
        rules: list[Rule],
        book: Rulebook,
        inventory: Any,
        done: dict[str, Any],
        tries: dict[str, int],
        results: dict[str, Any],
        elog: Any,
    ) -> Outcome:
        suppressed = 0
        for i, rule in enumerate(rules):
            status, error, delay = await self._run_rule(
                event, rule, book, inventory, done, tries, results, elog, last=i == len(rules) - 1
            )
            if status is EventStatus.SUPPRESSED:
                suppressed += 1
                continue
            if status is EventStatus.RUNNING:
                elog.warning("event.lease_lost", rule=rule.name)
                return Outcome(event.id, EventStatus.RUNNING, results, error)
            if status is EventStatus.QUEUED:
                assert delay is not None
                await self.store.retry_later(event.id, self.owner, time.time() + delay, error)
                self._settled(event.id)
                elog.info("event.retry", error=error, delay=round(delay, 3))
                return Outcome(event.id, EventStatus.QUEUED, results, error)
            if status is EventStatus.DEAD:
                await self.store.finish(event.id, self.owner, EventStatus.DEAD, error)
                self._settled(event.id)
                elog.warning("event.dead", rule=rule.name, error=error)
                return Outcome(event.id, EventStatus.DEAD, results, error)
        if rules and suppressed == len(rules):
            await self.store.finish(event.id, self.owner, EventStatus.SUPPRESSED)
            self._settled(event.id)
            elog.info("event.suppressed", rules=[r.name for r in rules])
            return Outcome(event.id, EventStatus.SUPPRESSED, results)
        final_run = self._final_runs.pop(event.id, None)
        if final_run is not None:
            # The last step's record and the event's end share one transaction.
            await self.store.finish_with_run(event.id, self.owner, EventStatus.SUCCEEDED, final_run)
            self._settled(event.id)
        else:
            await self.store.finish(event.id, self.owner, EventStatus.SUCCEEDED)
            self._settled(event.id)
        elog.info("event.succeeded", rules=[r.name for r in rules])
        return Outcome(event.id, EventStatus.SUCCEEDED, results)

    async def _run_rule(
        self,
        event: Event,
        rule: Rule,
        book: Rulebook,
        inventory: Any,
        done: dict[str, Any],
        tries: dict[str, int],
        all_results: dict[str, Any],
        elog: Any,
        last: bool = False,
    ) -> tuple[EventStatus, str | None, float | None]:
        results: dict[str, Any] = {}
        all_results[rule.name] = results
        ran_any = self._ran_any.setdefault(event.id, [False])
        throttle: dict[str, Any] | None = None
        if rule.policy is not None:
            decision = await self._gate(event, rule, book, inventory)
            if decision.verdict is Verdict.SUPPRESS:
                all_results[rule.name] = {"suppressed": decision.reason}
                return EventStatus.SUPPRESSED, decision.reason, None
            if decision.verdict is Verdict.DEFER:
                assert decision.due is not None
                return (
                    EventStatus.QUEUED,
                    f"{rule.name}: {decision.reason}",
                    max(0.0, decision.due - self.clock()),
                )
            throttle = {
                "reason": decision.reason,
                "count": len(decision.events),
                "events": await self._views(decision.events),
            }
        for step in rule.steps:
            names = names_for(event, book.variables, inventory, results, throttle)
            slot = step.label or str(step.index)
            if step.key in done:
                results[slot] = done[step.key]
                continue
            if step.when is not None and not step.when(names):
                results[slot] = None
                continue
            if ran_any[0] and not await self._still_ours(event.id):
                # Another worker took the event over (our lease lapsed): stop here rather
                # than run steps it will run too.
                return EventStatus.RUNNING, "lease lost", None
            ran_any[0] = True
            attempt = tries.get(step.key, 0) + 1
            ctx = ActionContext(
                event=event,
                rule=rule.name,
                step=step.key,
                attempt=attempt,
                config=self.config,
                store=self.store,
                http=self.http,
                log=elog.bind(rule=rule.name, action=step.action),
                results=results,
                extras=self.extras,
                allow_config=rule.allow_config,
            )
            started = time.time()
            try:
                args = step.render(names)
            except PermanentError as exc:
                result = ActionResult(ok=False, error=str(exc))
            else:
                if isinstance(args, dict) and isinstance(args.get("device"), str):
                    # Device actions' log lines say which device (filterable in log search).
                    ctx.log = ctx.log.bind(device=args["device"])
                timeout = step.timeout or self.cfg.action_timeout
                result = await run_action(ctx, step, args, timeout)
            # Read the clock now rather than add elapsed to started: elapsed starts after
            # rendering, and on a busy machine the difference was 20 ms, enough to date a
            # run's end before the request it made.
            finished = time.time()
            metrics.action_run(step.action, result.ok, result.elapsed)
            ctx.log.info(
                "action.finished",
                ok=result.ok,
                attempt=attempt,
                elapsed=round(result.elapsed, 4),
                error=result.error,
            )
            run = ActionRun(
                event_id=event.id,
                step=step.key,
                rule=rule.name,
                action=step.action,
                attempt=attempt,
                status=RunStatus.SUCCEEDED if result.ok else RunStatus.FAILED,
                started_at=started,
                finished_at=finished,
                output=result.output,
                error=result.error,
                transient=result.transient,
            )
            if last and result.ok and not result.artifacts and step is rule.steps[-1]:
                # Nothing runs after this step: record it together with the event's end.
                self._final_runs[event.id] = run
                results[slot] = result.output
                continue
            run_id = await self.store.record_run(run)
            for data in result.artifacts:
                art = await asyncio.to_thread(
                    artifacts.write, self.config.store.data_dir, event.id, step.key, run_id, data
                )
                await self.store.add_artifact(art)
            if result.ok:
                results[slot] = result.output
                continue
            results[slot] = {"error": result.error}
            if step.continue_on_error:
                continue
            max_attempts = (step.retries + 1) if step.retries is not None else self.cfg.max_attempts
            if result.transient and attempt < max_attempts:
                delay = backoff_delay(attempt, self.cfg.backoff_base, self.cfg.backoff_max)
                if result.retry_after is not None:
                    # The peer said when to come back (429/503 Retry-After): not sooner.
                    delay = max(delay, min(result.retry_after, self.cfg.backoff_max))
                return EventStatus.QUEUED, f"{step.key}: {result.error}", delay
            why = "" if not result.transient else f" (gave up after {attempt} attempts)"
            return EventStatus.DEAD, f"{step.key}: {result.error}{why}", None
        return EventStatus.SUCCEEDED, None, None
