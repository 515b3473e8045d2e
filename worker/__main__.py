"""``python -m worker``: the worker command, as ``celery -A worker worker`` starts it, with less memory.

With no options it uses every CPU the process may use: this node starts one more per extra CPU
(``FER_WORKER_PROCESSES``; ``worker.nodes``).

It runs Celery's own ``worker`` command, so it takes every option ``celery worker`` takes
(``--loglevel``, ``-n``, ``--concurrency``, ``-Q``, ``--help``...), for this package's ``app``,
and reads the same environment variables (``CELERY_WORKER_HOSTNAME``, ``CELERY_WORKER_CONCURRENCY``...).
What it leaves out is the rest of Celery's command-line program: ``celery`` imports all of its
subcommands before it runs one, and its ``amqp`` shell brings click-repl and prompt_toolkit.
That is 7 MiB of every worker process's memory (idle: 118.4 against 111.5 MiB, VmRSS), held for
the process's whole life and never used. ``celery -A worker worker`` still works;
``celery -A worker inspect ...`` and the other subcommands are what ``celery`` is for.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from celery.bin.base import CLIContext
from celery.bin.worker import worker as worker_command

from worker import app, nodes


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``celery worker`` for ``app`` with ``argv`` (the command line's by default); exits."""
    context = CLIContext(app=app, no_color=None, workdir=None)
    if argv is not None:  # the extra nodes (worker.nodes) repeat this command line, not the interpreter's
        nodes.command = ["-m", "worker", *argv]
    # `celery` runs with auto_envvar_prefix="CELERY"; its `worker` subcommand's options then read
    # CELERY_WORKER_<OPTION>.
    worker_command.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="python -m worker",
                        auto_envvar_prefix="CELERY_WORKER", obj=context)


if __name__ == "__main__":
    main()
