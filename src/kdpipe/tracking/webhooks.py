"""The registry's outgoing calls: MLflow's webhooks on alias moves, signed for the receiver to check."""

from __future__ import annotations

from typing import Any


def add_alias_webhook(mlflow_client: Any, name: str, url: str, secret: str) -> Any:
    """Have the MLflow server POST to ``url`` whenever an alias of a model version is set.

    MLflow fires ``model_version_alias.created`` for every model in the registry and every alias
    (``challenger`` too): the payload's ``data`` names the model, version and alias, and the
    receiver acts on ``alias == "champion"`` of ``name``. Calls are signed: ``X-MLflow-Signature`` is
    ``v1,`` + base64 HMAC-SHA256 of ``<delivery id>.<timestamp>.<body>`` with ``secret``.
    """
    from mlflow.entities.webhook import WebhookEvent

    return mlflow_client.create_webhook(
        name=f"{name}-aliases",
        url=url,
        events=[WebhookEvent("model_version_alias", "created")],
        secret=secret,
        description=f"kdpipe: a version of {name} got an alias (act on alias 'champion')",
    )
