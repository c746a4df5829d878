"""One Ray cluster of several nodes on this machine (``ray.cluster_utils.Cluster``), shared by the tests of a run.

Ray is in the ``test`` extra: without it these tests skip on a developer's machine, but fail in CI (``CI=true``),
where they must run. Each node has one CPU (one actor); node failures are detected within about a second.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import pytest

NODE = {"num_cpus": 1}
HEAD = {**NODE, "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 300,
                                   "health_check_timeout_ms": 300, "health_check_failure_threshold": 3}}
_cluster: Any = None


def import_ray() -> Any:
    """``ray``, or a skip (a failure in CI)."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("ray is not installed; CI must run the Ray tests (pip install -e '.[test]')")
        pytest.skip("ray is not installed (pip install -e '.[test]')")
    return ray


def cluster() -> Any:
    """The shared cluster (a head and one more node), started on first use, with this process connected to it."""
    global _cluster
    ray = import_ray()
    if _cluster is None:
        from ray.cluster_utils import Cluster

        started = Cluster(initialize_head=True, head_node_args=HEAD)
        started.add_node(**NODE)
        started.wait_for_nodes()
        ray.init(address=started.address, include_dashboard=False, configure_logging=False, log_to_driver=False)
        atexit.register(_stop)
        _cluster = started
    return _cluster


def add_node() -> Any:
    node = cluster().add_node(**NODE)
    cluster().wait_for_nodes()
    return node


def cpus_free_within(total: float, seconds: float) -> bool:
    """True once every CPU of the cluster is free again (no actor left holding one) within ``seconds``."""
    import time

    ray = import_ray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= total:
            return True
        time.sleep(0.1)
    return False


def _stop() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if _cluster is not None:
        _cluster.shutdown()
