"""The projector that maps student features into the teacher's feature space.

``orthogonal`` is VkD's (Miles et al., CVPR 2024): a bias-free linear map kept (semi-)orthogonal by torch's
parametrisation, so it can rotate the student's features but neither stretch nor collapse them.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from kdpipe.infra.factories import Factories

PROJECTORS: Factories[nn.Module] = Factories("projector")


@PROJECTORS.register("linear")
def _linear(d_student: int, d_teacher: int) -> nn.Module:
    return nn.Linear(d_student, d_teacher)


@PROJECTORS.register("mlp")
def _mlp(d_student: int, d_teacher: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d_student, d_teacher),
        nn.BatchNorm1d(d_teacher),
        nn.ReLU(inplace=True),
        nn.Linear(d_teacher, d_teacher),
    )


@PROJECTORS.register("orthogonal")
def _orthogonal(d_student: int, d_teacher: int) -> nn.Module:
    return orthogonal(nn.Linear(d_student, d_teacher, bias=False))


@PROJECTORS.register("none")
def _identity(d_student: int, d_teacher: int) -> nn.Module:
    if d_student != d_teacher:
        raise ValueError(f"projector 'none' needs equal feature sizes, got {d_student} and {d_teacher}")
    return nn.Identity()


def make_projector(kind: str, d_student: int, d_teacher: int) -> nn.Module:
    return PROJECTORS.create(kind, d_student, d_teacher)
