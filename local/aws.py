"""Local AWS: a moto server with the template's DynamoDB tables and seeded Secrets Manager secrets.

Everything local uses fake credentials and us-east-1 (see `local_aws_environment`); nothing here can
reach a real AWS account.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from local.aws_faults import FaultBook, FaultyMotoServer
from local.template import TableDefinition, Template, load_template, table_definitions

REGION = "us-east-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
DEFAULT_LOCAL_API_KEY = "local-dev-api-key"

LOCAL_NYLAS_SECRET = {
    "client_id": "local-nylas-client-id",
    "api_key": "local-nylas-api-key",
    "client_secret": "local-nylas-client-secret",
}
LOCAL_AZURE_SECRET = {"client_id": "local-azure-client-id", "client_secret": "local-azure-client-secret"}

# Secret names locally; the ARNs moto returns are what the functions get (as the template's parameters).
SECRET_NAMES = {
    "NylasSecretArn": "teams-connect/local/nylas",
    "AzureSecretArn": "teams-connect/local/azure",
    "ApiKeysSecretArn": "teams-connect/local/api-keys",
}


def local_aws_environment(endpoint_url: str) -> dict[str, str]:
    """The variables that point every boto3 client (ours, Powertools') at moto with fake credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        **FAKE_CREDENTIALS,
        "AWS_SESSION_TOKEN": "testing",
        # Never read ~/.aws of the developer: a real profile must not leak into the local stack.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def port_is_free(host: str, port: int) -> bool:
    """Nobody listens there. Connections in TIME_WAIT (a previous run) do not count: the servers bind
    with SO_REUSEADDR, and so does this check."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def client(service: str, endpoint_url: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@dataclass
class LocalAws:
    """A running moto server and what was created in it."""

    url: str
    server: ThreadedMotoServer
    table_names: dict[str, str] = field(default_factory=dict)  # logical id -> table name
    secret_arns: dict[str, str] = field(default_factory=dict)  # template parameter -> ARN
    api_key: str = DEFAULT_LOCAL_API_KEY
    faults: FaultBook = field(default_factory=FaultBook)  # injected DynamoDB/Secrets Manager faults

    def client(self, service: str) -> Any:
        return client(service, self.url)

    def stop(self) -> None:
        self.server.stop()


_DYNAMODB_LOCK = threading.RLock()
_DYNAMODB_OPERATIONS = (
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "transact_get_items",
    "batch_write_item",
    "batch_get_item",
    "query",
    "scan",
)
# Streams and cancelled transactions. moto applies a transaction item by item, each write appending
# its stream record, and undoes a failed one by putting back a copy of each table taken before it:
# a new table object with a new stream shard. A stream reader holding an iterator of the shard that
# was live during the transaction (an iterator is bound to its shard object) then read the records
# of writes that never happened; the fault campaign saw a `Grant Connected` published for a user
# whose first connect lost its mailbox to another user (account_already_linked, a cancelled
# transaction). So a cancelled transaction keeps the live shard, without its records
# (`_transaction_keeps_streams`), and stream reads take the item lock (none sees a transaction half
# way). tests/local/test_moto_atomic.py.
_STREAM_OPERATIONS = ("describe_stream", "get_shard_iterator", "get_records")


def make_dynamodb_atomic() -> None:
    """Serialise moto's DynamoDB item operations in this process (idempotent).

    DynamoDB applies a conditional write (and a transaction) atomically. moto's server handles each
    request in its own thread and its backend evaluates a condition and then writes without a lock,
    so two concurrent `UpdateItem ... ConditionExpression` calls can both succeed (seen locally: 20
    parallel consumes of one session, 1 trial in 30 had two winners), and a read can observe an item
    half way through an update. The product relies on the real service's atomicity, so the local
    stack must provide it too: one process-wide lock around the backend's item operations. This
    changes moto only, never the product code; moto's in-memory operations are fast, so the lock
    costs little even under the concurrency tests. The streams' reads take it too (a stream shows a
    transaction whole or not at all, as DynamoDB Streams does).
    """
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    handler = DynamoHandler.transact_write_items
    if not getattr(handler, "_teams_connect_idempotent", False):
        DynamoHandler.transact_write_items = _idempotent_transactions(handler)  # type: ignore[method-assign]
    transact = DynamoDBBackend.transact_write_items
    if not getattr(transact, "_teams_connect_streams", False) and not getattr(
        transact, "_teams_connect_atomic", False
    ):
        DynamoDBBackend.transact_write_items = _transaction_keeps_streams(transact)  # type: ignore[method-assign]
    for backend, names in (
        (DynamoDBBackend, _DYNAMODB_OPERATIONS),
        (DynamoDBStreamsBackend, _STREAM_OPERATIONS),
    ):
        for name in names:
            original = getattr(backend, name)
            if getattr(original, "_teams_connect_atomic", False):
                continue

            def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                with _DYNAMODB_LOCK:
                    return _original(self, *args, **kwargs)

            locked._teams_connect_atomic = True  # type: ignore[attr-defined]
            setattr(backend, name, locked)


# ClientRequestToken → (the request's items, when the token lapses, the answer): DynamoDB makes a
# TransactWriteItems with the same token idempotent for 10 minutes, and botocore sends one token per
# call, the same on each retry. moto ignores it: a transaction that committed but answered after the
# client's read timeout was applied again on botocore's retry, and its conditions failed. The fault
# campaign saw a connect that had stored its grant end `session_used` (the session step's condition).
_TRANSACTION_TOKENS: dict[str, tuple[str, float, Any]] = {}
TRANSACTION_TOKEN_SECONDS = 600


def _idempotent_transactions(original: Any) -> Any:
    """moto's TransactWriteItems handler, idempotent per ClientRequestToken as DynamoDB is."""
    from moto.dynamodb.exceptions import DynamodbException

    def transact_write_items(self: Any) -> Any:
        token = self.body.get("ClientRequestToken")
        if not token:
            return original(self)
        request = json.dumps(self.body.get("TransactItems"), sort_keys=True)
        with _DYNAMODB_LOCK:
            now = time.monotonic()
            for lapsed in [t for t, (_, until, _) in _TRANSACTION_TOKENS.items() if until <= now]:
                del _TRANSACTION_TOKENS[lapsed]
            seen = _TRANSACTION_TOKENS.get(token)
            if seen is not None:
                if seen[0] != request:
                    raise DynamodbException(
                        "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                        "The request uses the same client token as a previous, but non-identical request.",
                    )
                return seen[2]
            answer = original(self)  # raises when cancelled: a cancelled request is not remembered
            _TRANSACTION_TOKENS[token] = (request, now + TRANSACTION_TOKEN_SECONDS, answer)
            return answer

    transact_write_items._teams_connect_idempotent = True  # type: ignore[attr-defined]
    return transact_write_items


def _transaction_keeps_streams(original: Any) -> Any:
    """moto's transact_write_items, with a cancelled transaction leaving every table's live stream
    shard in place (the same object, its records as before the transaction)."""

    def transact_write_items(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _DYNAMODB_LOCK:
            shards = {
                name: (table.stream_shard, len(table.stream_shard.items))
                for name, table in self.tables.items()
                if getattr(table, "stream_shard", None) is not None
            }
            try:
                return original(self, *args, **kwargs)
            except Exception:
                for name, (shard, count) in shards.items():
                    table = self.tables.get(name)
                    if table is not None and table.stream_shard is not shard:
                        del shard.items[count:]  # the cancelled writes' records
                        shard.table = table
                        table.stream_shard = shard
                raise

    transact_write_items._teams_connect_streams = True  # type: ignore[attr-defined]
    return transact_write_items


def list_moto_modules_once() -> None:
    """moto's server looks up the backend of every request in `list_of_moto_modules()`, which lists
    moto's package directory from disk each time (a `stat` per service, ~200), under the dispatcher's
    lock: with the stack's pollers and concurrent flows, requests queued on that lock. The list cannot
    change while the process runs, so it is read once. Local only: moto's own code, not the product's."""
    from moto import backends

    if getattr(backends.list_of_moto_modules, "_teams_connect_once", False):
        return
    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    list_of_moto_modules._teams_connect_once = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules  # type: ignore[assignment]


def start_moto(
    host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0, faults: FaultBook | None = None
) -> tuple[ThreadedMotoServer, str]:
    """Start moto's server in a thread; refuses a taken port (ThreadedMotoServer can hang on one).
    Its DynamoDB item operations are made atomic (`make_dynamodb_atomic`), as in the service. With
    `faults`, the calls pass through its book first (local/aws_faults.py)."""
    if port == 0:
        port = free_port(host)
    elif not port_is_free(host, port):
        raise RuntimeError(f"port {port} on {host} is already in use; moto cannot start there")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request otherwise
    make_dynamodb_atomic()
    list_moto_modules_once()
    server = (
        ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        if faults is None
        else FaultyMotoServer(faults, ip_address=host, port=port)
    )
    server.start()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"moto did not start on {url}") from None
            time.sleep(0.05)
    return server, url


def create_tables(
    endpoint_url: str, definitions: Mapping[str, TableDefinition], *, prefix: str = ""
) -> dict[str, str]:
    """Create each template table (name = prefix + logical id) and enable its TTL; returns the names."""
    dynamodb = client("dynamodb", endpoint_url)
    names: dict[str, str] = {}
    for logical_id, definition in definitions.items():
        name = f"{prefix}{logical_id}"
        dynamodb.create_table(TableName=name, **definition.create_table_kwargs)
        dynamodb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
        )
        if definition.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": definition.ttl_attribute},
            )
        names[logical_id] = name
    return names


def create_secrets(endpoint_url: str, *, api_key: str = DEFAULT_LOCAL_API_KEY) -> dict[str, str]:
    """Seed the three secrets with local values; returns template parameter name -> secret ARN."""
    values = {
        "NylasSecretArn": LOCAL_NYLAS_SECRET,
        "AzureSecretArn": LOCAL_AZURE_SECRET,
        "ApiKeysSecretArn": {"api_keys": [api_key]},
    }
    secretsmanager = client("secretsmanager", endpoint_url)
    arns: dict[str, str] = {}
    for parameter, name in SECRET_NAMES.items():
        created = secretsmanager.create_secret(Name=name, SecretString=json.dumps(values[parameter]))
        arns[parameter] = str(created["ARN"])
    return arns


def start_local_aws(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    template: Template | None = None,
    api_key: str = DEFAULT_LOCAL_API_KEY,
) -> LocalAws:
    """moto (with a fault book, empty until armed) + the template's tables + the seeded secrets."""
    faults = FaultBook()
    server, url = start_moto(host, port, faults=faults)
    try:
        tables = create_tables(url, table_definitions(template or load_template()))
        secrets = create_secrets(url, api_key=api_key)
    except BaseException:
        server.stop()
        raise
    return LocalAws(
        url=url, server=server, table_names=tables, secret_arns=secrets, api_key=api_key, faults=faults
    )
