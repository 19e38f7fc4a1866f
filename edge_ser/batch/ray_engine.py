"""`--engine ray`: Ray Data over the recording list, actors holding the model.

Each actor builds its recognizer once and runs the same `process_recording` as the local
engines, writing into the same output folder (on a cluster, a folder every node can reach).
With `RAY_ADDRESS` set (or `ray.init` already called) the batch joins that cluster, whose nodes
need edge-ser installed; otherwise it starts a local Ray instance whose workers import what this
process imports. ray is imported here only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from edge_ser.batch.inputs import Recording
from edge_ser.batch.process import Outcome, process_recording
from edge_ser.batch.settings import JobSettings


def recording_to_json(recording: Recording) -> str:
    return json.dumps(dataclasses.asdict(recording))


def recording_from_json(text: str) -> Recording:
    data = json.loads(text)
    if data["roles"] is not None:
        data["roles"] = tuple((role, int(index)) for role, index in data["roles"])
    return Recording(**data)


class RecordingActor:
    """A Ray Data actor: one recognizer, built once; a batch of recordings in, outcomes out."""

    def __init__(self, factory: Callable[[], object], settings: JobSettings) -> None:
        self._recognizer = factory()
        self._settings = settings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = [process_recording(self._recognizer, recording_from_json(str(text)),
                                      self._settings)
                    for text in batch["recording"]]
        return {"outcome": np.array([json.dumps(dataclasses.asdict(o)) for o in outcomes],
                                    dtype=object)}


def run_ray(recordings: list[Recording], settings: JobSettings,
            factory: Callable[[], object], workers: int) -> Iterator[Outcome]:
    """Outcomes as Ray Data streams them back, `workers` actors (one CPU each)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise RuntimeError("--engine ray needs Ray Data: pip install 'ray[data]'") from None
    if not recordings:
        return
    started_here = _connect(ray)
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # no plan or progress lines
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # actors run in other folders, or on other machines: paths must not be relative
        settings = dataclasses.replace(settings, out_dir=os.path.abspath(settings.out_dir))
        items = [{"recording": recording_to_json(dataclasses.replace(
            r, path=os.path.abspath(r.path)))} for r in recordings]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        results = dataset.map_batches(
            RecordingActor, fn_constructor_args=(factory, settings), batch_size=1,
            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
        for row in results.iter_rows():
            yield Outcome(**json.loads(str(row["outcome"])))
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray) -> bool:
    """Join the cluster in RAY_ADDRESS, or start a local instance; True if started here.

    Ray's own messages stay in its session logs: the batch prints only its progress. Its core
    logs a spurious error line for every Ray Data actor pool (ray-project/ray#57733), so its C++
    log level is `fatal` unless RAY_BACKEND_LOG_LEVEL says otherwise."""
    if ray.is_initialized():
        return False
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"ray(\.|$)")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    options: dict[str, object] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.ERROR}
    address = os.environ.get("RAY_ADDRESS")
    if not address:  # a local instance: its workers see this process's import path
        path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        options["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
    _quietly(lambda: ray.init(address=address or None, **options))
    return True


def _quietly(call: Callable[[], object]) -> None:
    """Run `call` with the process's stderr (fd 2, which Ray's C++ core writes to) held back,
    and shown only if the call fails: ray.init announces the log level it read."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            call()
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
