"""SPACE+MOC losses: every term reaches the gradients, and each behaves as specified."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from moc_envs.model import ModelConfig, SpaceModel
from trainers.detector.config import LossWeights
from trainers.detector.losses import (
    bernoulli_kl,
    continuity_loss,
    elbo_terms,
    motion_distance,
    motion_terms,
    total_loss,
)

TERMS = (
    "recon",
    "kl_pres",
    "kl_depth",
    "kl_where",
    "kl_what",
    "kl_bg",
    "motion_pres",
    "motion_where",
    "motion_alpha",
    "continuity",
)
ZERO = LossWeights(
    recon=0, kl_pres=0, kl_depth=0, kl_where=0, kl_what=0, kl_bg=0,
    motion=0, motion_pres=0, motion_alpha=0, motion_where=0, continuity=0,
)


def _only(term: str, value: float = 1.0) -> LossWeights:
    if term.startswith("motion_"):
        return dataclasses.replace(ZERO, motion=1.0, **{term: value})
    return dataclasses.replace(ZERO, **{term: value})


@pytest.fixture(scope="module")
def setup():
    """One forward pass of a small model whose cells are all present, on a stack of T=4
    identical frames; the graph is kept so that every weighting backpropagates through it."""
    torch.manual_seed(0)
    model = SpaceModel(ModelConfig(top_k=4))
    with torch.no_grad():
        # Present cells (prob > 0.5) so that continuity and spurious-box terms are active.
        model.encoder.image_encoder.heads.bias[0] = 0.3
    frame = torch.rand(1, 3, 128, 128)
    x = frame.expand(4, -1, -1, -1).contiguous()
    pres = torch.zeros(4, 256)
    pres[:, 40] = 1.0
    where = torch.zeros(4, 256, 4)
    where[:, 40] = torch.tensor([0.05, 0.08, -0.4, -0.6])
    mask = torch.zeros(4, 128, 128)
    mask[:, 10:20, 30:40] = 1.0
    out = model(x)
    terms = elbo_terms(out, 0.1, -2.0, 0.2)
    terms.update(motion_terms(out, pres, where, mask))
    terms["continuity"] = continuity_loss(out, 4, 16)
    return model, terms


def _grads(setup, weights: LossWeights, lam: float = 0.5) -> torch.Tensor:
    model, terms = setup
    params = list(model.parameters())
    total = total_loss(terms, weights, lam)
    grads = torch.autograd.grad(total, params, retain_graph=True, allow_unused=True)
    return torch.cat([
        (g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params, strict=True)
    ])


@pytest.fixture(scope="module")
def full_grads(setup):
    """Gradient of the full loss with every default weight."""
    return _grads(setup, LossWeights())


def test_zero_weights_give_no_gradient(setup):
    assert float(_grads(setup, ZERO).abs().sum()) == 0.0


@pytest.mark.parametrize("term", TERMS)
def test_each_term_reaches_the_gradients(setup, full_grads, term):
    alone = _grads(setup, _only(term))
    assert float(alone.abs().sum()) > 0, f"{term} alone gives no gradient"
    assert float(_grads(setup, _only(term, 0.0)).abs().sum()) == 0.0
    without = _grads(setup, dataclasses.replace(LossWeights(), **{term: 0.0}))
    assert not torch.allclose(full_grads, without), f"removing {term} did not change the gradient"


def test_motion_terms_reach_the_encoder(setup):
    model = setup[0]
    params = dict(model.named_parameters())
    grads = _grads(setup, _only("motion_pres"))
    offset = 0
    seen = {}
    for name, p in params.items():
        seen[name] = grads[offset : offset + p.numel()]
        offset += p.numel()
    assert float(seen["encoder.image_encoder.heads.weight"].abs().sum()) > 0
    assert float(seen["encoder.image_encoder.backbone.0.0.weight"].abs().sum()) > 0


def test_lambda_moves_weight_between_motion_and_continuity(setup):
    w = dataclasses.replace(ZERO, motion=1.0, motion_pres=1.0, continuity=1.0)
    only_motion = _grads(setup, dataclasses.replace(w, continuity=0.0), lam=0.0)
    torch.testing.assert_close(_grads(setup, w, lam=0.0), only_motion)
    only_oc = _grads(setup, dataclasses.replace(w, motion=0.0), lam=1.0)
    torch.testing.assert_close(_grads(setup, w, lam=1.0), only_oc)


def test_bernoulli_kl_values():
    p = torch.tensor([0.1, 0.5, 0.9])
    kl = bernoulli_kl(p, 0.1)
    assert float(kl[0]) == pytest.approx(0.0, abs=1e-6)
    expected = 0.5 * torch.log(torch.tensor(0.5 / 0.1)) + 0.5 * torch.log(torch.tensor(0.5 / 0.9))
    assert float(kl[1]) == pytest.approx(float(expected), rel=1e-5)
    assert float(kl[2]) > float(kl[1]) > 0


def _fake_out(what, idx, prob):
    return SimpleNamespace(what_mean=what, topk_idx=idx, pres_prob=prob)


def test_continuity_rewards_the_most_similar_neighbour():
    # Two frames (one stack, T=2), K=2 decoded cells each, z_what 2-d.
    prob = torch.zeros(2, 256)
    prob[0, [0, 100]] = 0.9
    prob[1, [1, 100]] = 0.9
    idx = torch.tensor([[0, 100], [1, 100]])  # cell 0 moves to cell 1 (a neighbour)
    what = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    loss = continuity_loss(_fake_out(what, idx, prob), seq_len=2, grid=16, beta=4.0)
    # Each of the two objects has one neighbour with similarity 1: 1 - 5 * 1 = -4 each.
    assert float(loss) == pytest.approx(-8.0)
    # A neighbour with a different z_what is not rewarded as much.
    what2 = what.clone()
    what2[1, 0] = torch.tensor([0.0, 1.0])
    worse = continuity_loss(_fake_out(what2, idx, prob), seq_len=2, grid=16, beta=4.0)
    assert float(worse) > float(loss)
    # Absent cells (prob <= 0.5) take no part.
    prob_absent = prob.clone()
    prob_absent[1] = 0.1
    assert float(continuity_loss(_fake_out(what, idx, prob_absent), seq_len=2, grid=16)) == 0.0


def test_continuity_rejects_partial_stacks():
    out = _fake_out(torch.zeros(3, 2, 2), torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 256))
    with pytest.raises(ValueError, match="not a whole number of stacks"):
        continuity_loss(out, seq_len=4, grid=16)


def test_motion_terms_and_distance_are_zero_for_a_perfect_prediction():
    prob = torch.zeros(1, 256)
    prob[0, 7] = 1.0
    where = torch.zeros(1, 256, 4)
    where[0, 7] = torch.tensor([0.1, 0.1, 0.2, -0.3])
    alpha = torch.zeros(1, 1, 128, 128)
    alpha[0, 0, :8, :8] = 1.0
    out = SimpleNamespace(pres_prob=prob, where_mean=where, alpha_map=alpha)
    terms = motion_terms(out, prob.clone(), where.clone(), alpha[:, 0].clone(), pres_loss="mse")
    assert all(float(v) == 0.0 for v in terms.values())
    assert motion_distance(out, prob.clone(), where.clone()) == pytest.approx(0.0)
    # A spurious present cell without a motion object is penalised in L_where and counted.
    prob2 = prob.clone()
    prob2[0, 200] = 0.9
    where2 = where.clone()
    where2[0, 200] = torch.tensor([0.1, 0.1, 0.5, 0.5])
    out2 = SimpleNamespace(pres_prob=prob2, where_mean=where2, alpha_map=alpha)
    terms2 = motion_terms(out2, prob, where, alpha[:, 0], pres_loss="mse")
    assert float(terms2["motion_where"]) == pytest.approx(0.01 + 0.01 + 0.25 + 0.25)
    assert motion_distance(out2, prob, where) == pytest.approx(1.0)


def test_bce_presence_loss_keeps_its_gradient_when_probabilities_collapse():
    logit = torch.full((1, 256), -8.0, requires_grad=True)
    target = torch.zeros(1, 256)
    target[0, 3] = 1.0
    out = SimpleNamespace(
        lat=SimpleNamespace(pres_logit=logit),
        pres_prob=torch.sigmoid(logit),
        where_mean=torch.zeros(1, 256, 4),
        alpha_map=torch.zeros(1, 1, 128, 128),
    )
    target_where = torch.zeros(1, 256, 4)
    mask = torch.zeros(1, 128, 128)
    bce = motion_terms(out, target, target_where, mask, pres_loss="bce")["motion_pres"]
    (g_bce,) = torch.autograd.grad(bce, logit)
    mse = motion_terms(out, target, target_where, mask, pres_loss="mse")["motion_pres"]
    (g_mse,) = torch.autograd.grad(mse, logit)
    assert float(g_bce[0, 3]) == pytest.approx(torch.sigmoid(torch.tensor(-8.0)).item() - 1.0, rel=1e-4)
    assert abs(float(g_mse[0, 3])) < 1e-3  # the squared error's signal has all but vanished
    with pytest.raises(ValueError, match="pres_loss must be"):
        motion_terms(out, target, target_where, mask, pres_loss="l1")
