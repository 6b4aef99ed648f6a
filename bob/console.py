"""Command-line entry points report a bad input as one line, ``error: <message>``; ``BOB_DEBUG=1`` shows the traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bob.data.errors import BobInputError

#: Set to 1 to see the full traceback of an input error instead of its one-line message.
DEBUG_VARIABLE = "BOB_DEBUG"
#: The exit status of a run stopped by an input error (argparse and jsonargparse use 2 as well).
INPUT_ERROR_STATUS = 2
#: How PyTorch's DataLoader re-raises an error from a worker: its message then holds the worker's traceback.
_WORKER_PREFIX = "Caught "


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no", "off")


def error_message(error: BaseException) -> str:
    """The message a person needs from ``error``, on one line.

    An error raised in a DataLoader worker comes back as a copy whose message is the worker's
    whole traceback; its last line is ``<module>.<ErrorClass>: <message>``.
    """
    text = str(error).strip()
    if text.startswith(_WORKER_PREFIX) and "\nOriginal Traceback" in text:
        last = text.splitlines()[-1]
        name = f"{type(error).__module__}.{type(error).__name__}: "
        text = last.removeprefix(name) if last.startswith(name) else last
    return " ".join(text.split())


def _process_rank() -> int:
    """The global rank of this process under DDP (0 otherwise), as Lightning last set it."""
    rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
    rank = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", None)
    if rank is None:
        rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))
    return int(rank)


@contextmanager
def input_errors_as_one_line() -> Iterator[None]:
    """Turn a `BobInputError` into ``error: <message>`` on stderr and exit status 2.

    Under DDP each process that raises prints its own line, ranks other than 0 naming their
    rank (an error only one rank meets must not go unreported); checks that run once per node,
    in ``prepare_data``, print once. With ``BOB_DEBUG=1`` the error propagates with its
    traceback. Other exceptions (bugs, out-of-memory) keep their traceback.
    """
    try:
        yield
    except BobInputError as error:
        if debug_enabled():
            raise
        rank = _process_rank()
        where = f" (rank {rank})" if rank else ""
        print(f"error{where}: {error_message(error)}", file=sys.stderr, flush=True)
        raise SystemExit(INPUT_ERROR_STATUS) from None
