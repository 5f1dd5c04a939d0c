"""Which of the multi-node launcher task's settings KFP hands to the job it creates (KFP 2.15's task-config
passthrough): its GPUs, their nodes' tolerations, selector and affinity go to the job's pods and not to the
launcher's own, which requests no GPU; its volumes (the PVC it stages on) and env (the credentials) serve both."""

from kfp import dsl
from kfp.dsl import TaskConfigField

TO_THE_JOB = [
    TaskConfigField.RESOURCES,
    TaskConfigField.KUBERNETES_TOLERATIONS,
    TaskConfigField.KUBERNETES_NODE_SELECTOR,
    TaskConfigField.KUBERNETES_AFFINITY,
    dsl.TaskConfigPassthrough(field=TaskConfigField.ENV, apply_to_task=True),
    dsl.TaskConfigPassthrough(field=TaskConfigField.KUBERNETES_VOLUMES, apply_to_task=True),
]
