"""Open a `ClusterSession` (`cluster_session`): a `distributed.LocalCluster` for ``local:N``,
a client of a running scheduler for ``tcp://…``; `parse_address` checks an address first."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fmlkit.cluster.session import ClusterSession
from fmlkit.errors import ClusterError, OptionError

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

SCHEMES = ("tcp", "tls")
CONNECT_TIMEOUT_S = 10.0  # a scheduler that does not answer within this is not there
WORKERS_TIMEOUT_S = 30.0  # a scheduler with no worker after this has none coming
ALLOWED_FAILURES = 3  # worker deaths a task survives on a local cluster (dask's default)
_PROBE_RETRY_S = 0.5  # between connection attempts to a scheduler that refuses them
_INSTALL = "--cluster needs Dask: pip install 'fmlkit[cluster]'"


def parse_address(address: str) -> str:
    """The cluster address ``address`` checked and normalised: ``local:N`` (N ≥ 1 worker
    processes on this machine) or a scheduler's ``tcp://host:port`` / ``tls://host:port``
    (``host:port`` alone means ``tcp://host:port``).

    Raises:
        OptionError: any other form (a usage error naming ``cluster``).
    """
    text = address.strip()
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if count.isdigit() and int(count) >= 1:
            return f"local:{int(count)}"
        raise OptionError(
            "{cluster} must give a number of workers ≥ 1 after 'local:' (e.g. local:4)",
            cluster=address,
        )
    if "://" not in text:
        text = f"tcp://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        port = None
        parts = None
    if (
        parts is None
        or parts.scheme not in SCHEMES
        or not parts.hostname
        or not port
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise OptionError(
            "{cluster} is not a cluster address: give local:N (N worker processes on this "
            "machine) or a Dask scheduler's tcp://host:port (e.g. tcp://node1:8786)",
            cluster=address,
        )
    return f"{parts.scheme}://{parts.netloc}"


@contextlib.contextmanager
def cluster_session(
    address: str,
    *,
    what: str,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    workers_timeout: float = WORKERS_TIMEOUT_S,
) -> Iterator[ClusterSession]:
    """Connect to the cluster at ``address`` (see `parse_address`) for ``what`` (a stage's
    name, used in messages).

    ``local:N`` starts a `distributed.LocalCluster` of N worker processes with one thread
    each, no dashboard and no memory limit, closed (workers ended) when the block ends.
    ``tcp://…`` connects to a running scheduler and only disconnects at the end.

    Raises:
        OptionError: a malformed address.
        ClusterError: Dask not installed; a scheduler that does not answer within
            ``connect_timeout`` seconds; no worker connected within ``workers_timeout``;
            a worker on which fmlkit cannot be imported.
    """
    address = parse_address(address)
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as e:
        raise ClusterError(f"{_INSTALL} ({e})") from e
    with contextlib.ExitStack() as stack:
        if address.startswith("local:"):
            client = stack.enter_context(_local_client(int(address.removeprefix("local:"))))
        else:
            # entered as a context manager, not closed by a callback: after a worker died,
            # the next map took 4.0 s this way against 0.45 s (tests/data/prepare's)
            client = stack.enter_context(_remote_client(address, connect_timeout))
            try:
                client.wait_for_workers(1, timeout=workers_timeout)
            except TimeoutError as e:
                raise ClusterError(
                    f"{what}: no Dask worker connected to {address} within "
                    f"{workers_timeout:g} s: start some with `dask worker {address}`"
                ) from e
        session = ClusterSession(client, address=address, what=what)
        _check_fmlkit(session)
        threads = client.nthreads()
        log.info("%s: %d worker(s) on %s", what, len(threads), address)
        if any(n > 1 for n in threads.values()):
            log.warning(
                "%s: workers of %s run %s threads each: tasks in one process share its "
                "interpreter (the GIL) and memory; for CPU-bound stages start them with "
                "`dask worker %s --nworkers N --nthreads 1`",
                what, address, "/".join(map(str, sorted(set(threads.values())))), address,
            )  # fmt: skip
        yield session


@contextlib.contextmanager
def _local_client(workers: int) -> Iterator[Client]:
    """A client of a new LocalCluster; Dask's own logger (whose records would reach the
    command line's handler: ``silence_logs`` leaves its level at INFO) at `_dask_log_level`
    while it runs."""
    dask_logger = logging.getLogger("distributed")
    level = dask_logger.level
    dask_logger.setLevel(_dask_log_level())
    try:
        with _local_cluster_client(workers) as client:
            yield client
    finally:
        dask_logger.setLevel(level)


@contextlib.contextmanager
def _local_cluster_client(workers: int) -> Iterator[Client]:
    import dask
    from distributed import Client, LocalCluster

    settings = {
        # the scheduler reads these when it starts: a task survives ≥ 3 worker deaths, and
        # a worker holds one task at a time, so that a death counts against that task only
        "distributed.scheduler.allowed-failures": max(
            ALLOWED_FAILURES, int(dask.config.get("distributed.scheduler.allowed-failures"))
        ),
        "distributed.scheduler.worker-saturation": 1.0,
    }
    try:
        with dask.config.set(settings):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,  # no dashboard; and its HTTP server on a free port
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                memory_limit=0,  # none: like the stage without --cluster
                silence_logs=_dask_log_level(),
            )
    except Exception as e:  # a worker process that cannot start: Dask says little more
        raise ClusterError(
            f"could not start a local Dask cluster of {workers} worker process(es): {e}"
            + _start_hint(e)
        ) from e
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _start_hint(error: BaseException) -> str:
    """Why worker processes could not start, where the chain of ``error`` tells."""
    causes: list[str] = []
    cause: BaseException | None = error
    while cause is not None and len(causes) < 20:
        causes.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    if any("bootstrapping phase" in text for text in causes):
        return (
            " (worker processes import the main script: a script that uses fmlkit.cluster "
            "must start its work under `if __name__ == '__main__':`)"
        )
    return ""


def _dask_log_level() -> int:
    """The level of Dask's own logs on a local cluster: none by default (a task's error
    reaches the caller, which reports it once); its warnings and errors with fmlkit's INFO
    logs (the command line's ``-v``)."""
    verbose = logging.getLogger("fmlkit").getEffectiveLevel() <= logging.INFO
    return logging.WARNING if verbose else logging.CRITICAL


def _remote_client(address: str, timeout: float) -> Client:
    """A client of the scheduler at ``address``, after `_probe` found one there: Dask's own
    connect waits forever on a server that does not speak first (a web server, such as
    the scheduler's dashboard on port 8787)."""
    from distributed import Client

    problem = _probe(address, timeout)
    if problem is not None:
        raise ClusterError(
            f"no Dask scheduler answered at {address}: {problem}: is `dask scheduler` running "
            "there, and is the address its scheduler port (8786 by default; 8787 is its "
            "dashboard)?"
        )
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise ClusterError(
            f"no Dask scheduler answered at {address} within {timeout:g} s: is `dask "
            f"scheduler` running there, and is the address right? ({e})"
        ) from e
    except Exception as e:  # Dask's errors for TLS settings or a peer speaking otherwise
        hint = (
            ": a tls:// address needs Dask's TLS settings (distributed.comm.tls.* in the "
            "Dask configuration)"
            if address.startswith("tls://")
            else ""
        )
        raise ClusterError(
            f"could not connect to the Dask scheduler at {address}{hint} ({e})"
        ) from e


def _probe(address: str, timeout: float) -> str | None:
    """Why no Dask scheduler answers at ``address`` within ``timeout`` seconds, or None
    when one seems to: a TCP connection (retried while refused: a scheduler may be starting)
    and, for ``tcp://``, the first 8 bytes of the handshake a scheduler sends at once (the
    length of a small message)."""
    parts = urlsplit(address)
    host, port = parts.hostname, parts.port
    assert host is not None and port is not None  # parse_address checked it
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=max(0.1, timeout))
            break
        except ConnectionRefusedError:
            if time.monotonic() + _PROBE_RETRY_S > deadline:
                return f"connection refused (tried for {timeout:g} s)"
            time.sleep(_PROBE_RETRY_S)
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except OSError as e:  # unknown host, no route
            return e.strerror or str(e)
    with sock:
        if parts.scheme != "tcp":  # TLS: the client speaks first
            return None
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        head = b""
        try:
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    return "the server there closed the connection at once"
                head += chunk
        except TimeoutError:
            return "a server there accepts connections but says nothing (not a Dask scheduler)"
        except OSError as e:
            return e.strerror or str(e)
    if any(0 < struct.unpack(order + "Q", head)[0] < 2**24 for order in "<>"):
        return None
    return f"a server there that is not a Dask scheduler answered {head!r}"


def _check_fmlkit(session: ClusterSession) -> None:
    """Refuse a cluster with a worker that cannot import fmlkit (tasks are fmlkit's functions,
    sent by name)."""
    import importlib.util

    answers = session.client.run(importlib.util.find_spec, "fmlkit", on_error="return")
    missing = sorted(worker for worker, spec in answers.items() if spec is None)
    if missing:
        raise ClusterError(
            f"{session.what}: fmlkit cannot be imported on worker(s) {', '.join(missing)} of "
            f"{session.address}: install the same fmlkit in every worker's environment"
        )
