"""The default request timeout, written once.

How many seconds a request to a model server may go without progress (and how long connecting
or a health check may take): ``--punie-timeout``'s default, the server spec's, the cases'
sampling settings' and the judge's. Nothing here imports anything, so any layer may use it.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 120.0
