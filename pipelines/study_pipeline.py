"""The accuracy study as a Kubeflow fan-out. The graph:
- prepare;
- for each teacher role: its teacher, then its outputs, once per set of views its runs replay;
- a ``ParallelFor`` over that role's (cell, seed) runs, one GPU pod each;
- a report step that collects every result.

The report step writes the same report, plot and MLflow parent/child runs as ``kdpipe study``.

The plan (:class:`kdpipe.study.plan.Plan`) decides the graph, so it is fixed when compiling, as is
``parallelism``, the most runs at once, and the GPU type (a task inside a ``ParallelFor`` cannot
read a pipeline parameter in its resource request under kfp.local). What a run uses is a pipeline
parameter, as in the nightly pipeline: the params file and overrides, the data reference and the
credentials secret.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from kdpipe.kubeflow import cluster
from kdpipe.kubeflow.params import one_line
from kdpipe.study.cells import GAP_ROLES
from kdpipe.study.plan import MAIN, Plan
from kdpipe_components import prepare_data, study_report, study_run, study_teacher, study_teacher_outputs
from kdpipe_pipelines.distill_pipeline import RETRIES, Options, on_gpu_nodes, with_cluster_resources

PIPELINE_NAME = "kdpipe-study"
COMPILED = Path("artifacts/study_pipeline.yaml")
"""A build output (the plan is compiled in), unlike the nightly pipeline's committed YAML."""


@dataclass(frozen=True)
class StudyOptions:
    """Compile-time choices: the plan, how many runs at once, each run's GPU type, and the command the report
    names."""

    plan: Plan
    command: str
    parallelism: int
    accelerator_type: str = cluster.GPU_RESOURCE
    cluster: Options = field(default_factory=Options)


def build(default_params_yaml: str, options: StudyOptions) -> Any:
    """The study pipeline for ``options.plan``, with ``default_params_yaml`` as its default params."""
    plan, plan_dict = options.plan, options.plan.as_dict()
    cache_dir = cluster.CACHE_PATH if options.cluster.data_cache_pvc else ""
    default_params_yaml = one_line(default_params_yaml)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="The accuracy study: baselines, the projector recipe (Miles & "
        "Mikolajczyk, AAAI 2024), its ablations and the capacity gap.",
    )
    def study_pipeline(
        params_yaml: str = default_params_yaml,
        overrides: list[str] = [],  # noqa: B006 - kfp records the default in the compiled spec
        data_ref: str = "",
        credentials_secret: str = cluster.CREDENTIALS_SECRET,
    ) -> None:
        common = {
            "params_yaml": params_yaml,
            "overrides": overrides,
            "cache_dir": cache_dir,
            "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        }
        prep = prepare_data(data_ref=data_ref, **common).set_display_name("prepare data").set_caching_options(True)
        dataset = prep.outputs["dataset"]
        cpu_tasks, gpu_tasks, records, results = [prep], [], {}, {}
        for role in plan.roles:
            teacher = study_teacher(dataset=dataset, plan=plan_dict, role=role, **common)
            teacher.set_display_name(f"teacher {role} ({plan.archs[role]})")
            views = study_teacher_outputs(
                dataset=dataset, teacher=teacher.outputs["teacher"], plan=plan_dict, role=role, **common
            ).set_display_name(f"teacher outputs {role}")
            with dsl.ParallelFor(plan.runs(role), parallelism=options.parallelism, name=f"runs-{role}") as item:
                run = (
                    study_run(
                        dataset=dataset,
                        teacher=teacher.outputs["teacher"],
                        teacher_outputs=views.outputs["outputs"],
                        plan=plan_dict,
                        run=item,
                        **common,
                    )
                    .set_display_name("run")
                    .set_retry(**RETRIES)
                )
            gpu_tasks += [teacher, views, run]
            records[role] = teacher.outputs["Output"]
            results[role] = dsl.Collected(run.outputs["Output"])
        report = study_report(
            params_yaml=params_yaml,
            overrides=overrides,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            plan=plan_dict,
            command=options.command,
            **{f"{role}_teacher": records.get(role, "") for role in (MAIN, *GAP_ROLES)},
            **{f"{role}_runs": results.get(role, []) for role in (MAIN, *GAP_ROLES)},
        )
        cpu_tasks.append(report.set_display_name("study report"))
        for task in gpu_tasks:
            on_gpu_nodes(task, options.accelerator_type, 1)
        for task in cpu_tasks + gpu_tasks:
            if task is not prep:
                task.set_caching_options(False)  # a registry teacher may move; each run is the study's own
            with_cluster_resources(task, options.cluster, credentials_secret)

    return study_pipeline


def compile_study(package_path: Path, default_params_yaml: str, options: StudyOptions) -> Path:
    package_path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build(default_params_yaml, options), str(package_path))
    return package_path
