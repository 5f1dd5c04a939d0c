"""The projector that maps student features into the teacher's feature space."""

from __future__ import annotations

from torch import nn


def make_projector(kind: str, d_student: int, d_teacher: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(d_student, d_teacher)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(d_student, d_teacher), nn.BatchNorm1d(d_teacher), nn.ReLU(inplace=True), nn.Linear(d_teacher, d_teacher)
        )
    if kind == "none":
        if d_student != d_teacher:
            raise ValueError(f"projector 'none' needs equal feature sizes, got {d_student} and {d_teacher}")
        return nn.Identity()
    raise ValueError(f"unknown projector {kind!r}")
