"""`--workers N`: a process pool over the recordings (spawn context), one recognizer per worker.

Each worker builds its recognizer once, in the pool initializer, then runs the same
`process_recording` as a batch in one process, so the outputs do not depend on the worker count.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from edge_ser.batch.inputs import Recording
from edge_ser.batch.process import Outcome, process_recording
from edge_ser.batch.settings import JobSettings

PARENT_POLL_S = 0.5
_recognizer = None
_settings: JobSettings | None = None


class WorkerError(RuntimeError):
    """A worker process died (killed, out of memory) or could not build its recognizer."""


def _init_worker(factory: Callable[[], object], settings: JobSettings, parent_pid: int) -> None:
    global _recognizer, _settings
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True,
                     name="edge-ser-parent-watch").start()
    _recognizer = factory()
    _settings = settings


def _exit_with_parent(parent_pid: int) -> None:
    """End this worker when the batch process is gone (e.g. `kill -9`): the pool's queues
    would otherwise keep it waiting forever, holding a model. What it was writing is redone
    by the next run, as its completion marker was not written."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _run_one(recording: Recording) -> Outcome:
    return process_recording(_recognizer, recording, _settings)


def run_pool(recordings: list[Recording], settings: JobSettings,
             factory: Callable[[], object], workers: int) -> Iterator[Outcome]:
    """Outcomes in completion order. `factory` (picklable) builds a worker's recognizer."""
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                   initializer=_init_worker,
                                   initargs=(factory, settings, os.getpid()))
    try:
        futures = [executor.submit(_run_one, recording) for recording in recordings]
        for future in as_completed(futures):
            yield future.result()
    except BrokenProcessPool as exc:
        raise WorkerError(f"a batch worker process died ({exc}); the recordings finished so "
                          "far are kept: rerun the same command to resume") from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
