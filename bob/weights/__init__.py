"""Prefetching the weights a run needs into the local caches, for machines without internet.

``python -m bob.weights fit -c configs/t2i.yaml -c configs/datasets/aircraft.yaml`` takes the run's own arguments,
resolves its config as the CLI does and fetches only the files its models load; ``--list``
shows them without touching the network. See docs/weights.md.
"""

from bob.weights.fetching import fetch, refuse_withdrawn
from bob.weights.needs import weights_for_run, weights_in_config
from bob.weights.run_config import resolve_run_config
from bob.weights.weight import Weight

__all__ = [
    "Weight",
    "fetch",
    "refuse_withdrawn",
    "resolve_run_config",
    "weights_for_run",
    "weights_in_config",
]
