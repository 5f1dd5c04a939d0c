"""The nightly pipeline: prepare -> teacher -> teacher outputs -> distill (GPU) -> validate -> [passed] promote.

Run-time choices are pipeline parameters (the params file, overrides, the data reference, the
accelerator type and count, the credentials secret). What a cluster offers is chosen when compiling
(:class:`Options`): a PVC for the data cache and checkpoints, and the multi-node PyTorchJob.
"""

from dataclasses import dataclass
from pathlib import Path

from kfp import compiler, dsl, kubernetes

from kdpipe.infra.errors import KdpipeError
from kdpipe.kubeflow import cluster
from kdpipe.kubeflow.params import one_line
from kdpipe_components import (
    distill,
    distill_pytorchjob,
    evaluate_teacher,
    prepare_data,
    promote,
    teacher_outputs,
    validate_student,
)

PIPELINE_NAME = "kdpipe-distill"
COMPILED = Path(__file__).with_name("distill_pipeline.yaml")
RETRIES = {"num_retries": 3, "backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "3600s"}


@dataclass(frozen=True)
class Options:
    """Compile-time choices. ``pytorchjob_nodes`` > 0 runs distill as a PyTorchJob on that many nodes."""

    data_cache_pvc: str | None = None
    pytorchjob_nodes: int = 0

    def check(self) -> None:
        if self.pytorchjob_nodes and not self.data_cache_pvc:
            raise KdpipeError("--pytorchjob-nodes needs --data-cache-pvc: the job's pods share data through it")


def on_gpu_nodes(task: dsl.PipelineTask, accelerator_type: str, accelerator_count: int) -> None:
    """GPU request, GPU-node tolerations and selector, and a RAM-backed /dev/shm."""
    task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)
    for toleration in cluster.GPU_TOLERATIONS:
        kubernetes.add_toleration(task, **toleration)
    for key, value in cluster.GPU_NODE_SELECTOR.items():
        kubernetes.add_node_selector(task, key, value)
    kubernetes.empty_dir_mount(
        task, volume_name=cluster.SHM_VOLUME, mount_path=cluster.SHM_PATH, medium=cluster.SHM_MEDIUM
    )


def with_cluster_resources(task: dsl.PipelineTask, options: Options, credentials_secret: str) -> None:
    """The S3 and MLflow credentials from the secret (optional), and the data-cache PVC when there is one."""
    kubernetes.use_secret_as_env(task, credentials_secret, {key: key for key in cluster.SECRET_ENV}, optional=True)
    if options.data_cache_pvc:
        kubernetes.mount_pvc(task, pvc_name=options.data_cache_pvc, mount_path=cluster.CACHE_PATH)


def build(default_params_yaml: str, options: Options = Options()) -> dsl.graph_component.GraphComponent:
    """The pipeline, with ``default_params_yaml`` (a params.yaml's text) as its default params."""
    options.check()
    cache_dir = cluster.CACHE_PATH if options.data_cache_pvc else ""
    default_params_yaml = one_line(default_params_yaml)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Distil a teacher into a student with the projector recipe "
        "(Miles & Mikolajczyk, AAAI 2024) and promote it when it is better.",
    )
    def distill_pipeline(
        params_yaml: str = default_params_yaml,
        overrides: list[str] = [],  # noqa: B006 - kfp records the default in the compiled spec
        data_ref: str = "",
        accelerator_type: str = cluster.GPU_RESOURCE,
        accelerator_count: int = 1,
        credentials_secret: str = cluster.CREDENTIALS_SECRET,
    ) -> None:
        common = {
            "params_yaml": params_yaml,
            "overrides": overrides,
            "cache_dir": cache_dir,
            "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        }
        prep = prepare_data(data_ref=data_ref, **common).set_display_name("prepare data")
        prep.set_caching_options(True)
        dataset = prep.outputs["dataset"]
        teacher = evaluate_teacher(dataset=dataset, **common).set_display_name("evaluate teacher")
        teacher.set_caching_options(False)  # a registry teacher alias may move while the inputs stay the same
        teacher_model = teacher.outputs["teacher"]
        cached = teacher_outputs(
            dataset=dataset,
            teacher=teacher_model,
            nodes=options.pytorchjob_nodes or 1,
            gpus_per_node=accelerator_count,
            params_yaml=params_yaml,
            overrides=overrides,
            cache_dir=cache_dir,
        ).set_display_name("teacher outputs")
        # Its inputs change every night (the teacher task always runs), so Kubeflow's cache would never hit;
        # the teacher cache's own key does the reuse, on the PVC: a night with nothing new records nothing.
        cached.set_caching_options(False)
        on_gpu_nodes(cached, accelerator_type, 1)  # the distill step's precision (bf16 on GPU) is in the key
        views = cached.outputs["outputs"]
        if options.pytorchjob_nodes:
            student = distill_pytorchjob(
                dataset=dataset,
                teacher=teacher_model,
                teacher_outputs=views,
                nodes=options.pytorchjob_nodes,
                gpus_per_node=accelerator_count,
                accelerator_type=accelerator_type,
                pvc_name=options.data_cache_pvc,
                credentials_secret=credentials_secret,
                **common,
            ).set_display_name("distill (PyTorchJob)")
        else:
            student = distill(
                dataset=dataset, teacher=teacher_model, teacher_outputs=views, num_processes=accelerator_count, **common
            )
            student.set_display_name("distill")
            on_gpu_nodes(student, accelerator_type, accelerator_count)
        student.set_retry(**RETRIES).set_caching_options(False)
        check = validate_student(dataset=dataset, teacher=teacher_model, student=student.outputs["student"], **common)
        check.set_display_name("validate student").set_caching_options(False)  # compares with today's champion
        tasks = [prep, teacher, cached, student, check]
        with dsl.If(check.outputs["Output"] == True, name="validation-passed"):  # noqa: E712 - a kfp condition
            promoted = promote(
                dataset=dataset,
                teacher=teacher_model,
                student=student.outputs["student"],
                validation=check.outputs["validation"],
                **common,
            )
            promoted.set_display_name("promote").set_caching_options(False)
            tasks.append(promoted)
        for task in tasks:
            with_cluster_resources(task, options, credentials_secret)

    return distill_pipeline


def compile_pipeline(package_path: Path, default_params_yaml: str, options: Options = Options()) -> Path:
    compiler.Compiler().compile(build(default_params_yaml, options), str(package_path))
    return package_path
