"""fmlkit.cluster on a real `distributed.LocalCluster` (2 worker processes, 1 thread each):
results in shard order, a killed worker retried, a bad-input error passed through at once, a
task that kills every worker named, the shared-filesystem check, addresses, a running
scheduler, and quiet progress."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fmlkit.cluster import (
    SHARED_FS,
    ClusterError,
    ClusterSession,
    cluster_session,
    parse_address,
)
from fmlkit.cluster.session import _check_paths
from fmlkit.errors import InputError, OptionError
from fmlkit.progress import set_progress

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def session() -> Iterator[ClusterSession]:
    """One 2-worker local cluster for the module, closed at its end."""
    with cluster_session("local:2", what="test") as s:
        yield s


@pytest.fixture
def cluster(session: ClusterSession) -> Iterator[ClusterSession]:
    """The module's session, with both workers back (a test may have killed some)."""
    session.client.wait_for_workers(2, timeout=60)
    yield session
    session.client.wait_for_workers(2, timeout=60)


# ---- the tasks (module level: the workers import them by name) --------------------------------


def slow_square(x: int) -> int:
    time.sleep(0.02 * ((x * 7) % 5))  # uneven times: tasks finish out of order
    return x * x


def die_once(shard: tuple[int, str]) -> int:
    """Kill this worker process the first time shard 3 runs (a marker file remembers)."""
    i, folder = shard
    marker = Path(folder) / f"died-{i}"
    if i == 3 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return i * 10


def bad_input(shard: tuple[int, str]) -> int:
    """Shard 0 is bad input; the others take a while and leave a mark when they start."""
    i, folder = shard
    with (Path(folder) / f"attempt-{i}").open("a") as f:
        f.write("x")
    if i == 0:
        raise InputError(f"bad file {folder}/0.jpg: not an image")
    time.sleep(0.6)
    return i


def option_error(shard: int) -> int:
    raise OptionError("{k} must be at least 1, not {n}", n=shard)


def die_always(shard: str) -> str:
    if shard == "poison":
        os.kill(os.getpid(), signal.SIGKILL)
    return shard


def pids(_: int) -> int:
    return os.getpid()


# ---- map ------------------------------------------------------------------------------------


def test_map_returns_results_in_shard_order(cluster: ClusterSession) -> None:
    shards = list(range(13))
    assert cluster.workers == 2
    assert cluster.map(slow_square, shards, desc="squares") == [x * x for x in shards]
    assert cluster.map(slow_square, []) == []


def test_map_runs_on_both_workers(cluster: ClusterSession) -> None:
    seen = set(cluster.map(pids_slow, list(range(8))))
    assert len(seen) == 2 and os.getpid() not in seen


def pids_slow(_: int) -> int:
    time.sleep(0.1)
    return os.getpid()


def test_map_worker_killed_mid_task_same_results(cluster: ClusterSession, tmp_path: Path) -> None:
    shards = [(i, str(tmp_path)) for i in range(8)]
    assert cluster.map(die_once, shards, sizes=[1] * 8) == [i * 10 for i in range(8)]
    assert (tmp_path / "died-3").exists()  # a worker did die in shard 3's task


def test_map_bad_input_reaches_the_driver_at_once(cluster: ClusterSession, tmp_path: Path) -> None:
    shards = [(i, str(tmp_path)) for i in range(10)]  # 9 × 0.6 s of work after shard 0
    start = time.monotonic()
    with pytest.raises(InputError) as raised:
        cluster.map(bad_input, shards)
    elapsed = time.monotonic() - start
    assert type(raised.value) is InputError
    assert str(raised.value) == f"bad file {tmp_path}/0.jpg: not an image"
    assert elapsed < 2.0, f"the error took {elapsed:.1f} s: retried, or waited for the rest?"
    assert (tmp_path / "attempt-0").read_text() == "x"  # run once: bad input is not retried
    time.sleep(1.5)  # what was cancelled never starts: at most the tasks already on a worker
    started = sorted(p.name for p in tmp_path.glob("attempt-*"))
    assert len(started) <= 3, started


def test_map_option_error_keeps_its_class_and_options(cluster: ClusterSession) -> None:
    with pytest.raises(OptionError) as raised:
        cluster.map(option_error, [5, 6])
    assert str(raised.value) in ("k must be at least 1, not n=5", "k must be at least 1, not n=6")
    assert raised.value.options == ("k", "n")


def test_map_task_killing_every_worker_is_a_cluster_error(cluster: ClusterSession) -> None:
    with pytest.raises(ClusterError) as raised:
        cluster.map(die_always, ["fine", "poison", "fine too"])
    message = str(raised.value)
    assert "shard 1 ('poison')" in message
    assert "killed 4 workers" in message
    assert "test:" in message


def test_map_rejects_sizes_of_another_length(cluster: ClusterSession) -> None:
    with pytest.raises(ValueError, match="2 sizes for 3 shards"):
        cluster.map(slow_square, [1, 2, 3], sizes=[1, 2])


# ---- progress -------------------------------------------------------------------------------


@pytest.mark.parametrize("shown", [True, False])
def test_map_progress_shown_or_quiet(
    cluster: ClusterSession, capsys: pytest.CaptureFixture[str], shown: bool
) -> None:
    set_progress(shown)
    try:
        assert cluster.map(slow_square, [1, 2, 3], sizes=[4, 5, 6], desc="work") == [1, 4, 9]
    finally:
        set_progress(None)
    captured = capsys.readouterr()
    assert captured.out == ""
    if shown:
        assert "work shards:" in captured.err and "/3 [" in captured.err  # shards
        assert "work:" in captured.err and "/15 [" in captured.err  # images
    else:
        assert captured.err == ""


# ---- the shared-filesystem check ------------------------------------------------------------


def test_check_shared_passes_and_leaves_nothing(cluster: ClusterSession, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("a\n")
    out = tmp_path / "staging"
    out.mkdir()
    cluster.check_shared(read=[tmp_path / "in.csv", tmp_path], write=[out])
    assert list(out.iterdir()) == []


def test_check_shared_names_a_missing_read_path(cluster: ClusterSession, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "in.csv"
    with pytest.raises(ClusterError) as raised:
        cluster.check_shared(read=[missing], write=[tmp_path])
    message = str(raised.value)
    assert f"{missing} does not exist" in message and SHARED_FS in message
    assert message.count("worker tcp://") == 2  # each worker named
    assert list(tmp_path.iterdir()) == []  # the check file is gone


def test_check_shared_write_folder_missing_here(cluster: ClusterSession, tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=f"cannot write in {tmp_path / 'gone'}"):
        cluster.check_shared(read=[], write=[tmp_path / "gone"])


def test_check_paths_sees_another_folder(tmp_path: Path) -> None:
    """What a worker reports when the write folder is not the driver's (its check file is
    missing there) or cannot be written in: run here, as a worker would."""
    problems = _check_paths([], [(str(tmp_path), str(tmp_path / ".fmlkit-cluster-check-x"))])
    assert problems == [f"{tmp_path} is another folder there (a file written here is missing)"]
    if os.geteuid() != 0:  # root writes anywhere
        tmp_path.chmod(0o500)
        try:
            problems = _check_paths([], [(str(tmp_path), str(tmp_path))])
        finally:
            tmp_path.chmod(0o700)
        assert problems == [f"cannot create a file in {tmp_path}: Permission denied"]


# ---- addresses and sessions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "normal"),
    [
        ("local:2", "local:2"),
        (" local:04 ", "local:4"),
        ("tcp://node1:8786", "tcp://node1:8786"),
        ("node1:8786", "tcp://node1:8786"),
        ("tls://10.0.0.5:8786/", "tls://10.0.0.5:8786"),
        ("tcp://[::1]:8786", "tcp://[::1]:8786"),
    ],
)
def test_parse_address_accepts(address: str, normal: str) -> None:
    assert parse_address(address) == normal


@pytest.mark.parametrize(
    "address",
    ["local:0", "local:", "local:-1", "local:two", "local", "", "tcp://node1",
     "http://node1:8786", "tcp://:8786", "tcp://node1:99999", "tcp://node1:x",
     "tcp://node1:8786/path", "node1"],
)  # fmt: skip
def test_parse_address_refuses(address: str) -> None:
    with pytest.raises(OptionError) as raised:
        parse_address(address)
    assert raised.value.options == ("cluster",)
    assert repr(address) in str(raised.value)


def test_session_to_nobody_fails_in_bounded_time() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    address = f"tcp://127.0.0.1:{port}"
    with (
        pytest.raises(ClusterError) as raised,
        cluster_session(address, what="test", connect_timeout=1),
    ):
        pass
    assert time.monotonic() - start < 10
    assert f"no Dask scheduler answered at {address}: connection refused (tried for 1 s)" in str(
        raised.value
    )


def test_session_on_a_running_scheduler(caplog: pytest.LogCaptureFixture) -> None:
    """A scheduler started elsewhere (here: in this process): map works through it, and the
    session leaves it running; workers of several threads get a warning."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",
        scheduler_port=0,
        dashboard_address=":0",
    ) as running:
        with cluster_session(running.scheduler_address, what="test") as s:
            assert s.workers == 1
            assert s.map(slow_square, [3, 1, 2]) == [9, 1, 4]
        assert len(running.scheduler.workers) == 1  # not closed by the session
    warned = [r.getMessage() for r in caplog.records if r.name == "fmlkit.cluster.connect"]
    assert any("run 2 threads each" in m and "--nthreads 1" in m for m in warned), warned


def test_session_without_workers_fails_in_bounded_time() -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=0, processes=False, protocol="tcp", scheduler_port=0, dashboard_address=":0"
    ) as empty:
        address = empty.scheduler_address
        with (
            pytest.raises(ClusterError, match=f"no Dask worker connected to {address} within 1 s"),
            cluster_session(address, what="test", workers_timeout=1),
        ):
            pass


def test_local_session_ends_its_workers() -> None:
    with cluster_session("local:1", what="test") as s:
        worker_pids = s.map(pids, [0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pids[0], 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"worker process {worker_pids[0]} still runs after the session")


def test_session_without_dask_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed → ImportError
    needs = r"--cluster needs Dask: pip install 'fmlkit\[cluster\]'"
    with pytest.raises(ClusterError, match=needs), cluster_session("local:1", what="test"):
        pass


def test_parse_address_before_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(OptionError), cluster_session("local:zero", what="test"):
        pass


def test_local_workers_have_one_thread_each(cluster: ClusterSession) -> None:
    env = cluster.client.run(os.environ.get, "OMP_NUM_THREADS")
    assert list(env.values()) == ["1", "1"]
    assert sorted(cluster.client.nthreads().values()) == [1, 1]
    # a task survives 3 worker deaths; a worker holds one task at a time (a death counts
    # against the task it was running only)
    assert cluster.client.run_on_scheduler(_scheduler_settings) == (3, 1.0)


def _scheduler_settings(dask_scheduler: Any) -> tuple[int, float]:
    return dask_scheduler.allowed_failures, dask_scheduler.WORKER_SATURATION


_QUIET_SCRIPT = """
import sys
from fmlkit.cluster import cluster_session
from fmlkit.errors import InputError
from tests.test_cluster import bad_input, die_once
folder = sys.argv[1]
with cluster_session("local:2", what="test") as s:
    print(s.map(die_once, [(i, folder) for i in range(5)]))
    try:
        s.map(bad_input, [(i, folder) for i in range(4)])
    except InputError as e:
        print("Error:", e)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_local_cluster_keeps_dask_logs_off_stderr(tmp_path: Path, verbose: bool) -> None:
    """A killed worker and a task's error print nothing of Dask's on stderr (workers
    included): the caller reports the error once. With fmlkit's INFO logs on (``-v``),
    Dask's warnings show."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    script = _QUIET_SCRIPT
    if verbose:
        script = "import logging; logging.getLogger('fmlkit').setLevel(logging.INFO)" + script
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"[0, 10, 20, 30, 40]\nError: bad file {tmp_path}/0.jpg: not an image\n")
    assert (tmp_path / "died-3").exists()
    if verbose:
        assert "distributed." in done.stderr  # Dask's logs: a worker lost, a task failed
    else:
        assert done.stderr == ""


_HOLD_SCRIPT = """
import os, time
from fmlkit.cluster import cluster_session
with cluster_session("local:2", what="test") as s:
    print(*s.client.run(os.getpid).values(), flush=True)
    time.sleep(120)
"""


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_local_workers_end_when_the_driver_is_killed() -> None:
    """SIGKILL of the process that started a local:N cluster leaves no worker behind."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    driver = subprocess.Popen(
        [sys.executable, "-c", _HOLD_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert driver.stdout is not None
        workers = [int(pid) for pid in driver.stdout.readline().split()]
        assert len(workers) == 2
    finally:
        driver.kill()
        driver.wait(timeout=30)
    still = [pid for pid in workers if not _gone(pid, within=10)]
    assert still == [], f"worker processes {still} outlived their driver"


def test_local_session_in_a_script_without_main_guard(tmp_path: Path) -> None:
    """Worker processes import the main script: one without the ``__main__`` guard gets a
    ClusterError that says so, not Dask's traceback."""
    import subprocess

    script = tmp_path / "unguarded.py"
    script.write_text(
        "from fmlkit.cluster import ClusterError, cluster_session\n"
        "try:\n"
        "    with cluster_session('local:1', what='test'):\n"
        "        pass\n"
        "except ClusterError as e:\n"
        "    print('Error:', e)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert done.stdout.startswith("Error: could not start a local Dask cluster of 1 worker")
    assert "must start its work under `if __name__ == '__main__':`" in done.stdout


def test_session_to_a_server_that_is_not_a_scheduler() -> None:
    """A web server (the mistake: the dashboard's port) makes Dask's connect wait forever;
    the session says what is there, in bounded time."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = f"tcp://127.0.0.1:{server.server_address[1]}"
    start = time.monotonic()
    try:
        with (
            pytest.raises(ClusterError, match="accepts connections but says nothing") as raised,
            cluster_session(address, what="test", connect_timeout=1),
        ):
            pass
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - start < 10
    assert f"no Dask scheduler answered at {address}" in str(raised.value)
    assert "8787 is its dashboard" in str(raised.value)


_BARE_WORKER = """
import sys
sys.path[:] = [p for p in sys.path if p not in ("", {root!r})]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
from distributed.cli.dask_worker import main
main()
"""


def test_session_refuses_a_worker_without_fmlkit(tmp_path: Path) -> None:
    """A worker whose environment lacks fmlkit is named before any work is sent."""
    import subprocess

    from distributed import LocalCluster

    root = str(Path(__file__).resolve().parents[1])
    with LocalCluster(
        n_workers=0, processes=False, protocol="tcp", scheduler_port=0, dashboard_address=":0"
    ) as empty:
        address = empty.scheduler_address
        worker = subprocess.Popen(
            [sys.executable, "-c", _BARE_WORKER.format(root=root), address, "--nthreads", "1",
             "--no-nanny", "--no-dashboard"],
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with (
                pytest.raises(ClusterError, match="fmlkit cannot be imported on worker") as raised,
                cluster_session(address, what="test", workers_timeout=60),
            ):
                pass
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    assert "install the same fmlkit in every worker's environment" in str(raised.value)


@pytest.mark.parametrize(
    "command",
    [
        ["prepare", "DIR", "-o", "OUT/t.csv"],
        ["align", "DIR", "-o", "OUT/aligned"],
        ["convert", "DIR", "OUT/parquet"],
    ],
    ids=["prepare", "align", "convert"],
)
def test_workers_given_with_cluster_is_a_usage_error(command: list[str], tmp_path: Path) -> None:
    """--workers would be silently unused with --cluster: refused before any work, naming
    both flags; the default --workers is no conflict (the cluster tests run that way)."""
    from tests.hostile.check import fmlkit, refused

    (tmp_path / "DIR" / "a").mkdir(parents=True)
    args = [str(tmp_path / a) if a == "DIR" or a.startswith("OUT/") else a for a in command]
    result = fmlkit(*args, "--workers", "2", "--cluster", "local:2")
    refused(result, says=["--workers", "--cluster local:2", "drop one"], code=2)
    assert not (tmp_path / "OUT").exists()
