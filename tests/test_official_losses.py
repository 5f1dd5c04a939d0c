"""dkd, lskd, dist and vkd on a fixed batch against the values the official implementations compute on it.

The batch is a formula (sines and cosines of an index, no random numbers), so it is the same on every machine.
The reference values were computed on 2026-12-07 with torch 2.14.1 (CPU, float32) by running, unchanged, the
official functions at these commits (read with the library's ``fetch``; the official code is not vendored here):

- DKD: megvii-research/mdistiller a08d46f10d6102bd6e3f258ca5ac880b020ea259, ``mdistiller/distillers/DKD.py``
  ``dkd_loss`` (alpha 1, beta 0 for TCKD; alpha 0, beta 1 for NCKD; alpha 1, beta 8 for both; T 4);
- LS-KD: sunshangquan/logit-standardization-KD f6e5aa5172bad618e801163c3385322eea673754,
  ``mdistiller/distillers/KD.py`` ``kd_loss(..., logit_stand=True)`` at T 2 and T 1;
- DIST: hunto/image_classification_sota 6f7a70a1dd57fd88413d83909d3d53243068f701,
  ``lib/models/losses/dist_kd.py`` ``DIST(beta, gamma, tau)`` with (1, 0, 4), (0, 1, 4) and (1, 0, 1);
- VkD: roymiles/vkd 4b480506d10bad9bfaf27b144f5929ad4007472d, the projector as ``train.py`` builds it
  (``orthogonal(nn.Linear(D_s, D_t, bias=False))``, its weight set to the batch's ``q``) and the loss lines of
  ``engine.py`` (``F.smooth_l1_loss(projector(z_s), F.layer_norm(z_t, (D_t,)))``; ``KLDivLoss('batchmean')`` at T 1).
"""

from __future__ import annotations

import pytest
import torch

from kdpipe.distill import Distiller, create_distiller
from kdpipe.distill.normalization import make_norm
from kdpipe.distill.projector import make_projector
from kdpipe.models import create_model

N, K, D_S, D_T = 8, 10, 6, 12
OFFICIAL = {
    ("dkd", "tckd", 4.0): 0.6151857972145081,
    ("dkd", "nckd", 4.0): 5.652617454528809,
    ("dkd", "alpha 1, beta 8", 4.0): 45.836124420166016,
    ("lskd", "kl", 2.0): 0.877065896987915,
    ("lskd", "kl", 1.0): 0.7633322477340698,
    ("dist", "inter", 4.0): 16.609189987182617,
    ("dist", "intra", 4.0): 16.148807525634766,
    ("dist", "inter", 1.0): 1.0398303270339966,
    ("vkd", "feat", 1.0): 0.5931763052940369,
    ("vkd", "kl", 1.0): 2.656031608581543,
}


def _batch() -> tuple[torch.Tensor, ...]:
    i = torch.arange(N * K, dtype=torch.float64)
    s_logits = (3 * torch.sin(0.7 * i + 0.3)).reshape(N, K).float()
    t_logits = (4 * torch.cos(1.3 * i - 0.2)).reshape(N, K).float()
    labels = (torch.arange(N) * 3) % K
    s_feats = torch.sin(0.37 * torch.arange(N * D_S, dtype=torch.float64)).reshape(N, D_S).float()
    t_feats = (2 * torch.cos(0.91 * torch.arange(N * D_T, dtype=torch.float64)) + 0.5).reshape(N, D_T).float()
    return s_feats, s_logits, t_feats, t_logits, labels


def _parts(name: str, **settings: float) -> dict[str, torch.Tensor]:
    d: Distiller = create_distiller(name, create_model("cnn8", K, 1), create_model("cnn16", K, 1), **settings)
    if name == "vkd":  # built as VKD builds them, at the fixed batch's feature sizes
        d.projector = make_projector("orthogonal", D_S, D_T)
        d.norm_teacher = make_norm("layernorm", D_T)
        grid = torch.cos(1.7 * torch.arange(D_T * D_S, dtype=torch.float64)).reshape(D_T, D_S)
        d.projector.weight = torch.linalg.qr(grid).Q.float()
    with torch.no_grad():
        return d.train().loss_parts(*_batch())


def _official(*key: object) -> float:
    return pytest.approx(OFFICIAL[key], rel=1e-5)


def test_dkd_matches_mdistiller_part_by_part_and_with_beta_8() -> None:
    parts = _parts("dkd", alpha=1.0, beta=1.0, temperature=4.0)
    assert parts["tckd"].item() == _official("dkd", "tckd", 4.0)
    assert parts["nckd"].item() == _official("dkd", "nckd", 4.0)
    parts = _parts("dkd", alpha=1.0, beta=8.0, temperature=4.0)
    assert (parts["tckd"] + parts["nckd"]).item() == _official("dkd", "alpha 1, beta 8", 4.0)


@pytest.mark.parametrize("temperature", [2.0, 1.0])
def test_lskd_matches_the_official_logit_standardised_kd(temperature: float) -> None:
    assert _parts("lskd", kl_weight=1.0, temperature=temperature)["kl"].item() == _official("lskd", "kl", temperature)


def test_dist_matches_the_official_inter_and_intra_relations() -> None:
    parts = _parts("dist", inter_weight=1.0, intra_weight=1.0, temperature=4.0)
    assert parts["inter"].item() == _official("dist", "inter", 4.0)
    assert parts["intra"].item() == _official("dist", "intra", 4.0)
    assert _parts("dist", inter_weight=1.0, temperature=1.0)["inter"].item() == _official("dist", "inter", 1.0)


def test_vkd_matches_the_official_feature_and_logit_terms() -> None:
    parts = _parts("vkd", feat_weight=1.0, kl_weight=1.0)  # the official weights: the values are unweighted
    assert parts["feat"].item() == _official("vkd", "feat", 1.0)
    assert parts["kl"].item() == _official("vkd", "kl", 1.0)
