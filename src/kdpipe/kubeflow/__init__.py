"""Kubeflow Pipelines glue: what turns kfp artifacts into params and back, and talks to a cluster.

The components in ``components/`` and the pipeline in ``pipelines/`` stay declarations; every
piece of behaviour they need lives here, importable and testable without a cluster.
"""
