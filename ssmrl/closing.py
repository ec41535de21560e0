"""`Closing`: a context manager mixin for objects with a `close()` that must never hide the error in flight."""

from __future__ import annotations

import contextlib


class Closing:
    """`with obj:` calls `obj.close()` on the way out; when an error is already in flight, a second error raised by
    the cleanup is suppressed, so the first one is the one reported."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is None:
            self.close()
        else:
            with contextlib.suppress(Exception):
                self.close()
