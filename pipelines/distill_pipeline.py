"""The nightly pipeline: prepare -> teacher -> teacher outputs -> distill (GPU) -> validate -> [passed] promote.

Run-time choices are pipeline parameters (the params file, overrides, the data reference, the
accelerator type and count, the credentials secret). What a cluster offers is chosen when compiling
(:class:`Options`): a PVC for the data cache and checkpoints, and the multi-node job (a Kubeflow Trainer v2
TrainJob, or a Training Operator PyTorchJob); what the run asks
of it (timeouts, CPU and memory, pod labels, the run's deadline and TTL) comes from the compiled params'
``kubeflow:`` section.
"""

from dataclasses import dataclass
from pathlib import Path

from kfp import compiler, dsl, kubernetes

from kdpipe.config import KubeflowConfig
from kdpipe.infra.errors import KdpipeError
from kdpipe.kubeflow import cluster
from kdpipe.kubeflow.multinode import TrainingApi
from kdpipe.kubeflow.params import one_line, step_params
from kdpipe.kubeflow.run_end import SECRET_ENV
from kdpipe_components import (
    distill,
    distill_multinode,
    evaluate_teacher,
    prepare_data,
    promote,
    run_end,
    teacher_outputs,
    validate_student,
)

PIPELINE_NAME = "kdpipe-distill"
COMPILED = Path(__file__).with_name("distill_pipeline.yaml")
RETRIES = {"num_retries": 3, "backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "3600s"}


@dataclass(frozen=True)
class Options:
    """Compile-time choices. ``nodes`` > 0 runs distill as a multi-node job on that many nodes, through
    ``training_api`` (trainjob: Kubeflow Trainer v2; pytorchjob: Training Operator 1.9)."""

    data_cache_pvc: str | None = None
    nodes: int = 0
    training_api: TrainingApi = "trainjob"

    def check(self) -> None:
        if self.nodes and not self.data_cache_pvc:
            raise KdpipeError("--nodes needs --data-cache-pvc: the job's pods share data through it")


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


def bounded(task: dsl.PipelineTask, step: str, cfg: KubeflowConfig) -> None:
    """``step``'s timeout, every task's CPU and memory request and limit, and the pod labels."""
    kubernetes.set_timeout(task, getattr(cfg.timeouts_s, step))
    task.set_cpu_request(cfg.cpu_request).set_memory_request(cfg.memory_request)
    if cfg.cpu_limit:
        task.set_cpu_limit(cfg.cpu_limit)
    if cfg.memory_limit:
        task.set_memory_limit(cfg.memory_limit)
    for key, value in cfg.labels.items():
        kubernetes.add_pod_label(task, key, value)


def build(default_params_yaml: str, options: Options = Options()) -> dsl.graph_component.GraphComponent:
    """The pipeline, with ``default_params_yaml`` (a params.yaml's text) as its default params."""
    options.check()
    cache_dir = cluster.CACHE_PATH if options.data_cache_pvc else ""
    default_params_yaml = one_line(default_params_yaml)
    cfg = step_params(default_params_yaml, []).kubeflow

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Distil a teacher into a student with the projector recipe "
        "(Miles & Mikolajczyk, AAAI 2024) and promote it when it is better.",
        pipeline_config=dsl.PipelineConfig(
            ttl_seconds_after_finished=cfg.ttl_s, active_deadline_seconds=cfg.run_deadline_s
        ),
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
        ending = run_end(**common).set_display_name("run end").set_caching_options(False)
        kubernetes.use_secret_as_env(ending, credentials_secret, {SECRET_ENV: SECRET_ENV}, optional=True)
        if options.data_cache_pvc:  # where the run's scratch directories are tidied
            kubernetes.mount_pvc(ending, pvc_name=options.data_cache_pvc, mount_path=cluster.CACHE_PATH)
        with dsl.ExitHandler(ending, name="nightly-run"):
            prep = prepare_data(data_ref=data_ref, **common).set_display_name("prepare data")
            prep.set_caching_options(True)
            dataset = prep.outputs["dataset"]
            teacher = evaluate_teacher(dataset=dataset, **common).set_display_name("evaluate teacher")
            teacher.set_caching_options(False)  # a registry teacher alias may move while the inputs stay the same
            teacher_model = teacher.outputs["teacher"]
            cached = teacher_outputs(
                dataset=dataset,
                teacher=teacher_model,
                nodes=options.nodes or 1,
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
            if options.nodes:
                student = distill_multinode(
                    dataset=dataset,
                    teacher=teacher_model,
                    cached=views,
                    nodes=options.nodes,
                    gpus_per_node=accelerator_count,
                    training_api=options.training_api,
                    accelerator_type=accelerator_type,
                    pvc_name=options.data_cache_pvc,
                    credentials_secret=credentials_secret,
                    **common,
                )
                label = "TrainJob" if options.training_api == "trainjob" else "PyTorchJob"
                student.set_display_name(f"distill ({label})")
                # the job's GPUs and nodes, handed to it by the task-config passthrough (the launcher requests none)
                on_gpu_nodes(student, accelerator_type, accelerator_count)
            else:
                student = distill(
                    dataset=dataset,
                    teacher=teacher_model,
                    teacher_outputs=views,
                    num_processes=accelerator_count,
                    accelerator_type=accelerator_type,  # recorded on the student (and so an input of the group)
                    **common,
                )
                student.set_display_name("distill")
                on_gpu_nodes(student, accelerator_type, accelerator_count)
            student.set_retry(**RETRIES).set_caching_options(False)
            check = validate_student(
                dataset=dataset, teacher=teacher_model, student=student.outputs["student"], **common
            )
            check.set_display_name("validate student").set_caching_options(False)  # compares with today's champion
            tasks = {"prepare_data": prep, "evaluate_teacher": teacher, "teacher_outputs": cached, "distill": student}
            tasks["validate_student"] = check
            with dsl.If(check.outputs["Output"] == True, name="validation-passed"):  # noqa: E712 - a kfp condition
                promoted = promote(
                    dataset=dataset,
                    teacher=teacher_model,
                    student=student.outputs["student"],
                    validation=check.outputs["validation"],
                    **common,
                )
                promoted.set_display_name("promote").set_caching_options(False)
                tasks["promote"] = promoted
        for step, task in tasks.items():
            with_cluster_resources(task, options, credentials_secret)
            bounded(task, step, cfg)
        bounded(ending, "run_end", cfg)

    return distill_pipeline


def compile_pipeline(package_path: Path, default_params_yaml: str, options: Options = Options()) -> Path:
    compiler.Compiler().compile(build(default_params_yaml, options), str(package_path))
    return package_path
