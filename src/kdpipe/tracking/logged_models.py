"""The models kdpipe logs: the student and teacher as MLflow 3 PyTorch models (pt2, tensor signature,
the kdpipe checkpoint riding along) and the ONNX exports; and where distill logged its student.
"""

from __future__ import annotations

import copy
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

import torch

from kdpipe.config import Params
from kdpipe.infra import files
from kdpipe.models.serving import ServingClassifier
from kdpipe.tracking.server import fluent_uri


def logged_student(params: Params, model_path: Path) -> dict[str, str] | None:
    """Where distill logged the student in ``model_path`` (its model URI, LoggedModel id and run), when
    the note beside it describes these bytes in this tracking store; else None."""
    note = model_path.parent / files.MODEL_RECORD_FILE
    if not note.exists() or not model_path.exists():
        return None
    logged = files.read_json(note)
    same = (
        logged.get("model_sha256") == files.file_sha256(model_path)
        and logged.get("tracking_uri") == params.tracking.uri
    )
    return logged if same else None


def _logged_model_id(tracking_uri: str, run_id: str | None, name: str) -> str | None:
    """Without an active run, the LoggedModel is made in the run's experiment (not the fluent one)."""
    if run_id is None:
        return None
    import mlflow

    mlflow_client = mlflow.MlflowClient(tracking_uri)
    run = mlflow_client.get_run(run_id)
    return str(
        mlflow_client.create_logged_model(
            run.info.experiment_id, name=name, source_run_id=run_id, params=run.data.params
        ).model_id
    )


def _tensor_signature(shape: tuple[int, ...], classes: int) -> Any:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes))]),
    )


def log_onnx_model(path: Path, manifest: dict[str, Any], name: str, *, tracking_uri: str, run_id: str) -> str:
    """Log the ONNX file ``path`` into run ``run_id`` with MLflow's onnx flavour (signature, input example,
    the CPU execution provider first) and return its model URI."""
    import mlflow
    import numpy as np
    import onnx

    shape = tuple(int(s) for s in manifest["shape"])
    example = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    with fluent_uri(tracking_uri):
        info = mlflow.onnx.log_model(
            onnx.load(str(path)),
            name=name,
            run_id=run_id,
            model_id=_logged_model_id(tracking_uri, run_id, name),
            signature=_tensor_signature(shape, len(manifest["classes"])),
            input_example=example,
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,
            pip_requirements=[
                f"onnx=={onnx.__version__}",
                f"onnxruntime=={_version('onnxruntime')}",
                f"mlflow=={mlflow.__version__}",
            ],
            metadata={
                "classes": list(manifest["classes"]),
                "data_sha256": manifest["sha256"],
                "input": "float32 images N x C x H x W with values in [0, 1]; normalisation is inside the model",
            },
        )
    return str(info.model_uri)


def log_classifier(
    model: torch.nn.Module,
    checkpoint: Path,
    manifest: dict[str, Any],
    name: str = "student",
    *,
    tracking_uri: str,
    run_id: str | None = None,
) -> dict[str, str]:
    """Log ``model`` into run ``run_id`` (default: the active run) on ``tracking_uri``, in MLflow 3's form.

    The form: pt2 export, tensor signature, input example, no projector.

    The exported module is :class:`ServingClassifier` (float images in [0, 1], normalisation inside).
    The kdpipe checkpoint (architecture, classes, weights) rides along in ``extra_files`` so that a
    registered model can serve again as a teacher with its classes checked.
    """
    import mlflow
    import numpy as np

    shape = tuple(int(s) for s in manifest["shape"])
    classes = list(manifest["classes"])
    net = copy.deepcopy(model).cpu().float().to(memory_format=torch.contiguous_format).eval()
    serving = ServingClassifier(net, manifest["mean"], manifest["std"]).eval()
    example = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    signature = _tensor_signature(shape, len(classes))
    with fluent_uri(tracking_uri):
        info = mlflow.pytorch.log_model(
            serving,
            name=name,
            run_id=run_id,
            model_id=_logged_model_id(tracking_uri, run_id, name),
            signature=signature,
            input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
            extra_files=[str(checkpoint)],
            metadata={
                "classes": classes,
                "input": "float32 images N x C x H x W with values in [0, 1]; normalisation is inside the model",
                "mean": list(manifest["mean"]),
                "std": list(manifest["std"]),
                "data_sha256": manifest["sha256"],
            },
        )
    return {"model_uri": info.model_uri, "model_id": info.model_id, "run_id": info.run_id, "tracking_uri": tracking_uri}
