"""One worker command, every core: the first node starts and supervises one more node per extra CPU.

``python -m worker`` and ``celery -A worker worker`` start one Celery node; ``NodesStep``, a bootstep
of that node, starts ``FER_WORKER_PROCESSES - 1`` more (default: the CPUs this process may use,
``worker.cpus``), each a full Celery worker of its own (threads pool, ``FER_WORKER_CHUNKS`` chunks)
named ``<name>-<i>@<host>``, so ``celery inspect`` and Flower list every process. The step:

- starts them with the command line this node was started with, plus ``-n <name>-<i>@<host>``
  (Click keeps the last value of an option), ``FER_WORKER_PROCESSES=1`` (they start none of their
  own) and ``FER_METRICS_PORT=0``: they write their metrics into this node's multiprocess directory,
  served summed by this node's endpoint (``worker.ops.exporter``);
- starts a node again when it exits while this one runs (``kill -9``, the kernel's OOM killer), after
  1 s, doubling up to 60 s while it keeps dying young; its chunks are not lost: late acks put them back
  in the queue after the visibility timeout, and the sweeper resends the ranges of stalled jobs;
- on a warm shutdown (SIGTERM: ``docker stop``, Ctrl-C) passes SIGTERM on to every node and waits
  for them to finish their chunks while this node finishes its own; on a cold one, SIGQUIT;
- asks the kernel to send SIGTERM to each node should this one die without a word (SIGKILL): a node
  outliving its supervisor would not be restarted, nor stopped with the rest.

Why not something Celery has (checked against Celery 5.7):

- **prefork** runs one task at a time per child process. A worker's chunks must share the process's
  models, download slots and event loop on threads (docs/architecture.md: prefork ran 0.24-0.90x as
  fast), and billiard's pool has no way to run several tasks in one child;
- **celery multi** starts detached nodes for init scripts and leaves: it restarts nothing that dies,
  passes no signal on, and leaves a container with no foreground process;
- **autoscale** and the pool bootsteps grow the pool inside one process, not the process count.

So the supervisor is this one bootstep (about 150 lines), while every node, the first included,
remains a plain Celery worker. With ``FER_WORKER_POOL=prefork`` the pool already has a process per
child and no node is added.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from celery import bootsteps

log = logging.getLogger(__name__)

# The command line the nodes repeat: what follows the interpreter. ``worker.__main__`` sets it when it
# is given its arguments; otherwise it is this interpreter's own (``python -m worker ...``,
# ``celery -A worker worker ...``).
command: list[str] | None = None
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
YOUNG = 30.0  # seconds: a node that dies younger than this waits twice as long to start again
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the new node, before it runs: SIGTERM when the thread that started it ends (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def node_name(hostname: str, index: int) -> str:
    """``name@host`` -> ``name-<index>@host``."""
    name, at, host = hostname.partition("@")
    return f"{name}-{index}{at}{host}"


def _suffixed(path: str, index: int) -> str:
    stem, dot, ext = path.rpartition(".")
    return f"{stem}-{index}.{ext}" if dot and "/" not in ext else f"{path}-{index}"


def node_argv(hostname: str, index: int, pidfile: str | None = None, statedb: str | None = None) -> list[str]:
    """The command that starts node ``index``: this node's own, renamed, never detached, with its own
    pid file and state file when this node has them (two nodes cannot share one)."""
    args = [arg for arg in (command if command is not None else sys.orig_argv[1:]) if arg not in ("-D", "--detach")]
    args += ["-n", node_name(hostname, index)]
    if pidfile:
        args += ["--pidfile", _suffixed(pidfile, index)]
    if statedb:
        args += ["--statedb", _suffixed(statedb, index)]
    return [sys.executable, *args]


@dataclass
class Node:
    index: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = RESTART_DELAY
    due: float = 0.0  # when to start it (again)


class Nodes:
    """The extra nodes and the thread that starts, watches and stops them."""

    def __init__(self, argvs: list[list[str]], env: dict[str, str]) -> None:
        self.nodes = [Node(i + 1, argv) for i, argv in enumerate(argvs)]
        self.env = env
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fer-nodes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def pids(self) -> list[int]:
        return [node.proc.pid for node in self.nodes if node.proc is not None and node.proc.poll() is None]

    def _start(self, node: Node) -> None:
        node.proc = subprocess.Popen(node.argv, env=self.env, preexec_fn=_die_with_parent)
        node.started = time.monotonic()
        log.info("started worker node %d (pid %d)", node.index, node.proc.pid)

    def _watch(self) -> None:
        """Start every node, start again any that exits, until stopping; then wait for them all.

        All nodes are started from this thread, which lives until they exit: the kernel's
        parent-death signal follows the thread that forked, not the process."""
        while not self._stopping.is_set():
            now = time.monotonic()
            for node in self.nodes:
                if node.proc is None:
                    if now >= node.due:
                        self._start(node)
                    continue
                code = node.proc.poll()
                if code is None:
                    continue
                lived, pid = now - node.started, node.proc.pid
                node.delay = min(MAX_RESTART_DELAY, node.delay * 2) if lived < YOUNG else RESTART_DELAY
                node.due, node.proc = now + node.delay, None
                log.warning("worker node %d (pid %d) exited with %s after %.0f s; starting it again in %.0f s",
                            node.index, pid, code, lived, node.delay)
            self._stopping.wait(0.2)
        for node in self.nodes:
            if node.proc is not None:
                node.proc.wait()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Pass ``sig`` on to every node (SIGTERM: finish your chunks) and wait until all have exited."""
        self._stopping.set()
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(sig)
        if self._thread.is_alive():
            self._thread.join()
        else:  # never started
            for node in self.nodes:
                if node.proc is not None:
                    node.proc.wait()


class NodesStep(bootsteps.StartStopStep):
    """Starts and supervises the node's sibling nodes (see the module docstring)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, parent: object, **kwargs: object) -> None:
        super().__init__(parent, **kwargs)
        self.nodes: Nodes | None = None

    def start(self, worker: object) -> None:
        from worker.cpus import allowed_cpus
        from worker.settings import get_settings

        settings = get_settings()
        count = settings.worker_processes or allowed_cpus()
        if settings.worker_pool == "prefork" or count <= 1:
            return
        hostname = str(getattr(worker, "hostname", "celery@localhost"))
        pidfile, statedb = getattr(worker, "pidfile", None), getattr(worker, "statedb", None)
        argvs = [node_argv(hostname, i, pidfile, statedb) for i in range(1, count)]
        # PROMETHEUS_MULTIPROC_DIR (set by worker.ops.exporter before this step) is inherited.
        env = {**os.environ, "FER_WORKER_PROCESSES": "1", "FER_METRICS_PORT": "0"}
        log.info("%s starts %d more worker nodes (FER_WORKER_PROCESSES=%d): %s", hostname, count - 1, count,
                 ", ".join(node_name(hostname, i) for i in range(1, count)))
        self.nodes = Nodes(argvs, env)
        self.nodes.start()

    def stop(self, worker: object) -> None:
        if self.nodes is not None:
            self.nodes.stop(signal.SIGTERM)

    def terminate(self, worker: object) -> None:
        if self.nodes is not None:
            self.nodes.stop(signal.SIGQUIT)
