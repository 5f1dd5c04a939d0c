"""Every ``kdpipe.*`` tag and metric-name prefix, defined once: writers and readers import them here.

MLflow run tags, model-version tags and registered-model tags share one namespace, so a search
such as ``tags.`kdpipe.data_sha256` = '...'`` finds runs and versions alike.
"""

from __future__ import annotations

# Lineage: where a run or a registered version came from.
STEP = "kdpipe.step"
PIPELINE_RUN_ID = "kdpipe.pipeline_run_id"
VERSION = "kdpipe.version"
GIT_COMMIT = "kdpipe.git_commit"
DATA_SHA256 = "kdpipe.data_sha256"
SPLIT_FINGERPRINT = "kdpipe.split_fingerprint"  # the stable split's fingerprint; absent for a seeded split
CLASSES = "kdpipe.classes"  # a registered version's class names in label order, as JSON
MODEL_SHA256 = "kdpipe.model_sha256"
TEACHER_SOURCE = "kdpipe.teacher_source"
TEACHER_VERSION = "kdpipe.teacher_version"
TEACHER_ARCH = "kdpipe.teacher_arch"
TEACHER_FORMAT = "kdpipe.teacher_format"  # kdpipe, torchscript, pt2, state_dict, mlflow-pickle, mlflow-pt2
TEACHER_FEATURE_LAYER = "kdpipe.teacher_feature_layer"  # pooled (the model's own), none, or the layer tapped
TEACHER_SHA256 = "kdpipe.teacher_sha256"  # the stored teacher's bytes (its serialised model for an MLflow folder)
STUDENT_ARCH = "kdpipe.student_arch"
STUDENT_INIT_SHA256 = "kdpipe.student_init_sha256"  # the sha256 of the weights student.init named
METHOD = "kdpipe.method"
DEVICE = "kdpipe.device"
WORLD_SIZE = "kdpipe.world_size"
ERROR = "kdpipe.error"
KUBEFLOW_RUN_ID = "kdpipe.kubeflow_run_id"
KUBEFLOW_RUN_URL = "kdpipe.kubeflow_run_url"
WORKDIR = "kdpipe.workdir"  # host:directory of the step's outputs; whoever holds its lock owns the run

# Validation and promotion.
VALIDATION_PASSED = "kdpipe.validation_passed"
CHAMPION_NOTE = "kdpipe.champion"
REGISTERED_VERSION = "kdpipe.registered_version"
PROMOTION_DECISION = "kdpipe.promotion.decision"
PROMOTION_REASONS = "kdpipe.promotion.reasons"
PROMOTION_COMPARED_WITH = "kdpipe.promotion.compared_with"
PROMOTION_DECIDED_AT = "kdpipe.promotion.decided_at"
# The data (sha256) and the number of gate-split images the student and the champion were compared on.
PROMOTION_COMPARED_ON = "kdpipe.promotion.compared_on"
PROMOTION_COMPARED_IMAGES = "kdpipe.promotion.compared_images"
# Where a registered version's exported files are: MLflow onnx-flavour model URIs (int8 only when offered).
ONNX_MODEL_URI = "kdpipe.onnx_model_uri"
ONNX_INT8_MODEL_URI = "kdpipe.onnx_int8_model_uri"
# On a version of a sibling registered model (<name>-onnx, <name>-onnx-int8): the student it was exported from.
STUDENT_MODEL = "kdpipe.student_model"
STUDENT_VERSION = "kdpipe.student_version"
MODEL_CARD_URI = "kdpipe.model_card_uri"  # where a registered version's model card (Markdown and JSON) is

# What an exported file says about itself (ONNX metadata_props, OpenVINO rt_info): its classes (CLASSES), data
# (DATA_SHA256), kdpipe (VERSION) and registered version (REGISTERED_VERSION) under the tags' names, and these.
REGISTERED_MODEL = "kdpipe.registered_model"
INPUT_NAME = "kdpipe.input_name"
OUTPUT_NAME = "kdpipe.output_name"
INPUT_SHAPE = "kdpipe.input_shape"  # JSON, -1 for the batch axis
INPUT_LAYOUT = "kdpipe.input_layout"
INPUT_DTYPE = "kdpipe.input_dtype"
INPUT_RANGE = "kdpipe.input_range"
NORMALIZATION = "kdpipe.normalization"  # JSON: mean, std and where they are applied
OPSET = "kdpipe.opset"
PRECISION = "kdpipe.precision"  # fp32 or int8
TEACHER = "kdpipe.teacher"  # JSON: the teacher's lineage tags

# A registered version's figures as probed on a target device (kdpipe-probe's result, compact JSON).
DEVICE_PROBE_PREFIX = "kdpipe.device_probe."


def device_probe(device: str) -> str:
    """The version tag holding ``device``'s probe result, e.g. ``kdpipe.device_probe.line4-pc``."""
    return DEVICE_PROBE_PREFIX + device


# The registry's champion chain and audit trail.
PREVIOUS_CHAMPION = "kdpipe.previous_champion"
CHAMPION_HISTORY = "kdpipe.champion_history"
CHAMPION_SINCE = "kdpipe.champion_since"
ROLLED_BACK_AT = "kdpipe.rolled_back_at"
ROLLED_BACK_TO = "kdpipe.rolled_back_to"
LOCK_OWNER = "kdpipe.lock_owner"

# On Kubernetes: the labels of a multi-node job's attempts, the manager of kdpipe's TrainJob runtime patch, and the
# event of the failure notice the pipeline's exit handler posts.
K8S_RUN_LABEL = "kdpipe.io/pipeline-run"
K8S_ATTEMPT_LABEL = "kdpipe.io/attempt"
K8S_PATCH_MANAGER = "kdpipe.io/launcher"
FAILURE_EVENT = "kdpipe.pipeline_run.failed"

# A distill run's GPUs x its training wall time, in hours (a metric): what the night cost the cluster.
GPU_HOURS = "gpu_hours"

# A registered version carries the student's validated figures; the champion's are read back from them.
RECORDED_METRICS = ("top1", "top5", "parameters", "size_bytes", "latency_ms_batch1")


def recorded_metric(name: str) -> str:
    """The version tag holding one of :data:`RECORDED_METRICS`, e.g. ``kdpipe.top1``."""
    return f"kdpipe.{name}"


# Set by a team on the MLflow model it brings as a teacher: its classes in output order, a JSON list.
MODEL_CLASSES = "classes"

# MLflow's own tags that kdpipe sets.
EXPERIMENT_KIND = "mlflow.experimentKind"
RUN_DESCRIPTION = "mlflow.note.content"  # the run page's Markdown description
LOGGED_MODEL_VERSIONS = "mlflow.modelVersions"  # a logged model's registered versions, as its page reads them

# The study's runs.
STUDY_ID = "kdpipe.study.id"
STUDY_KEY = "kdpipe.study.key"
STUDY_COMPLETE = "kdpipe.study.complete"
STUDY_RESULTS = "kdpipe.study.results"  # which results a cell run logged: a rerun run replaces it
STUDY_CELL = "kdpipe.study.cell"
STUDY_SEEDS = "kdpipe.study.seeds"
STUDY_PHASE = "kdpipe.study.phase"  # tune (a tuning-grid cell), confirm (fresh transfer sets), budget or main

# Metric-name prefixes: whose figures a metric is, and on which split.
TEACHER_TRAIN_PREFIX = "teacher_"


def split_prefix(model: str, split: str) -> str:
    """Whose figures a metric holds and on which split: ``student_test_``, ``champion_val_``, ..."""
    return f"{model}_{split}_"


def cost_prefix(model: str, deploy_format: str) -> str:
    """A model's figures in one deploy format: ``student_onnx_int8_p95_ms``, ``teacher_pytorch_memory_mb``, ..."""
    return f"{model}_{deploy_format}_"


def operational_split(name: str) -> str:
    """The split label of operational set ``name``: ``student_operational_<name>_top1``, and
    ``operational_<name>_disagreement`` for the set's shift summary."""
    return f"operational_{name}"
