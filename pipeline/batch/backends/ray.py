"""The Ray backend: the same items as a local run, each run by one of a few long-lived
workers (an actor per GPU, holding the loaded VGG19 and its style cache) that the
driver keeps busy one task at a time (the tasks of batch/tasks.py, run by the same `execute`). Long clips are cut into segments that run in
parallel, then joined by one more task. A worker that dies takes its item back to the
queue, up to MAX_ATTEMPTS; an item that fails for its own reasons fails once.

Only this module imports Ray, and only when a run asks for backend ray. The driver
(the process that called run_planned) holds the lock, writes the report and fires the
events; workers write outputs, sidecars and work folders on storage every node sees."""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import torch

from ...errors import EnvironmentProblem, describe_error
from ..events import RunEvents
from ..plan import PlannedItem
from ..report import ItemRecord
from ..tasks import Task, execute, work_units

MAX_ATTEMPTS = 3  # runs of one task before a dying worker counts as the item's failure
CPUS_PER_WORKER = 2  # on a cluster without GPUs: one worker per this many CPUs
WORKER_START_TIMEOUT_S = 300  # no worker ready for this long: the cluster cannot host one
POLL_S = 0.5  # how often the driver passes on progress while it waits
PROGRESS_EVERY_S = 1.0  # a worker sends at most one step/frame update per this time


def run_on_ray(todo: list[PlannedItem], events: RunEvents, address: str | None = None,
               workers: int | None = None) -> Iterator[ItemRecord]:
    """Run the items on a Ray cluster and yield their records as they finish. Connects to
    `address`, else RAY_ADDRESS, else starts a local cluster (and stops only that one)."""
    ray = require_ray()
    started_here = _connect(ray, address)
    try:
        yield from _Driver(ray, todo, events, workers).run()
    finally:
        if started_here:
            ray.shutdown()


def require_ray():
    try:
        import ray
    except ImportError:
        raise EnvironmentProblem("backend ray needs Ray: pip install 'stylize[ray]' (or use --backend local)") from None
    return ray


def _connect(ray, address: str | None) -> bool:
    """True when this call connected (so it disconnects at the end); a caller that already
    called ray.init keeps its own connection."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise EnvironmentProblem(f"cannot connect to {where}: {error}; start it with `ray start --head` "
                                 "or check --ray-address / RAY_ADDRESS") from None
    return True


class _Worker:
    """A Ray actor: one process, one device, networks and style Grams cached across tasks
    (network_for is cached per process). It runs tasks exactly as the local backend does."""

    def __init__(self, threads: int, progress, name: str):
        torch.set_num_threads(threads)
        self.events = _ForwardedEvents(progress, name)

    def ready(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def execute(self, task: Task) -> list[ItemRecord]:
        return execute(task, self.events)


class _ForwardedEvents(RunEvents):
    """What a worker tells the driver: notes always, step and frame progress at most once a second."""

    def __init__(self, queue, name: str):
        self.queue, self.name, self.last = queue, name, 0.0

    def progress(self, progress) -> None:
        if self._due():
            self._send("progress", progress.portable())  # no device tensors across processes

    def video_progress(self, progress) -> None:
        if self._due():
            self._send("video_progress", progress.portable())

    def note(self, message: str) -> None:
        self._send("note", message)

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S:
            return False
        self.last = now
        return True

    def _send(self, kind: str, value) -> None:
        try:
            self.queue.put_nowait((self.name, kind, value))
        except Exception:  # noqa: BLE001 - progress is best effort; a full or lost queue must not fail the item
            pass


@dataclass
class _Item:
    """One item and its tasks: a photo, or a clip's segments and then its join."""

    tasks: list[Task]
    position: int
    segments_done: int = 0
    started: bool = False
    finished: bool = False
    retries: list[str] = field(default_factory=list)

    @property
    def planned(self) -> PlannedItem:
        return self.tasks[0].items[0]


@dataclass
class _Attempt:
    item: _Item
    task: Task
    attempts: int = 0


@dataclass
class _Slot:
    """One worker: its actor, whether it has said it is ready, and the task it runs."""

    name: str
    actor: object
    ready_ref: object
    ready: bool = False
    task: _Attempt | None = None
    since: float = field(default_factory=time.monotonic)


class _Driver:
    def __init__(self, ray, todo: list[PlannedItem], events: RunEvents, workers: int | None):
        from ray.util.queue import Queue

        self.ray, self.events = ray, events
        self.lost = tuple(getattr(ray.exceptions, name) for name in (
            "RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError", "LocalRayletDiedError"))
        self.items = [_Item(unit, position) for position, unit in enumerate(work_units(todo, batch_size=1), start=1)]
        self.total = len(todo)
        # A clip's join waits until all its segments are done; everything else can start at once.
        self.queue: deque[_Attempt] = deque(_Attempt(item, task) for item in self.items for task in item.tasks if task.kind != "join")
        self.progress = Queue(maxsize=1000, actor_options={"num_cpus": 0})
        count, self.options, self.threads = _worker_shape(ray.cluster_resources(), workers)
        self.actor_class = ray.remote(_Worker)
        self.slots: list[_Slot] = []
        self.serial = 0
        for _ in range(count):
            self._start_worker()
        self.running: dict = {}  # ObjectRef -> slot
        self.waiting_since = time.monotonic()

    def run(self) -> Iterator[ItemRecord]:
        try:
            while self.queue or self.running:
                self._dispatch()
                refs = list(self.running) + [s.ready_ref for s in self.slots if not s.ready]
                done, _ = self.ray.wait(refs, num_returns=1, timeout=POLL_S)
                self._pass_on_progress()
                for ref in done:
                    yield from self._collect(ref)
                self._check_workers_start()
        finally:
            for slot in self.slots:
                self.ray.kill(slot.actor, no_restart=True)
            self.ray.kill(self.progress.actor, no_restart=True)

    # -- workers

    def _start_worker(self) -> _Slot:
        self.serial += 1
        name = f"worker-{self.serial}"
        actor = self.actor_class.options(**self.options).remote(self.threads, self.progress, name)
        slot = _Slot(name, actor, actor.ready.remote())
        self.slots.append(slot)
        return slot

    def _replace(self, slot: _Slot) -> None:
        self.ray.kill(slot.actor, no_restart=True)
        self.slots.remove(slot)
        self._start_worker()

    def _check_workers_start(self) -> None:
        if any(s.ready for s in self.slots):
            self.waiting_since = time.monotonic()
        elif time.monotonic() - self.waiting_since > WORKER_START_TIMEOUT_S:
            resources = {k: v for k, v in self.ray.cluster_resources().items() if k in ("CPU", "GPU")}
            raise EnvironmentProblem(f"no Ray worker could start in {WORKER_START_TIMEOUT_S} s (each asks for "
                                     f"{self.options}; the cluster has {resources}); add nodes or lower --workers")

    # -- tasks

    def _dispatch(self) -> None:
        for slot in self.slots:
            while slot.ready and slot.task is None and self.queue:
                attempt = self.queue.popleft()
                if attempt.item.finished:
                    continue  # another segment of its clip has failed
                if not attempt.item.started:
                    attempt.item.started = True
                    self.events.item_started(attempt.item.position, self.total, attempt.item.planned.item)
                attempt.attempts += 1
                slot.task, slot.since = attempt, time.monotonic()
                self.running[slot.actor.execute.remote(attempt.task)] = slot

    def _collect(self, ref) -> Iterator[ItemRecord]:
        slot = self.running.pop(ref, None)
        if slot is None:  # a worker said it is ready
            slot = next(s for s in self.slots if s.ready_ref == ref)
            try:
                self.ray.get(ref)
                slot.ready = True
            except self.lost as error:
                self._replace(slot)
                self.events.note(f"a Ray worker failed to start ({_reason(error)}); starting another")
            return
        attempt, slot.task = slot.task, None
        try:
            records = self.ray.get(ref)
        except self.lost as error:
            self._replace(slot)
            yield from self._retry(attempt, _reason(error))
            return
        except self.ray.exceptions.RayTaskError as error:
            cause = error.cause if error.cause is not None else error
            if isinstance(cause, EnvironmentProblem):
                raise cause from None  # the machine, not the item (as locally): no GPU, no ffmpeg
            records = [ItemRecord.of(attempt.item.planned.item, "failed", error=describe_error(cause))]
        yield from self._finished(attempt, records)

    def _retry(self, attempt: _Attempt, reason: str) -> Iterator[ItemRecord]:
        item, label = attempt.item, attempt.task.label
        item.retries.append(f"{label}: worker lost ({reason})")
        if attempt.attempts >= MAX_ATTEMPTS:
            record = ItemRecord.of(item.planned.item, "failed", error=f"worker lost {attempt.attempts} times on {label}; last: {reason}")
            yield from self._finish(item, record)
            return
        self.events.note(f"worker lost on {label} ({reason}); retrying on another (attempt {attempt.attempts + 1}/{MAX_ATTEMPTS})")
        self.queue.appendleft(attempt)

    def _finished(self, attempt: _Attempt, records: list[ItemRecord]) -> Iterator[ItemRecord]:
        """A photo's or a join's record, or a segment's failure, finishes the item; a
        segment that succeeded brings its clip's join nearer."""
        item = attempt.item
        if records:
            yield from self._finish(item, records[0])
            return
        item.segments_done += 1
        if item.segments_done == attempt.task.segments:
            self.queue.appendleft(_Attempt(item, item.tasks[-1]))

    def _finish(self, item: _Item, record: ItemRecord) -> Iterator[ItemRecord]:
        if item.finished:
            return
        item.finished = True
        record.attempts, record.retries = 1 + len(item.retries), list(item.retries)
        yield record

    # -- progress

    def _pass_on_progress(self) -> None:
        """Notes from every worker; steps and frames only from the worker on the oldest task,
        since the display follows one item at a time."""
        try:
            messages = self.progress.get_nowait_batch(self.progress.qsize())
        except Exception:  # noqa: BLE001 - progress is best effort
            return
        busy = [s for s in self.slots if s.task is not None]
        followed = min(busy, key=lambda s: s.since).name if busy else None
        for name, kind, value in messages:
            if kind == "note":
                self.events.note(value)
            elif name == followed:
                getattr(self.events, kind)(value)


def _worker_shape(resources: dict, workers: int | None) -> tuple[int, dict, int]:
    """How many workers, the resources each asks for, and its torch threads: one per GPU
    when the cluster has GPUs, else one per CPUS_PER_WORKER CPUs; `workers` overrides the count."""
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if gpus:
        count = workers or gpus
        return count, {"num_gpus": min(1.0, gpus / count), "num_cpus": min(1.0, cpus / count)}, 1
    count = workers or max(1, int(cpus // CPUS_PER_WORKER))
    share = cpus / count
    return count, {"num_cpus": share, "num_gpus": 0}, max(1, int(share))


def _reason(error: Exception) -> str:
    """The first line of Ray's message, which is long."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{error.__class__.__name__}: {lines[0][:200]}" if lines else error.__class__.__name__

