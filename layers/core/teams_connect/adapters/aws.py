"""The container's one botocore session, shared by its AWS clients (DynamoDB, Secrets Manager).

botocore, not boto3: boto3 adds its resource layer and s3transfer to every cold start. One session,
not one per client: each session loads and parses its own endpoint, partition and default-config
data, about 45 ms of a cold start for the second client alone.

Its data loader checks a service name by looking for that service alone. botocore's own loader lists
every service directory of its data path (about 400 in the runtime's botocore, a `listdir` and a
`stat` each) to check one name, once for the service model and once for the endpoint rules: about
50 ms of the first client's creation here (`make bench`, docs/performance.md). What it loads, and
from where, is unchanged: the same search paths (`AWS_DATA_PATH` included), in the same order.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401 - the first connection encodes its host name with it: import at init
import os
import threading
from collections.abc import Collection, Iterator
from typing import Any

import botocore.loaders
import botocore.session


class ServiceNames(Collection[str]):
    """The services that have `type_name` data, answered per name: `in` looks at that service's
    directory only; iterating (botocore's message for an unknown name) lists them all as botocore does."""

    def __init__(self, loader: DataLoader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._loader.has_service(name, self._type_name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._loader.all_services(self._type_name))

    def __len__(self) -> int:
        return len(self._loader.all_services(self._type_name))


class DataLoader(botocore.loaders.Loader):  # type: ignore[misc]
    """botocore's loader, without the walk of every service directory to check one name."""

    def list_available_services(self, type_name: str) -> ServiceNames:
        return ServiceNames(self, type_name)

    def all_services(self, type_name: str) -> list[str]:
        return list(super().list_available_services(type_name))

    def has_service(self, name: str, type_name: str) -> bool:
        if not name or name.startswith(".") or os.sep in name or (os.altsep and os.altsep in name):
            return False
        for root in self.search_paths:
            directory = os.path.join(root, name)
            if not os.path.isdir(directory):
                continue
            for version in os.listdir(directory):
                if self.file_loader.exists(os.path.join(directory, version, type_name)):
                    return True
        return False


_session: Any = None
_lock = threading.Lock()


def session() -> Any:
    """Created once, on first use (no network call: credentials are resolved per client)."""
    global _session
    if _session is None:
        with _lock:
            if _session is None:
                created = botocore.session.get_session()
                data_path = created.get_config_variable("data_path")
                paths = [
                    os.path.expanduser(os.path.expandvars(p))
                    for p in (data_path or "").split(os.pathsep)
                    if p
                ]
                created.register_component("data_loader", DataLoader(extra_search_paths=paths))
                _session = created
    return _session
