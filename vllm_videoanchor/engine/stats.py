"""What the solver did in this process: plain counters (benchmarks read them) and Prometheus
metrics (vLLM's /metrics shows them; under `vllm-videoanchor serve` the engine processes
write them to PROMETHEUS_MULTIPROC_DIR, so the API server's /metrics sums every process)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

from prometheus_client import Counter, Histogram

SOLVER_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

ANCHORED_ITEMS = Counter("videoanchor_anchored_items", "Visual items (videos, images) anchored")
SOLVER_SECONDS = Histogram("videoanchor_solver_seconds", "Anchor solver time per item (SSC + clustering)",
                           buckets=SOLVER_SECONDS_BUCKETS)
SOLVER_ITERATIONS = Counter("videoanchor_solver_iterations", "ADMM iterations run")
NOT_CONVERGED = Counter("videoanchor_solver_not_converged",
                        "Solves that stopped at max_iter before reaching eps")
FAILED = Counter("videoanchor_solver_failed",
                 "Items served plain because the solve failed or anchoring is unavailable on this engine")


@dataclass
class SolverStats:
    items: int = 0
    seconds: float = 0.0
    iterations: int = 0
    not_converged: int = 0
    failed: int = 0


_lock = threading.Lock()
_stats = SolverStats()


def record_solve(seconds: float, iterations: int, converged: bool) -> None:
    """Counts one solve."""
    with _lock:
        _stats.items += 1
        _stats.seconds += seconds
        _stats.iterations += iterations
        _stats.not_converged += not converged
    ANCHORED_ITEMS.inc()
    SOLVER_SECONDS.observe(seconds)
    SOLVER_ITERATIONS.inc(iterations)
    if not converged:
        NOT_CONVERGED.inc()


def record_failure() -> None:
    with _lock:
        _stats.failed += 1
    FAILED.inc()


def snapshot() -> dict:
    """A copy of this process's counters."""
    with _lock:
        return asdict(_stats)
