"""Object storage (S3 and S3-compatible stores such as MinIO or SeaweedFS): errors a user can act on.

Credentials never pass through kdpipe's own code or params: boto3 reads ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` from the environment and ``MLFLOW_S3_ENDPOINT_URL`` names an S3-compatible
endpoint. What kdpipe adds is a one-line explanation when the store refuses a request, naming the
variables to check and never their values.
"""

from __future__ import annotations

import os
import re

ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"
CREDENTIAL_ENVS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

_AUTH_CODES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "Forbidden",
    "403",
    "NoCredentialsError",
    "Unable to locate credentials",
)
_CODE = re.compile(r"\(([A-Za-z0-9]+)\) when calling")


def endpoint() -> str:
    return os.environ.get(ENDPOINT_ENV) or "AWS S3"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def explain_storage_error(exc: BaseException) -> str | None:
    """A one-line cause when ``exc`` is an S3 refusal of the credentials, else None."""
    for err in _chain(exc):
        text = f"{type(err).__name__}: {err}"
        code = next((c for c in _AUTH_CODES if c in text), None)
        if code is None:
            continue
        found = _CODE.search(text)
        detail = found.group(1) if found else code
        missing = [name for name in CREDENTIAL_ENVS if not os.environ.get(name)]
        hint = f"{' and '.join(missing)} not set" if missing else f"check {' and '.join(CREDENTIAL_ENVS)}"
        return f"the S3 store at {endpoint()} refused the credentials ({detail}); {hint}"
    return None
