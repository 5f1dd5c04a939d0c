"""dkd, lskd, dist and vkd against their formulas written out here in float64, and the identities each paper rests on.

The formulas are spelled from the papers, not from kdpipe's code: DKD by renormalised probabilities (kdpipe works
in log space), LS-KD's z-score by its definition, DIST's Pearson by ``torch.corrcoef``, VkD's layer norm and smooth
L1 by hand. ``tests/test_official_losses.py`` checks the same losses against the official repositories' values.
"""

from __future__ import annotations

import pytest
import torch

from kdpipe.distill import Distiller, create_distiller
from kdpipe.models import create_model

N, K = 16, 10
TOL = {"rtol": 1e-5, "atol": 1e-6}


def _distiller(name: str, **settings: float) -> Distiller:
    torch.manual_seed(0)
    return create_distiller(name, create_model("cnn8", K, 1), create_model("cnn16", K, 1), **settings).train()


def _inputs(d: Distiller) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(3)
    s_feats = torch.randn(N, d.student.feature_dim, generator=gen) * 0.5 + 0.2
    t_feats = torch.randn(N, d.teacher.feature_dim, generator=gen) * 1.5 - 0.3
    s_logits = torch.randn(N, K, generator=gen) * 2
    t_logits = torch.randn(N, K, generator=gen) * 5
    labels = torch.randint(0, K, (N,), generator=gen)
    return s_feats, s_logits, t_feats, t_logits, labels


def _softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z - z.max(1, keepdim=True).values)
    return e / e.sum(1, keepdim=True)


def _kl_rows(p_t: torch.Tensor, p_s: torch.Tensor) -> torch.Tensor:
    """sum_c p_t log(p_t / p_s), per row."""
    return (p_t * (torch.log(p_t) - torch.log(p_s))).sum(1)


def _ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -torch.log(_softmax(z)[torch.arange(len(y)), y]).mean()


def _close(parts: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(parts) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(parts[name].double(), value, **TOL, msg=name)


def _dkd_terms(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, temp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the binary KL of [p(y), 1 - p(y)] and the KL of the other classes' renormalised probabilities."""
    p_s, p_t = _softmax(s / temp), _softmax(t / temp)
    rows = torch.arange(len(y))
    b_s = torch.stack([p_s[rows, y], 1 - p_s[rows, y]], 1)
    b_t = torch.stack([p_t[rows, y], 1 - p_t[rows, y]], 1)
    keep = torch.ones_like(p_s, dtype=torch.bool)
    keep[rows, y] = False
    q_s = p_s[keep].view(len(y), -1) / b_s[:, 1:]
    q_t = p_t[keep].view(len(y), -1) / b_t[:, 1:]
    return _kl_rows(b_t, b_s) * temp**2, _kl_rows(q_t, q_s) * temp**2


@pytest.mark.parametrize("settings", [{}, {"alpha": 0.5, "beta": 2.0, "temperature": 1.5, "ce_weight": 0.3}])
def test_dkd_is_alpha_times_the_target_kl_plus_beta_times_the_non_target_kl(settings: dict[str, float]) -> None:
    """Defaults are the tuning's choice on val: alpha 1, beta 1, T 4, CE 1 (mdistiller's CIFAR-100 beta is 8)."""
    d = _distiller("dkd", **settings)
    cfg = d.cfg
    assert settings or (cfg.alpha, cfg.beta, cfg.temperature, cfg.ce_weight) == (1.0, 1.0, 4.0, 1.0)
    s_feats, s_logits, t_feats, t_logits, labels = _inputs(d)
    parts = d.loss_parts(s_feats, s_logits, t_feats, t_logits, labels)
    s, t = s_logits.double(), t_logits.double()
    tckd, nckd = _dkd_terms(s, t, labels, cfg.temperature)
    _close(
        parts,
        {"ce": cfg.ce_weight * _ce(s, labels), "tckd": cfg.alpha * tckd.mean(), "nckd": cfg.beta * nckd.mean()},
    )


def test_dkd_with_beta_set_to_one_minus_the_teachers_target_probability_is_classic_kd() -> None:
    """The paper's decomposition, per sample: KD = TCKD + (1 - p_t[y]) * NCKD (Zhao et al., eq. 4)."""
    d_dkd, d_kd = _distiller("dkd", temperature=3.0), _distiller("kd", temperature=3.0, kl_weight=1.0)
    s_feats, s_logits, t_feats, t_logits, labels = _inputs(d_dkd)
    p_t = _softmax(t_logits.double() / 3.0)[torch.arange(N), labels]
    for i in range(N):
        row = slice(i, i + 1)
        dkd = d_dkd.loss_parts(s_feats[row], s_logits[row], t_feats[row], t_logits[row], labels[row])
        kd = d_kd.loss_parts(s_feats[row], s_logits[row], t_feats[row], t_logits[row], labels[row])
        expected = dkd["tckd"].double() + (1 - p_t[i]) * dkd["nckd"].double() / d_dkd.cfg.beta
        torch.testing.assert_close(kd["kl"].double(), expected, **TOL)


def _z_score(z: torch.Tensor) -> torch.Tensor:
    mean = z.sum(1, keepdim=True) / z.shape[1]
    std = torch.sqrt(((z - mean) ** 2).sum(1, keepdim=True) / (z.shape[1] - 1))
    return (z - mean) / std


def test_lskd_is_kd_on_each_samples_z_scored_logits() -> None:
    """At the official CIFAR-100 settings (T 2 after standardising, KL x 9, CE x 0.1), so that the temperature
    counts; the defaults are the tuning's choice on val: T 1, KL x 0.5, CE x 0.5."""
    tuned = _distiller("lskd").cfg
    assert (tuned.temperature, tuned.kl_weight, tuned.ce_weight) == (1.0, 0.5, 0.5)
    d = _distiller("lskd", temperature=2.0, kl_weight=9.0, ce_weight=0.1)
    s_feats, s_logits, t_feats, t_logits, labels = _inputs(d)
    parts = d.loss_parts(s_feats, s_logits, t_feats, t_logits, labels)
    s, t = s_logits.double(), t_logits.double()
    kl = _kl_rows(_softmax(_z_score(t) / 2.0), _softmax(_z_score(s) / 2.0)).mean() * 2.0**2
    _close(parts, {"ce": 0.1 * _ce(s, labels), "kl": 9.0 * kl})


def test_lskd_ignores_the_scale_and_shift_of_either_models_logits() -> None:
    """What standardising buys: a teacher 3x as confident, or a student shifted by 5, gives the same KL term."""
    d = _distiller("lskd")
    s_feats, s_logits, t_feats, t_logits, labels = _inputs(d)
    base = d.loss_parts(s_feats, s_logits, t_feats, t_logits, labels)["kl"]
    moved = d.loss_parts(s_feats, s_logits + 5.0, t_feats, 3.0 * t_logits - 1.0, labels)["kl"]
    torch.testing.assert_close(moved, base, rtol=1e-4, atol=1e-5)


def _pearson_each(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.corrcoef(torch.stack([x, y]))[0, 1] for x, y in zip(a, b, strict=True)])


@pytest.mark.parametrize("settings", [{}, {"inter_weight": 0.5, "intra_weight": 3.0, "temperature": 1.0}])
def test_dist_is_one_minus_the_mean_pearson_over_samples_and_over_classes(settings: dict[str, float]) -> None:
    """Defaults are the tuning's choice on val: inter 0.5, intra 0.5, tau 1, CE 1 (the official CIFAR strategy,
    ``dist_t4`` with KD weight 2, is inter 2, intra 2, tau 4)."""
    d = _distiller("dist", **settings)
    cfg = d.cfg
    assert settings or (cfg.inter_weight, cfg.intra_weight, cfg.temperature, cfg.ce_weight) == (0.5, 0.5, 1.0, 1.0)
    s_feats, s_logits, t_feats, t_logits, labels = _inputs(d)
    parts = d.loss_parts(s_feats, s_logits, t_feats, t_logits, labels)
    tau = cfg.temperature
    y_s, y_t = _softmax(s_logits.double() / tau), _softmax(t_logits.double() / tau)
    inter = (1 - _pearson_each(y_s, y_t).mean()) * tau**2
    intra = (1 - _pearson_each(y_s.T, y_t.T).mean()) * tau**2
    _close(
        parts,
        {
            "ce": cfg.ce_weight * _ce(s_logits.double(), labels),
            "inter": cfg.inter_weight * inter,
            "intra": cfg.intra_weight * intra,
        },
    )


def test_dist_is_zero_when_the_student_ranks_like_the_teacher() -> None:
    """Pearson ignores scale: a student whose probabilities are the teacher's has no relation loss left."""
    d = _distiller("dist")
    s_feats, _, t_feats, t_logits, labels = _inputs(d)
    parts = d.loss_parts(s_feats, t_logits.clone(), t_feats, t_logits, labels)
    assert parts["inter"].item() == pytest.approx(0.0, abs=1e-5)
    assert parts["intra"].item() == pytest.approx(0.0, abs=1e-5)


def _smooth_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    gap = (a - b).abs()
    return torch.where(gap < 1, 0.5 * gap**2, gap - 0.5).mean()


def test_vkd_is_smooth_l1_from_the_orthogonal_projection_to_the_layer_normed_teacher_plus_kl_and_ce() -> None:
    """Defaults are the tuning's choice on val: feature weight 4, KL and CE 0.5, T 1 (the official ones are all 1);
    the projector has no bias and orthonormal columns (D_s < D_t here), the teacher side is standardised per sample
    (eps 1e-5), the student's side is not."""
    d = _distiller("vkd")
    cfg = d.cfg
    assert (cfg.feat_weight, cfg.kl_weight, cfg.ce_weight, cfg.temperature) == (4.0, 0.5, 0.5, 1.0)
    w = d.projector.weight.detach().double()
    assert w.shape == (d.teacher.feature_dim, d.student.feature_dim) and d.projector.bias is None
    torch.testing.assert_close(w.T @ w, torch.eye(w.shape[1], dtype=torch.float64), rtol=0, atol=1e-5)
    s_feats, s_logits, t_feats, t_logits, labels = _inputs(d)
    parts = d.loss_parts(s_feats, s_logits, t_feats, t_logits, labels)
    zt = t_feats.double()
    mean = zt.mean(1, keepdim=True)
    ln = (zt - mean) / torch.sqrt(((zt - mean) ** 2).mean(1, keepdim=True) + 1e-5)
    s, t = s_logits.double(), t_logits.double()
    _close(
        parts,
        {
            "ce": 0.5 * _ce(s, labels),
            "kl": 0.5 * _kl_rows(_softmax(t), _softmax(s)).mean(),
            "feat": 4.0 * _smooth_l1(s_feats.double() @ w.T, ln),
        },
    )


@pytest.mark.parametrize("name", ["dkd", "lskd", "dist", "vkd"])
def test_gradients_reach_the_student_and_the_projector_never_the_teacher(name: str) -> None:
    d = _distiller(name)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, K, (8,))
    d(x, y).loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.student.parameters())
    assert any(p.grad.abs().sum() > 0 for p in d.student.parameters())
    own = [p for n, p in d.named_parameters() if not n.startswith(("student.", "teacher."))]
    assert bool(own) == (name == "vkd")
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in own)
    assert all(not p.requires_grad and p.grad is None for p in d.teacher.parameters())


def test_vkds_checkpointed_projector_loads_back_to_the_same_orthogonal_map_and_loss() -> None:
    """Its projector is a parametrised module: a checkpoint holds the parametrisation's ``original``, not the
    weight, and resuming must rebuild the same map (and so the same loss) from it."""
    trained = _distiller("vkd")
    with torch.no_grad():
        for p in trained.projector.parameters():
            p.add_(0.3)
    state = trained.trainable_state_dict()
    assert any("parametrizations.weight.original" in k for k in state)
    torch.manual_seed(5)
    fresh = create_distiller("vkd", create_model("cnn8", K, 1), create_model("cnn16", K, 1)).train()
    fresh.teacher.load_state_dict(trained.teacher.state_dict())
    fresh.load_trainable_state_dict(state)
    torch.testing.assert_close(fresh.projector.weight, trained.projector.weight, rtol=0, atol=0)
    inputs = _inputs(trained)
    assert torch.equal(fresh.loss_parts(*inputs)["feat"], trained.loss_parts(*inputs)["feat"])
