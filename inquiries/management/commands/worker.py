import logging
import os
import threading
import time

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError, close_old_connections, connection
from django_tasks_db.management.commands import db_worker

from inquiries.documents import sandbox
from inquiries.documents.pipeline import limits, recover

logger = logging.getLogger(__name__)


class Command(db_worker.Command):
    help = (
        "Runs a background worker: checks and rebuilds the documents families send and sends "
        "the emails (django-tasks-db's db_worker, all queues by default), and every "
        "WORKER_RECOVERY_SECONDS takes up again what a worker that died or a database that "
        "went away left behind. Run as many as you like, on any number of machines."
    )

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        # The recovery thread would run in the reloader's parent too.
        parser.set_defaults(queue_name="*", reload=False)

    def handle(self, *args, **options) -> None:
        problem = sandbox.probe(limits())
        if problem:
            # Better no worker than one that opens families' files unprotected.
            raise CommandError(
                "Documents cannot be opened in the sandbox on this machine "
                f"({problem}). The worker needs Linux namespaces: unprivileged user "
                "namespaces, or root. On a host that isolates the worker itself (a container "
                "with no network and a read-only root), set DOCUMENT_CHECK_ISOLATED=0."
            )
        # Below the web servers that may share this machine: a reader comes first. Not at
        # idle priority, as the sandbox children are: a worker starved of all CPU would miss
        # its heartbeats, and its checks would be taken over for nothing.
        os.nice(10)
        threading.Thread(target=self._recover_forever, name="recovery", daemon=True).start()
        while True:
            try:
                return super().handle(*args, **options)
            except DatabaseError as error:
                # db_worker stops when the database goes away; a worker waits for it instead.
                logger.error("Worker without its database (%s); trying again", type(error).__name__)
                close_old_connections()
                time.sleep(max(1.0, options["interval"]))

    def _recover_forever(self) -> None:
        while True:
            try:
                queued = recover()
                if queued:
                    logger.info("Recovery queued %d task(s) again", queued)
            except Exception as error:  # the next round tries again; the worker goes on
                logger.error("Recovery failed: %s", type(error).__name__)
            finally:
                connection.close()
            time.sleep(settings.WORKER_RECOVERY_SECONDS)
