"""Sample chunks of one render farmed to Ray workers, merged into one film.

``tracer render ... --ray [ADDRESS]`` splits the samples per pixel into chunks (the sample
index ranges ``[s, s + chunk)``), renders each chunk as a Ray task on a worker's CPU into a
film of its own, and merges the films' Welford states in sample order (Chan et al.'s update,
:meth:`tracer.film.Film.merge`), whatever order the tasks finish in. Random numbers are keyed
by (pixel, sample, dimension), so the image equals the single-process render of the same seed
up to the rounding of the merge (about 1e-16 relative). A task whose worker dies is retried
by Ray (``max_retries``); the retried chunk renders the same samples again.

Without an address a local Ray is started on this machine (and stopped afterwards); with one
(``auto``, or ``host:port`` of a running cluster's head) the driver joins that cluster. The
scene's arrays, the map's pixels and the sampler (with its tables, or a flow's weights) travel
to the workers through Ray's object store, so workers need the project installed (the same
version: ``pip install flowtracer[ray]``) but no access to the scene, map or model files.

Ray is an optional extra (``pip install .[ray]``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from tracer.errors import TracerError
from tracer.film import Film

#: environment variable naming a marker file: the first task to see no marker creates it and
#: kills its own worker (a test of Ray's retry; never set in normal use)
KILL_ONCE_ENV = "FLOWTRACER_TEST_KILL_ONCE"
#: retries of a chunk whose worker died
MAX_RETRIES = 3
#: chunk tasks submitted (or finished but not yet merged) per cluster CPU at most
IN_FLIGHT_PER_CPU = 2


def default_chunk(address: str, remaining: int) -> int:
    """Samples per pixel of a Ray chunk: about four chunks per cluster CPU."""
    ray = import_ray()
    connect(address)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, -(-remaining // (4 * cpus)))


def import_ray() -> Any:
    """The ``ray`` module, or a clear error when the optional extra is not installed."""
    try:
        import ray
    except ImportError:
        raise TracerError("--ray needs Ray: pip install 'flowtracer[ray]' (or pip install ray)") from None
    return ray


def connect(address: str) -> bool:
    """Join the Ray cluster at ``address`` (``local``: start one here); True if we started it."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in (KILL_ONCE_ENV,) if k in os.environ}
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                          "runtime_env": {"env_vars": env} if env else None}
    try:
        if address == "local":
            ray.init(**kw)
            return True
        ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise TracerError(f"--ray {address}: cannot connect to a Ray cluster ({e})") from None
    return False


def _maybe_die() -> None:
    marker = os.environ.get(KILL_ONCE_ENV)
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # only the first task
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def render_chunk(data: Any, env: Any, strategy: Any, width: int, height: int, sample0: int, n: int,
                 max_depth: int, seed: int) -> tuple[dict, dict[str, float], float]:
    """Samples ``sample0 .. sample0 + n - 1`` of every pixel into a fresh film (on a worker)."""
    from tracer.integrator import StageTimes, render

    film, times = Film(width, height), StageTimes()
    res = render(data, env, strategy, width, height, n, max_depth, seed, spp_start=sample0,
                 film=film, times=times)
    return film.state(), times.as_dict(), res.seconds


def ray_render(
    address: str, data: Any, env: Any, strategy: Any, width: int, height: int, spp: int,
    max_depth: int, seed: int, chunk: int, film: Film, spp_done: int, times: Any,
    on_chunk: Callable[[Film, int, int], Any] | None = None,
) -> None:
    """Render samples ``spp_done .. spp - 1`` on Ray workers into ``film``, in sample order.

    ``on_chunk(film, done, n)`` is told after each chunk is merged (for checkpoints and
    progress); ``times`` (a :class:`tracer.integrator.StageTimes`) gets the workers' stage times.
    """
    ray = import_ray()
    started = connect(address)
    try:
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_one_thread)
        refs = [ray.put(x) for x in (data, env, strategy)]
        # at most IN_FLIGHT_PER_CPU tasks a CPU at once: each returns a whole film, and
        # results that finish early wait in memory until the chunks before them are merged
        limit = max(2, IN_FLIGHT_PER_CPU * int(ray.cluster_resources().get("CPU", 1)))
        todo = [(s, min(chunk, spp - s)) for s in range(spp_done, spp, chunk)][::-1]
        pending: dict[Any, tuple[int, int]] = {}
        done_chunks: dict[int, tuple[int, Any]] = {}
        next_s = spp_done
        while todo or pending:
            while todo and len(pending) + len(done_chunks) < limit:
                s, n = todo.pop()
                pending[task.remote(render_chunk, *refs, width, height, s, n, max_depth, seed)] = (s, n)
            ready, _ = ray.wait(list(pending), num_returns=1)
            s, n = pending.pop(ready[0])
            try:
                done_chunks[s] = (n, ray.get(ready[0]))
            except ray.exceptions.RayError as e:
                raise TracerError(f"--ray: a chunk of samples {s}..{s + n - 1} failed: {e}") from None
            while next_s in done_chunks:  # merge the contiguous prefix, in sample order
                n, (state, t, _) = done_chunks.pop(next_s)
                film.merge(Film.from_state(width, height, state))
                times.light += t["light_sampling"]
                times.trace += t["tracing"]
                times.shade += t["shading"]
                next_s += n
                if on_chunk is not None:
                    on_chunk(film, next_s, n)
    finally:
        for ref in pending:  # a failure or an interrupt: stop what is still queued or running
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def ray_map(address: str, fn: Callable[..., Any], args: list[tuple], on_result: Callable[[int, Any], Any]) -> None:
    """Run ``fn(*a)`` for every ``a`` in ``args`` as Ray tasks (one CPU each, retried when a worker
    dies); ``on_result(i, result)`` is told of each as it finishes, in the order they finish."""
    ray = import_ray()
    started = connect(address)
    try:
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_one_thread)
        pending = {task.remote(fn, *a): i for i, a in enumerate(args)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                raise TracerError(f"--ray: task {i + 1} of {len(args)} failed: {e}") from None
            on_result(i, result)
    finally:
        if started:
            ray.shutdown()


def _one_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with one Numba and one Torch thread (Ray counts a task as one CPU)."""
    import numba
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    _maybe_die()
    return fn(*args)
