"""`kdpipe study`: the evidence that the recipe is worth it, reproducible and resumable.

On the prepared data set, with one fixed teacher and one training budget (params.yaml's), the
student is trained under every cell of :mod:`kdpipe.study.cells` with several seeds, then a table,
a plot and the results are written and, when tracking is on, logged to MLflow. Finished runs are
kept; rerunning the same command continues an interrupted study, and once every run is finished
it only rewrites the report and logs what MLflow does not have yet. ``--tune``, ``--confirm``, ``--gap``
and ``--budget`` are the study's other phases (:mod:`kdpipe.study.phases`).

Where things are: the command line (:mod:`~kdpipe.study.cli_args`); what a study runs (``plan``, ``phases``,
``cells``, ``grids``, ``budget``); running it on one machine (:mod:`~kdpipe.study.orchestrator`, with the tasks
and their worker pool in ``tasks`` and the threads each worker gets in ``threads``) or as Kubeflow tasks
(:mod:`~kdpipe.study.fanout`); one run or teacher, trained and measured (``runner``, ``measure``); the evidence
(``summary``, ``report``, ``paired``, ``stability``, ``tuning``, ``robustness_comparison``) and its MLflow runs
(``mlflow_log``).
"""

from kdpipe.study.cli_args import add_arguments, run_from_args
from kdpipe.study.orchestrator import run_study

__all__ = ["add_arguments", "run_from_args", "run_study"]
