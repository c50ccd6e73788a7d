"""What the local servers share: started and stopped by hand or as a context manager, and
the addresses an index has below its URL."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["IndexAddresses", "Service"]


class Service:
    """A server a test starts and stops, by hand or with `with`."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class IndexAddresses:
    """The local index's endpoints, below its `url`, wherever it runs."""

    url: str

    @property
    def upload_url(self) -> str:
        return f"{self.url}/legacy/"

    @property
    def simple_url(self) -> str:
        return f"{self.url}/simple/"

    @property
    def id_token_request_url(self) -> str:
        return f"{self.url}/_github/token?api-version=2.0"
