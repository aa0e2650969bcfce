"""A train stage on several processes, or several nodes: torchrun, launched by `fmlkit run`.

A train stage whose params give ``nproc_per_node`` (processes on this node) and, for several
nodes, ``nnodes`` and ``rdzv_endpoint`` (``HOST:PORT``: this node's address and a free port,
where the other nodes meet it) runs the same ``fmlkit train`` command line as a one-process
stage, under ``python -m torch.distributed.run`` in a child process::

    python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        -m fmlkit train --config CONFIG KEY=VALUE … output_dir=STAGING          one node
    python -m torch.distributed.run --nnodes 4 --node-rank 0 \\
        --rdzv-endpoint HOST:PORT --nproc-per-node 8 -m fmlkit train …        several nodes

The node that runs `fmlkit run` is node rank 0, so global rank 0, the one process that writes
metrics and checkpoints, writes them into the stage's staging folder here. The runner cannot
start the other nodes: it logs the line each of them must run (`other_nodes_message`), with
the same paths, which every node must see (a shared filesystem), and waits for them.

The ranks' output is relayed as it comes (`Relay`): their ``Error:`` lines become the stage's
error (the message a one-process stage would give), torchrun's own log lines go to this
module's logger (shown with ``-v``), and its closing traceback is not shown: a failed rank
fails the stage with one error naming the rank and its exit code or signal.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from fmlkit.errors import PipelineError
from fmlkit.pipeline.lock import shown

logger = logging.getLogger(__name__)

LAUNCH_KEYS = ("nproc_per_node", "nnodes", "rdzv_endpoint")
MAX_NPROC_PER_NODE = 256  # bounds no real run nears, so that a typo cannot fork thousands
MAX_NNODES = 4096
STOP_SECONDS = 60  # how long torchrun may take to stop its ranks after SIGTERM
NODE_RANK_VAR = "NODE_RANK"  # the shell variable of the other nodes' line (3 nodes or more)
_AGENT_LOG = re.compile(r"[IWEFD]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ ")  # torchrun's log lines
_LAUNCHER_FRAME = "torch/distributed/run.py"
_RANK_PREFIX = re.compile(r"\[rank\d+\]: ")  # torch's prefix of a rank's traceback lines


@dataclass(frozen=True)
class Launch:
    """Where a train stage's processes run.

    Attributes:
        nproc_per_node: processes on each node.
        nnodes: nodes; this one is node rank 0.
        rdzv_endpoint: ``HOST:PORT`` of this node, where the others meet it (several nodes).
    """

    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None

    @property
    def processes(self) -> int:
        return self.nproc_per_node * self.nnodes

    def torchrun(self, args: Sequence[str], *, node_rank: int | str = 0) -> list[str]:
        """The command that runs ``fmlkit ARGS`` under torchrun on node ``node_rank``."""
        if self.nnodes == 1:
            where = ["--standalone"]
        else:
            where = ["--nnodes", str(self.nnodes), "--node-rank", str(node_rank)]
            where += ["--rdzv-endpoint", str(self.rdzv_endpoint)]
        return [
            sys.executable, "-m", "torch.distributed.run", *where,
            "--nproc-per-node", str(self.nproc_per_node), "-m", "fmlkit", *args,
        ]  # fmt: skip


def launch_of(params: Mapping[str, Any]) -> Launch | None:
    """The launch that checked params ask for; None when they name none of `LAUNCH_KEYS`
    (the stage runs in the runner's own process)."""
    if not any(key in params for key in LAUNCH_KEYS):
        return None
    return Launch(
        int(params.get("nproc_per_node", 1)),
        int(params.get("nnodes", 1)),
        params.get("rdzv_endpoint"),
    )


def launch_problems(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(YAML path, message) of each launch param that is wrong, or does not fit the others."""
    good = {}
    for key, top in (("nproc_per_node", MAX_NPROC_PER_NODE), ("nnodes", MAX_NNODES)):
        value = params.get(key, 1)
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= top:
            good[key] = value
        else:
            yield f"params.{key}", f"expected a whole number from 1 to {top}, found {shown(value)}"
    endpoint = params.get("rdzv_endpoint")
    nnodes = good.get("nnodes")
    if nnodes is not None and nnodes > 1 and endpoint is None:
        yield (
            "params",
            f"missing rdzv_endpoint: nnodes {nnodes} needs the HOST:PORT where the nodes meet "
            "(this node's address and a free port, e.g. rdzv_endpoint: node01:29500)",
        )
    elif nnodes == 1 and endpoint is not None:
        yield (
            "params.rdzv_endpoint",
            "only for several nodes (nnodes > 1): the processes of one node meet on a free "
            "local port by themselves; remove it, or set nnodes",
        )
    elif endpoint is not None:
        problem = _endpoint_problem(endpoint)
        if problem:
            yield "params.rdzv_endpoint", problem
    device, nproc = params.get("device"), good.get("nproc_per_node", 1)
    if nproc > 1 and device not in (None, "cpu"):
        yield (
            "params.device",
            f"{device} would put all {nproc} processes of a node on one device: leave device "
            "out (each process then takes its local rank's GPU, else the CPU) or set cpu",
        )


def _endpoint_problem(endpoint: Any) -> str:
    host, _, port = str(endpoint).rpartition(":")
    if (
        isinstance(endpoint, str)
        and host
        and not any(c.isspace() for c in endpoint)
        and port.isdigit()
        and 1 <= int(port) <= 65535
    ):
        return ""
    return (
        f"expected HOST:PORT (this node's address and a free port, e.g. node01:29500), "
        f"found {shown(endpoint)}"
    )


def other_nodes_message(launch: Launch, args: Sequence[str], *, stage: str) -> str:
    """What the other nodes of a several-node launch must run, as one log message: the
    command line (from this node's folder, with its paths), for node rank 1 (2 nodes) or
    ``$NODE_RANK`` = 1 … nnodes − 1."""
    rank: int | str = 1 if launch.nnodes == 2 else f"${NODE_RANK_VAR}"
    words = launch.torchrun(args, node_rank=rank)
    line = " ".join(w if w == str(rank) else shlex.quote(w) for w in words)
    cd = f"cd {shlex.quote(str(Path.cwd()))} && "
    if launch.nnodes == 2:
        who = "the other node runs"
    else:
        last = launch.nnodes - 1
        who = f"each other node runs, with {NODE_RANK_VAR}=1 … {last} (one number per node)"
    return (
        f"stage {stage}: this node is node 0 of {launch.nnodes} and waits at "
        f"{launch.rdzv_endpoint} until {who} (the same paths: a shared filesystem):\n"
        f"  {cd}{line}"
    )


class Relay:
    """Relays torchrun's output as it comes, and keeps what says why a launch failed:

    - the ranks' ``Error: …`` lines (with their indented continuation lines): kept, not shown
      (the stage's error repeats the first, as a one-process stage would);
    - a rank's traceback (``[rank1]: Traceback …``, as torch prefixes them; most often a
      rank that lost its peer when another failed): its last line is shown, the whole of it
      goes to this module's logger at INFO (``-v``);
    - a traceback through torchrun's launcher (``ChildFailedError`` and its table of failed
      ranks, a rendezvous that timed out): kept for the error, not shown;
    - torchrun's own log lines (``W1207 05:06:03.198000 10647 torch/…``): to the logger at
      INFO;
    - anything else (the ranks' reports, their warnings): shown.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.launcher: list[str] = []
        self._held: dict[str, list[str]] = {}  # tracebacks by rank prefix, until they end
        self._in_error = False
        self._lock = threading.Lock()

    def stdout(self, stream: Iterable[str]) -> None:
        for line in stream:
            with self._lock:
                click.echo(line.rstrip("\n"))

    def stderr(self, stream: Iterable[str]) -> None:
        for line in stream:
            with self._lock:
                self._take(line.rstrip("\n"))
        with self._lock:  # a traceback cut short: shown as it is
            for held in self._held.values():
                click.echo("\n".join(held), err=True)
            self._held.clear()

    def _take(self, line: str) -> None:
        if self.launcher:  # after the launcher's traceback: its table of failed ranks
            self.launcher.append(line)
            return
        prefix = _RANK_PREFIX.match(line)
        key = prefix.group(0) if prefix else ""
        text = line[len(key) :]
        if key in self._held:
            self._held[key].append(line)
            if text[:1].strip() and not text.startswith("Traceback"):  # the exception line
                self._traceback(key, self._held.pop(key))
            return
        if self._in_error and line[:1].isspace():
            self.errors[-1] += "\n" + line
            return
        self._in_error = line.startswith("Error: ")
        if self._in_error:
            self.errors.append(line[len("Error: ") :])
        elif text.startswith("Traceback (most recent call last)"):
            self._held[key] = [line]
        elif _AGENT_LOG.match(line):
            logger.info("torchrun: %s", line)
        else:
            click.echo(line, err=True)

    def _traceback(self, prefix: str, lines: list[str]) -> None:
        if any(_LAUNCHER_FRAME in line for line in lines):
            self.launcher = lines
            return
        logger.info("\n".join(lines))
        click.echo(f"{lines[-1]} (-v shows its traceback)", err=True)

    def failure(self, code: int) -> str:
        """Why a launch that ended with exit ``code`` failed, in one message."""
        distinct = list(dict.fromkeys(self.errors))
        if distinct:
            return "\n  ".join(distinct)
        text = "\n".join(self.launcher)
        cause = text.partition("Root Cause")[2]
        rank = re.search(r"rank\s*:\s*(\d+)", cause)
        exit_code = re.search(r"exitcode\s*:\s*(-?\d+)", cause)
        if rank and exit_code:
            number = int(exit_code.group(1))
            how = f"exit code {number}"
            if number < 0 and -number in signal.Signals._value2member_map_:
                how = f"signal {signal.Signals(-number).name}"
            return f"rank {rank.group(1)} ended with {how} (its messages are above)"
        if self.launcher:  # e.g. a rendezvous that timed out: its exception line
            last = next((h for h in reversed(self.launcher) if h[:1].strip()), "")
            name, colon, message = last.partition(": ")
            return f"torchrun failed: {name.rpartition('.')[2]}{colon}{message}"
        return f"torchrun ended with exit code {code} (its messages are above)"


def run_torchrun(launch: Launch, args: Sequence[str], *, stage: str) -> None:
    """Run ``fmlkit ARGS`` under torchrun on this node (node rank 0) and wait for it; with
    several nodes, first log what the others must run. Ctrl-C or SIGTERM (as
    KeyboardInterrupt) stops torchrun, which stops its ranks.

    Raises:
        PipelineError: a rank failed (non-zero exit or a signal), or torchrun did.
    """
    if launch.nnodes > 1:
        logger.warning(other_nodes_message(launch, args, stage=stage))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if launch.nproc_per_node > 1:
        env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, without its banner
    relay = Relay()
    process = subprocess.Popen(
        launch.torchrun(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        start_new_session=True,  # a terminal's Ctrl-C reaches torchrun through this process
    )
    assert process.stdout is not None and process.stderr is not None
    readers = [
        threading.Thread(target=relay.stdout, args=(process.stdout,), daemon=True),
        threading.Thread(target=relay.stderr, args=(process.stderr,), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        code = process.wait()
    except BaseException:
        _stop(process)
        for reader in readers:  # a rank that outlived a killed torchrun holds its pipes
            reader.join(STOP_SECONDS / 10)
        raise
    for reader in readers:
        reader.join()
    if code != 0:
        raise PipelineError(relay.failure(code))


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to torchrun (it stops its ranks), SIGKILL if it has not ended in time."""
    process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
