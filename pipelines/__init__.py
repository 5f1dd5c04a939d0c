"""Kubeflow pipelines of kdpipe: the DAG of the five steps, compiled to ``distill_pipeline.yaml``."""
