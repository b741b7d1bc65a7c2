"""Global settings (``sclibra.settings``), in the spirit of ``scvi.settings``."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time

logger = logging.getLogger("sclibra")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("sclibra: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class Settings:
    """Package-wide defaults.

    Attributes
    ----------
    seed
        Default random seed used by models whose ``seed`` is ``None``. ``None`` means
        non-deterministic.
    device
        Default torch device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``,
        ``"cuda"``, ``"cuda:1"``, ...
    progress
        Show tqdm progress bars for long work.
    num_threads
        Torch intra-op threads used for training. ``None`` (default, or the environment variable
        ``SCLIBRA_NUM_THREADS``) decides per training run with :func:`auto_num_threads`: the
        cores this process may use (CPU affinity, cgroup CPU quota, and the caller's own
        ``torch.set_num_threads`` as an upper bound), less those other processes keep busy,
        and 1 for models too small to gain from threads. The caller's torch thread count is
        restored after training.
    verbosity
        Logging level of the ``sclibra`` logger (``"info"``, ``"warning"``, ...).
    """

    def __init__(self) -> None:
        self.seed: int | None = 0
        self.device = os.environ.get("SCLIBRA_DEVICE", "auto")
        self.progress: bool = True
        self.num_threads: int | None = _env_threads()

    @property
    def seed(self) -> int | None:
        return self._seed

    @seed.setter
    def seed(self, value) -> None:
        from ._errors import check_int

        self._seed = check_int("seed", value, 0, none_ok=True)

    @property
    def verbosity(self) -> str:
        return logging.getLevelName(logger.level).lower()

    @verbosity.setter
    def verbosity(self, level) -> None:
        from ._errors import SclibraError

        try:
            logger.setLevel(level.upper() if isinstance(level, str) else level)
        except (TypeError, ValueError):
            raise SclibraError(
                f"verbosity must be a logging level ('debug', 'info', 'warning', 'error', "
                f"'critical' or a number), got {level!r}"
            ) from None

    def __repr__(self) -> str:
        return (
            f"sclibra.settings(seed={self.seed!r}, device={self.device!r}, "
            f"progress={self.progress!r}, num_threads={self.num_threads!r}, "
            f"verbosity={self.verbosity!r})"
        )


def _env_threads() -> int | None:
    value = os.environ.get("SCLIBRA_NUM_THREADS", "").strip()
    if value.lower() in ("", "auto", "0"):
        return None
    try:
        n = int(value)
    except ValueError:
        logger.warning("SCLIBRA_NUM_THREADS=%r is not an integer; deciding automatically", value)
        return None
    return n if n > 0 else None


settings = Settings()


# ----------------------------------------------------------------------------------------------
# threads
# ----------------------------------------------------------------------------------------------
#: estimated floating-point operations per training step that keep one more thread busy enough
#: to pay for the synchronisation it adds (smaller models train fastest on one thread)
FLOPS_PER_THREAD = 5e7


def cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by this process's cgroup quota (``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    try:
        with open(os.path.join(root, "cpu.max")) as fh:  # cgroup v2
            quota, period = fh.read().split()[:2]
        if quota != "max" and float(period) > 0:
            return float(quota) / float(period)
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as fh:
            quota = float(fh.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as fh:
            period = float(fh.read())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """CPUs this process may run on (affinity mask; all CPUs where that is unsupported)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def own_running_threads(task_dir: str = "/proc/self/task") -> int:
    """Threads of this process that are runnable now (state ``R``), the calling one included;
    1 where unknown.

    Thread pools of this process (torch's and BLAS's OpenMP workers spin for a while after a
    parallel region, the minibatch worker) are runnable too, and must not be mistaken for
    other jobs.
    """
    try:
        n = 0
        for tid in os.listdir(task_dir):
            try:
                with open(os.path.join(task_dir, tid, "stat")) as fh:
                    # "pid (comm) S ...": the state follows the last ")" (comm may hold spaces)
                    if fh.read().rsplit(")", 1)[1].split()[0] == "R":
                        n += 1
            except (OSError, IndexError):
                continue
        return max(1, n)
    except OSError:
        return 1


def busy_cores(
    loadavg: str = "/proc/loadavg", task_dir: str = "/proc/self/task", samples: int = 3
) -> float:
    """CPUs kept busy by other processes: the smaller of the 1-minute load average and the
    number of runnable tasks that are not threads of this process, 0 where unknown.

    The runnable count is the smallest of ``samples`` readings 5 ms apart, so a task that is
    runnable for an instant (a daemon waking up) is not taken for a busy core.
    """
    try:
        running = math.inf
        for i in range(max(1, samples)):
            if i:
                time.sleep(0.005)
            with open(loadavg) as fh:
                fields = fh.read().split()
            load1 = float(fields[0])
            now = int(fields[3].split("/")[0]) - own_running_threads(task_dir)
            running = min(running, now)
        return max(0.0, min(load1, float(running)))
    except (OSError, ValueError, IndexError):
        return 0.0


def cores_within_quota(cores: int, quota: float | None) -> int:
    """``cores`` capped by a cgroup CPU ``quota`` (``None``: no quota; a fraction rounds up)."""
    n = max(1, int(cores))
    if quota is not None and quota > 0:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return n


def choose_num_threads(
    cores: int, quota: float | None, flops_per_step: float, busy: float = 0.0
) -> int:
    """The thread count for training: a pure function of the machine and the problem size.

    Parameters
    ----------
    cores
        CPUs the process may use (affinity mask, capped by the caller's torch thread count).
    quota
        CPUs granted by the cgroup quota (``None``: no quota). A fractional quota rounds up.
    flops_per_step
        Estimated floating-point operations of one training step; one thread per
        :data:`FLOPS_PER_THREAD`, so a tiny model gets 1 thread.
    busy
        CPUs kept busy by other processes. Threads beyond the idle CPUs are descheduled and
        every OpenMP barrier waits for them (measured: 2 threads 1.6-8x slower than 1 on a busy
        2-core machine), so they are not used.

    Returns
    -------
    int
        At least 1.
    """
    n = cores_within_quota(cores, quota)
    idle = int(n - max(0.0, float(busy)) + 0.5)
    by_size = int(max(0.0, float(flops_per_step)) // FLOPS_PER_THREAD)
    return max(1, min(n, idle, by_size))


def auto_num_threads(flops_per_step: float) -> int:
    """:func:`choose_num_threads` for this process now (see ``settings.num_threads``)."""
    import torch

    cores = min(usable_cores(), max(1, torch.get_num_threads()))
    return choose_num_threads(cores, cpu_quota(), flops_per_step, busy_cores())


def training_threads(flops_per_step: float) -> int:
    """``settings.num_threads`` when set, else :func:`auto_num_threads`."""
    if settings.num_threads:
        return max(1, int(settings.num_threads))
    return auto_num_threads(flops_per_step)


def resolve_device(device=None):
    """Turn ``"auto"``/``None``/a name into a :class:`torch.device`."""
    import torch

    from ._errors import SclibraError

    if device is None:
        device = settings.device
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise SclibraError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SclibraError(f"device {device!r} was requested but CUDA is not available here")
    return dev


@contextlib.contextmanager
def keep_torch_threads():
    """Within the block, torch's intra-op thread count is protected: restored after if changed.

    scanpy's neighbour graph and UMAP run numba, whose OpenMP layer sets OpenMP's thread count
    of the calling thread to all cores; torch reads that count, so a user's
    ``torch.set_num_threads(1)`` (and the upper bound it puts on the automatic thread choice,
    ``settings.num_threads``) would be lost after a clustering or a UMAP. Nothing is done when
    torch is not loaded.
    """
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)


#: the texts :func:`warn_once` has said in the current scope (an aLIBRA search); ``None``
#: outside one
_ONCE: set[str] | None = None


def begin_warnings_once() -> set[str] | None:
    """From now on in this process, :func:`warn_once` says each text once (a worker process
    that runs one search's trials stays in this scope); returns the scope before.
    """
    global _ONCE
    before = _ONCE
    if _ONCE is None:
        _ONCE = set()
    return before


@contextlib.contextmanager
def warnings_once():
    """Within this block (or the decorated call: an aLIBRA search, whose trials fit the same
    split again and again) :func:`warn_once` says each text once; outside, every time.
    """
    global _ONCE
    before = begin_warnings_once()
    try:
        yield
    finally:
        _ONCE = before


def warn_once(msg: str, *args) -> None:
    """Log a warning; within :func:`warnings_once`, only the first time its text comes up."""
    text = msg % args if args else msg
    if _ONCE is not None:
        if text in _ONCE:
            return
        _ONCE.add(text)
    logger.warning("%s", text)
