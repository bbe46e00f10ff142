#!/usr/bin/env python3
"""Embedded AWS emulator for pns-cdr: moto's ThreadedMotoServer on loopback only.

Usage (from the project root, with the project virtualenv):

    .venv/bin/python scripts/emulator.py --host 127.0.0.1 --port 4566
    .venv/bin/python scripts/emulator.py --port 0        # pick a free port

Protocol with the parent process (Rust tests, the local stack):

* Exactly one line ``READY http://<host>:<port>`` is written to stdout, and
  flushed, once the server accepts TCP connections. Nothing else is ever
  written to stdout; diagnostics go to stderr.
* The emulator exits when its stdin reaches EOF. Parents pipe stdin and never
  write to it, so when the parent dies (even by SIGKILL) the pipe closes and
  the emulator goes away with it. ``--ignore-stdin`` disables this for
  interactive use (then stop it with Ctrl-C / SIGTERM).
* SIGTERM and SIGINT stop it cleanly (exit status 0).
* With ``PNS_IAM_OBSERVATIONS=<file>`` set, every AWS request is also described
  in that file, one JSON line per distinct (caller, operation, resource): the
  caller is the request's access key id (the local stack gives each function its
  own), which ``dev/scripts/iam_check.py`` holds against the template's roles.

It serves every moto service on one endpoint (DynamoDB, SQS, S3, ...); state
lives in memory and is lost on exit. ``GET /moto-api/`` is moto's dashboard,
``POST /moto-api/reset`` clears all state.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time

LOOPBACK_HOSTS = {
    "127.0.0.1": "127.0.0.1",
    "localhost": "127.0.0.1",
    "::1": "::1",
}

# How long a clean shutdown may take before the process exits regardless.
SHUTDOWN_GRACE_SECONDS = 1.5


def log(message: str) -> None:
    print(f"emulator: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Local AWS emulator (moto) for pns-cdr; loopback only."
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to bind: 127.0.0.1 (default), localhost or ::1",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=4566,
        help="TCP port (default 4566); 0 picks a free port, reported in the READY line",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="log every request to stderr",
    )
    parser.add_argument(
        "--ignore-stdin",
        action="store_true",
        help="do not exit on stdin EOF (interactive use; stop with Ctrl-C)",
    )
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK_HOSTS:
        parser.error(
            f"refusing to listen on {args.host!r}: the emulator has no "
            "authentication and binds to loopback only "
            f"({', '.join(sorted(LOOPBACK_HOSTS))})"
        )
    if not 0 <= args.port <= 65535:
        parser.error(f"invalid port {args.port}")
    return args


def configure_logging(verbose: bool) -> None:
    # werkzeug installs its own INFO handler (one line per request) when its
    # logger has no level; setting a level first keeps it quiet.
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if verbose else logging.WARNING,
        format="emulator: %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("werkzeug").setLevel(logging.INFO if verbose else logging.ERROR)


def wait_until_accepting(family: int, host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                probe.connect((host, port))
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def watch_stdin(stop: threading.Event) -> None:
    """Set `stop` when stdin reaches EOF (the parent closed the pipe or died)."""
    try:
        stream = sys.stdin.buffer
        while stream.read(65536):
            pass  # parents never write; anything written is discarded
    except (OSError, ValueError):
        pass
    stop.set()


# The moto release this patch was written against (requirements-dev.txt pins it).
PATCHED_MOTO_VERSION = "5.2.5"


def patch_moto_streams() -> None:
    """Give each DynamoDB stream record its own sequence number.

    moto numbers a record by the shard's length when it appends it, from whichever server
    thread wrote the item: two concurrent writes can get the same number, and a reader that
    resumes at a sequence number (as Lambda does after a partial batch failure) then skips
    or repeats a record. Appends and reads of a shard are serialised.
    """
    import functools

    from moto.dynamodb.models import table

    lock = threading.RLock()
    for name in ("add", "get"):
        method = getattr(table.StreamShard, name)

        def locked(self, *args, _method=method, **kwargs):  # type: ignore[no-untyped-def]
            with lock:
                return _method(self, *args, **kwargs)

        setattr(table.StreamShard, name, functools.wraps(method)(locked))


def patch_moto_sqs() -> None:
    """Two fixes to moto's SQS model, for the release pinned in requirements-dev.txt."""
    import moto
    from moto.sqs import models

    if moto.__version__ != PATCHED_MOTO_VERSION:
        log(f"moto {moto.__version__}: SQS patches (for {PATCHED_MOTO_VERSION}) not applied")
        return
    compute_queue_attributes_on_access(models)
    serialise_queue_state(models)


def serialise_queue_state(models) -> None:  # type: ignore[no-untyped-def]
    """Run SQS calls that touch a queue's messages one at a time.

    moto's server is threaded and its SQS model has no lock. Seen with five concurrent
    pollers: ReceiveMessage failing with 500 (``list.remove(x): x not in list``), and, in a
    10 000-push run, 94 messages left invisible for the whole visibility timeout, as a
    receive that fails after marking messages received leaves them. From the code:
    DeleteMessage rebuilds the message list, so a message sent at that moment can vanish.
    Long polls wait outside the lock, so sends are never held up by them.
    """
    import functools

    lock = threading.RLock()

    def locked(method):  # type: ignore[no-untyped-def]
        @functools.wraps(method)
        def call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            with lock:
                return method(self, *args, **kwargs)

        return call

    for name in (
        "send_message",
        "send_message_batch",
        "delete_message",
        "delete_message_batch",
        "change_message_visibility",
        "change_message_visibility_batch",
        "purge_queue",
        "get_queue_attributes",
    ):
        setattr(models.SQSBackend, name, locked(getattr(models.SQSBackend, name)))

    receive = models.SQSBackend.receive_message

    @functools.wraps(receive)
    def receive_message(  # type: ignore[no-untyped-def]
        self, queue_name, count, wait_seconds_timeout, visibility_timeout, message_attribute_names=None
    ):
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            with lock:
                messages = receive(
                    self, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
            if messages or time.monotonic() >= deadline:
                return messages
            self.get_queue(queue_name).wait_for_messages(1)

    models.SQSBackend.receive_message = receive_message


def compute_queue_attributes_on_access(models) -> None:  # type: ignore[no-untyped-def]
    """Compute SQS queue attributes on access instead of all at once.

    moto 5.2.5 reads ``queue.attributes.get("ContentBasedDeduplication")`` up to three times
    per SendMessage, and each read builds every attribute, including three counts that walk
    every queued message. A send therefore cost O(queue depth): measured 54 sends/s with
    1 000 messages queued, 7 sends/s with 6 000. The mapping below yields the same keys and
    values, computing only the one asked for; GetQueueAttributes still gets a plain dict.
    """
    import json
    from collections.abc import Mapping

    from moto.core.utils import camelcase_to_underscores

    class LazyQueueAttributes(Mapping):
        __slots__ = ("_queue", "_names")

        def __init__(self, queue: models.Queue) -> None:
            self._queue = queue
            names = list(queue.BASE_ATTRIBUTES)
            if queue.fifo_queue:
                names += queue.FIFO_ATTRIBUTES
            if queue.kms_master_key_id:
                names += queue.KMS_ATTRIBUTES
            if queue.policy:
                names.append("Policy")
            if queue.redrive_policy:
                names.append("RedrivePolicy")
            self._names = dict.fromkeys(names)

        def __getitem__(self, name: str) -> object:
            if name not in self._names:
                raise KeyError(name)
            queue = self._queue
            # As upstream: these two override the base attributes of the same name when set.
            if name == "Policy" and queue.policy:
                return queue.policy
            if name == "RedrivePolicy" and queue.redrive_policy:
                return json.dumps(queue.redrive_policy)
            value = getattr(queue, camelcase_to_underscores(name))
            return str(value).lower() if isinstance(value, bool) else value

        def __contains__(self, name: object) -> bool:
            return name in self._names

        def __iter__(self):
            return iter(self._names)

        def __len__(self) -> int:
            return len(self._names)

    models.Queue.attributes = property(LazyQueueAttributes)  # type: ignore[assignment]
    get_queue_attributes = models.SQSBackend.get_queue_attributes

    def get_queue_attributes_as_dict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return dict(get_queue_attributes(self, *args, **kwargs))

    models.SQSBackend.get_queue_attributes = get_queue_attributes_as_dict  # type: ignore[method-assign]


# S3's REST operations, by method and the query parameters that name them.
S3_OPERATIONS = [
    ("PUT", "partNumber", "UploadPart"),
    ("POST", "uploads", "CreateMultipartUpload"),
    ("POST", "uploadId", "CompleteMultipartUpload"),
    ("DELETE", "uploadId", "AbortMultipartUpload"),
    ("GET", "uploadId", "ListParts"),
    # Not an API name: deleting one version is DeleteObject with versionId, and IAM calls it
    # s3:DeleteObjectVersion.
    ("DELETE", "versionId", "DeleteObjectVersion"),
]


def describe_request(environ: dict, body: bytes) -> dict | None:
    """What an AWS request asks, as the IAM check reads it: caller, service,
    operation and the resource it names. None for what is not an AWS API call."""
    from urllib.parse import parse_qs, unquote
    import json

    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker not in auth:
        return None
    scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
    caller, service = scope[0], scope[3] if len(scope) > 3 else ""
    seen = {"caller": caller, "service": service}
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        seen["operation"] = target.rsplit(".", 1)[-1]
        try:
            fields = json.loads(body or b"{}")
        except ValueError:
            fields = {}
        for name, key in [
            ("TableName", "table"),
            ("IndexName", "index"),
            ("SecretId", "secret"),
            ("Name", "secret_name"),
        ]:
            if isinstance(fields.get(name), str):
                seen[key] = fields[name]
        # DynamoDB Streams: the stream's ARN, or an iterator that starts with it (moto's
        # iterators are "<table ARN>/stream/<label>|1|<id>").
        stream = fields.get("StreamArn") or fields.get("ShardIterator")
        if isinstance(stream, str) and ":table/" in stream:
            seen["stream"] = stream.split(":table/", 1)[1].split("/", 1)[0]
            seen.pop("table", None)
        # EventBridge: the bus each entry names (one bus per call here).
        entries = fields.get("Entries")
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            bus = entries[0].get("EventBusName")
            if isinstance(bus, str):
                seen["bus"] = bus.rsplit("/", 1)[-1]
        # EventBridge rules: their name and bus (Name here is a rule's, not a secret's).
        if service == "events":
            rule = fields.get("Name", fields.get("Rule"))
            if isinstance(rule, str):
                seen.pop("secret_name", None)
                seen["rule"] = rule
                seen["bus"] = str(fields.get("EventBusName", "default")).rsplit("/", 1)[-1]
        if isinstance(fields.get("QueueUrl"), str):
            seen["queue"] = fields["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]
        if isinstance(fields.get("QueueName"), str):
            seen["queue"] = fields["QueueName"]
        return seen
    if service != "s3":
        return None
    method = environ.get("REQUEST_METHOD", "")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    path = unquote(environ.get("PATH_INFO", "")).lstrip("/")
    bucket, _, key = path.partition("/")
    seen["bucket"] = bucket
    if key:
        seen["key"] = key
        name = next(
            (op for m, param, op in S3_OPERATIONS if m == method and param in query),
            {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject",
             "DELETE": "DeleteObject"}.get(method, method),
        )
    elif "uploads" in query and method == "GET":
        name = "ListMultipartUploads"
    elif "versions" in query and method == "GET":
        name = "ListObjectVersions"
    elif method == "GET":
        name = "ListObjectsV2" if "list-type" in query else "ListObjects"
    else:
        name = {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(
            method, method
        )
        if method == "PUT" and query:
            name = "PutBucket" + next(iter(query)).capitalize()
    seen["operation"] = name
    return seen


class RequestRecorder:
    """WSGI middleware: describes each distinct AWS request once, in a JSON-lines file."""

    def __init__(self, app, path: str) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.out = open(path, "a", buffering=1, encoding="utf-8")
        self.lock = threading.Lock()
        self.seen: set[str] = set()

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        import io
        import json

        body = b""
        if environ.get("HTTP_X_AMZ_TARGET"):
            # JSON-protocol calls are small: read, then hand the bytes on.
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
        try:
            seen = describe_request(environ, body)
        except Exception as err:  # noqa: BLE001 - recording must never fail a request
            log(f"could not describe a request: {err}")
            seen = None
        if seen is not None:
            line = json.dumps(seen, sort_keys=True)
            with self.lock:
                if line not in self.seen:
                    self.seen.add(line)
                    self.out.write(line + "\n")
        return self.app(environ, start_response)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)

    # Dummy credentials so nothing in-process tries to find real ones.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    from moto.server import ThreadedMotoServer

    patch_moto_sqs()
    patch_moto_streams()
    record_to = os.environ.get("PNS_IAM_OBSERVATIONS")
    if record_to:
        # The server builds its WSGI app from this name: wrap what it builds.
        from moto.moto_server import threaded_moto_server

        dispatcher = threaded_moto_server.DomainDispatcherApplication
        threaded_moto_server.DomainDispatcherApplication = lambda create_app: RequestRecorder(
            dispatcher(create_app), record_to
        )

    class LoopbackMotoServer(ThreadedMotoServer):
        """ThreadedMotoServer whose start() reports a bind failure instead of
        hanging forever (upstream only sets its ready event on success)."""

        startup_error: BaseException | None = None

        def _server_entry(self) -> None:
            try:
                super()._server_entry()
            except BaseException as err:  # noqa: BLE001 - reported by main()
                self.startup_error = err
                self._server_ready_event.set()

    bind_host = LOOPBACK_HOSTS[args.host]
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = LoopbackMotoServer(ip_address=bind_host, port=args.port, verbose=False)
    server.start()  # waits until bound; port 0 is resolved by the OS
    if server.startup_error is not None or server._server is None:
        err = server.startup_error
        reason = "" if isinstance(err, SystemExit) else f": {err}"  # werkzeug already said why
        log(f"cannot listen on {bind_host}:{args.port}{reason}")
        return 1
    _, port = server.get_host_and_port()
    wait_until_accepting(family, bind_host, port)

    url_host = f"[{bind_host}]" if family == socket.AF_INET6 else bind_host
    sys.stdout.write(f"READY http://{url_host}:{port}\n")
    sys.stdout.flush()

    if not args.ignore_stdin:
        threading.Thread(target=watch_stdin, args=(stop,), daemon=True).start()

    # Event.wait with a timeout keeps the main thread responsive to signals.
    while not stop.wait(0.5):
        pass

    # Clean shutdown, bounded: serve_forever polls every 0.5 s, and an
    # in-flight request must not keep the process alive.
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    stopper.join(SHUTDOWN_GRACE_SECONDS)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
