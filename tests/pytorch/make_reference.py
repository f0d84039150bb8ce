#!/usr/bin/python3
"""Reference losses and gradients computed by PyTorch, for tests/pytorch/test_pytorch.cpp.

    /usr/bin/python3 tests/pytorch/make_reference.py      # needs Debian's python3-torch

writes tests/pytorch/data/*.txt: one file per loss family. CI does not have PyTorch: the C++ test
reads only those files. The script is deterministic (fixed seeds); rerunning it rewrites the same
files.

What is computed: for every loss of include/lossjit/losses.hpp, PyTorch's own function where it
has one (F.cross_entropy with weight=, ignore_index=, label_smoothing=, probability targets;
F.kl_div with log_target=False; F.binary_cross_entropy_with_logits with pos_weight=), else the
formula written in torch (z-loss, soft-capping, temperature, distillation, focal, poly-1), always
with PyTorch's reduction and autograd for the gradient. Inputs are float32 values (written
exactly, %.9g); PyTorch computes in float64 from them, so the references are exact to well
below fp32 tolerances.

Shapes: K in {1, 5, 1000}; N = 7 (N = 3 for K = 1000). Data: "random" (logits N(0, 2)), "big"
(logits in [-80, 80], some exactly +-80), "masked" (-inf logits where the target is 0, and one
row whose logits are all -inf). Label losses have row 1 ignored (label -100) unless the case says
otherwise.

Where lossjit deliberately differs from PyTorch the case carries a `differs` line and the
expectations are lossjit's documented semantics, computed with PyTorch on the equivalent batch:
  - every row ignored: PyTorch's mean is 0/0 = NaN; lossjit gives loss 0 and gradient 0.
  - a fully masked row (every logit -inf): PyTorch gives NaN; lossjit skips the row like an
    ignored one (loss 0, gradient 0, not counted). Expected: PyTorch with the row ignored (or,
    for losses without labels, with the row left out of the batch).
  - a target probability 0 against a logit of -inf: PyTorch computes 0 * -inf = NaN; lossjit's
    product is 0 there. Expected: PyTorch with those -inf replaced by -1e4 (exp(-1e4) = 0 in
    float64, so every other value is unchanged).
The line `torch_loss` always holds what PyTorch itself returns on the batch as given.

Format (text, whitespace separated, one item per line):
  data <id>                   a set of inputs, used by the cases after it
  input <name> <dtype> <rows> <cols> <values...>    rows 0: one row shared by all (class weights)
  case <name>
  use <data id>
  loss <function in lossjit::losses>
  param <name> <value>
  extra z_loss                the kernel also outputs also<"z_loss">(losses::z_loss())
  ignore_index <v> | none     (absent: the default, -100)
  weighted_mean <weights>     the mean divides by the sum of weights[label]
  differs <text>
  torch_loss <reduction> <value>
  expect <reduction> loss <value>                 the reduced loss
  expect <reduction> rows <values...>             the per-row losses (reduction none)
  expect <reduction> grad <values...>             the gradient with respect to the logits
  expect <reduction> z_loss <value>               the reduced extra output
  end
"""

import math
import os
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data")
IGNORE = -100
NEG = -1e4  # stands in for -inf where PyTorch would compute 0 * -inf


def fmt(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return "%.9g" % x


def f32(t):
    """Rounds to float32 values, kept as float64 for the computation."""
    return t.to(torch.float32).to(torch.float64)


class Writer:
    def __init__(self, name):
        self.path = os.path.join(OUT, name + ".txt")
        self.lines = ["# PyTorch %s reference for lossjit::losses (tests/pytorch/make_reference.py)" % torch.__version__]
        self.cases = 0

    def data(self, id, inputs):
        self.lines.append("data " + id)
        for name, (t, dtype, shared) in inputs.items():
            rows = 0 if shared else t.shape[0]
            cols = t.shape[-1] if t.dim() > 1 or shared else 1
            vals = " ".join(str(int(v)) if dtype == "i64" else fmt(v) for v in t.reshape(-1).tolist())
            self.lines.append("input %s %s %d %d %s" % (name, dtype, rows, cols, vals))

    def case(self, lines):
        self.lines.extend(lines)
        self.lines.append("end")
        self.cases += 1

    def close(self):
        with open(self.path, "w") as f:
            f.write("\n".join(self.lines) + "\n")
        return self.cases, os.path.getsize(self.path)


# ---- inputs --------------------------------------------------------------------------------

def rows_for(K):
    return 3 if K >= 1000 else 7


def logits(gen, N, K, variant):
    if variant == "big":
        u = (torch.rand(N, K, generator=gen) * 2 - 1) * 80
        u[:, ::3] = 80.0 * torch.sign(u[:, ::3])
        return f32(u)
    return f32(torch.randn(N, K, generator=gen) * 2)


def label_data(K, variant, seed):
    """Logits and labels; row 1 ignored; masked: -inf off the label, row 2 all -inf."""
    gen = torch.Generator().manual_seed(seed)
    N = rows_for(K)
    u = logits(gen, N, K, variant)
    y = torch.randint(0, K, (N,), generator=gen)
    w = f32(torch.rand(K, generator=gen) * 1.8 + 0.2)
    masked_rows = []
    if variant == "masked":
        drop = torch.rand(N, K, generator=gen) < 0.4
        drop[torch.arange(N), y] = False
        u[drop] = -math.inf
        u[2, :] = -math.inf
        masked_rows = [2]
    y[1] = IGNORE
    return u, y, w, masked_rows


def soft_data(K, variant, seed):
    """Logits and target probabilities (0 where the logit is -inf); masked: row 2 all -inf."""
    gen = torch.Generator().manual_seed(seed)
    N = rows_for(K)
    u = logits(gen, N, K, variant)
    p = torch.rand(N, K, generator=gen) ** 3
    masked_rows = []
    if variant == "masked":
        drop = torch.rand(N, K, generator=gen) < 0.4
        drop[:, 0] = False  # every row keeps a class
        u[drop] = -math.inf
        p[drop] = 0
        u[2, :] = -math.inf
        masked_rows = [2]
    p = f32(p / p.sum(1, keepdim=True))
    return u, p, masked_rows


# ---- one case ------------------------------------------------------------------------------

def run(fn, u, red):
    """fn(u, red) -> torch loss (a scalar, or rows for none); returns (value, rows or None, grad)."""
    x = u.clone().requires_grad_(True)
    out = fn(x, red)
    total = out.sum() if red == "none" else out
    total.backward()
    g = x.grad.detach().clone()
    if red == "none":
        return out.sum().item(), out.detach(), g
    return out.item(), None, g


def emit_case(w, name, data_id, loss, params, u, fn, lossjit_fn=None, masked=(), differs=None, extra=None, settings=(),
              grads=True, reductions=("none", "sum", "mean")):
    """One case over every reduction. fn computes PyTorch's loss on the batch as given;
    lossjit_fn (default fn) on the equivalent batch lossjit's semantics describe; `masked` rows
    are lossjit's skipped rows (their expected loss and gradient are 0)."""
    lj = lossjit_fn or fn
    lines = ["case " + name, "use " + data_id, "loss " + loss]
    lines += ["param %s %s" % (k, fmt(v)) for k, v in params]
    lines += list(settings)
    if extra:
        lines.append("extra z_loss")
    if differs:
        lines.append("differs " + differs)
    for red in reductions:
        t, _, _ = run(fn, u, red)
        lines.append("torch_loss %s %s" % (red, fmt(t)))
        v, rows, g = run(lj, u, red)
        for r in masked:
            g[r] = 0
            if rows is not None:
                rows[r] = 0
        lines.append("expect %s loss %s" % (red, fmt(v)))
        if rows is not None:
            lines.append("expect %s rows %s" % (red, " ".join(fmt(x) for x in rows.tolist())))
        # K = 1000: the gradient of the mean only (the files stay small); K <= 5: every reduction
        if grads and (u.shape[1] < 1000 or red == "mean"):
            lines.append("expect %s grad %s" % (red, " ".join(fmt(x) for x in g.reshape(-1).tolist())))
        if extra:
            lines.append("expect %s z_loss %s" % (red, fmt(extra(u, red))))
    w.case(lines)


def reduce_rows(rows, red, keep, denom=None):
    """PyTorch's convention for formula losses: none (ignored rows 0), sum, mean over kept rows."""
    rows = torch.where(keep, rows, torch.zeros_like(rows))
    if red == "none":
        return rows
    if red == "sum":
        return rows.sum()
    return rows.sum() / (keep.sum() if denom is None else denom)


def ignored_too(y, masked):
    yy = y.clone()
    for r in masked:
        yy[r] = IGNORE
    return yy


# ---- label losses --------------------------------------------------------------------------

def label_losses():
    w = Writer("label_losses")
    for K in (1, 5, 1000):
        for variant in ("random", "big", "masked"):
            if K == 1000 and variant == "big":
                continue
            u, y, wt, masked = label_data(K, variant, seed=100 * K + len(variant))
            did = "labels_K%d_%s" % (K, variant)
            w.data(did, {"u": (u, "f32", False), "y": (y, "i64", False), "w": (wt, "f32", True)})
            ym = ignored_too(y, masked)
            keep = ym != IGNORE
            yc = ym.clamp(min=0)
            diff = "a fully masked row (row 2): PyTorch gives NaN, lossjit skips the row (loss 0, gradient 0, not counted)" if masked else None

            def case(name, loss, params, fn_of_labels, extra=None, settings=(), maskable=True, **kw):
                # maskable: the loss has a logsumexp of the logits, -inf for a fully masked row
                # (soft-capping has not: cap * tanh(-inf / cap) = -cap, as in PyTorch)
                emit_case(w, "%s/K%d/%s" % (name, K, variant), did, loss, params, u, lambda x, red: fn_of_labels(x, red, y),
                          (lambda x, red: fn_of_labels(x, red, ym)) if maskable else None, masked if maskable else (),
                          diff if maskable else None, extra, settings, **kw)

            case("cross_entropy", "cross_entropy", [], lambda x, red, yy: F.cross_entropy(x, yy, reduction=red))
            case("weighted_cross_entropy", "weighted_cross_entropy", [],
                 lambda x, red, yy: F.cross_entropy(x, yy, weight=wt, reduction=red), settings=["weighted_mean w"])
            case("label_smoothing", "label_smoothing_cross_entropy", [("label_smoothing", 0.1)],
                 lambda x, red, yy: F.cross_entropy(x, yy, label_smoothing=0.1, reduction=red))
            case("weighted_label_smoothing", "weighted_label_smoothing_cross_entropy", [("label_smoothing", 0.2)],
                 lambda x, red, yy: F.cross_entropy(x, yy, weight=wt, label_smoothing=0.2, reduction=red), settings=["weighted_mean w"])

            # z-loss (no PyTorch function): scale * logsumexp(u)^2 per row, ignored rows excluded
            def zrows(x, yy, scale):
                return scale * torch.logsumexp(x, 1) ** 2

            def ce_z(x, red, yy):
                k = yy != IGNORE
                rows = F.cross_entropy(x, yy, reduction="none") + zrows(x, yy, 1e-3)
                return reduce_rows(rows, red, k)

            def z_only(x, red, yy):
                return reduce_rows(zrows(x, yy, 1e-3), red, yy != IGNORE)

            case("cross_entropy_with_z_loss", "cross_entropy_with_z_loss", [("z_loss", 1e-3)], ce_z,
                 extra=lambda x, red: z_only(x, red, ym) if red != "none" else z_only(x, "sum", ym))
            # z-loss alone has no label: no row is ignored (a fully masked row still is skipped)
            keep_lj = torch.ones(u.shape[0], dtype=torch.bool)
            for r in masked:
                keep_lj[r] = False
            emit_case(w, "z_loss/K%d/%s" % (K, variant), did, "z_loss", [("z_loss", 1e-3)], u,
                      lambda x, red: reduce_rows(zrows(x, None, 1e-3), red, torch.ones(u.shape[0], dtype=torch.bool)),
                      lambda x, red: reduce_rows(zrows(x, None, 1e-3), red, keep_lj), masked, diff)

            for cap in (30.0, 2.0):
                case("softcap%g" % cap, "softcapped_cross_entropy", [("softcap", cap)],
                     lambda x, red, yy, cap=cap: F.cross_entropy(cap * torch.tanh(x / cap), yy, reduction=red), maskable=False)
            for T in (2.0, 0.5):
                case("temperature%g" % T, "tempered_cross_entropy", [("temperature", T)],
                     lambda x, red, yy, T=T: F.cross_entropy(x / T, yy, reduction=red))

            # focal (no PyTorch function): -(1 - p_y)^gamma log p_y, with 1 - p_y = -expm1(log p_y)
            # so that autograd stays finite where p_y is near 1 (the naive form is NaN there), and
            # kept >= 1e-300 where p_y is exactly 1 in float64 (K = 1): the gradient's limit, 0
            for gamma in (0.0, 0.5, 2.0):
                def focal(x, red, yy, gamma=gamma):
                    k = yy != IGNORE
                    lp = F.log_softmax(x, 1).gather(1, yy.clamp(min=0)[:, None])[:, 0]
                    lp = torch.where(k, lp, torch.zeros_like(lp))
                    rows = -(torch.clamp(-torch.expm1(lp), min=1e-300) ** gamma) * lp
                    return reduce_rows(rows, red, k)
                case("focal%g" % gamma, "focal", [("gamma", gamma)], focal)

            def poly1(x, red, yy):
                k = yy != IGNORE
                ce = F.cross_entropy(x, yy, reduction="none")
                py = F.softmax(x, 1).gather(1, yy.clamp(min=0)[:, None])[:, 0]
                return reduce_rows(ce + 1.0 * (1 - py), red, k)
            case("poly1", "poly1_cross_entropy", [("poly_epsilon", 1.0)], poly1)

            if variant == "random":
                # every row ignored: PyTorch's mean is NaN, lossjit's 0 (a deliberate difference)
                ya = torch.full_like(y, IGNORE)
                w.data(did + "_all_ignored", {"u": (u, "f32", False), "y": (ya, "i64", False), "w": (wt, "f32", True)})
                zero = lambda x, red: (x * 0).sum(1) if red == "none" else (x * 0).sum()
                emit_case(w, "cross_entropy/K%d/all_ignored" % K, did + "_all_ignored", "cross_entropy", [], u,
                          lambda x, red: F.cross_entropy(x, ya, reduction=red), zero,
                          differs="every row ignored: PyTorch's mean is NaN (0/0), lossjit gives loss 0 and gradient 0")
                emit_case(w, "weighted_label_smoothing/K%d/all_ignored" % K, did + "_all_ignored",
                          "weighted_label_smoothing_cross_entropy", [("label_smoothing", 0.2)], u,
                          lambda x, red: F.cross_entropy(x, ya, weight=wt, label_smoothing=0.2, reduction=red), zero,
                          differs="every row ignored: PyTorch's mean is NaN (0/0), lossjit gives loss 0 and gradient 0",
                          settings=["weighted_mean w"])
                # no ignore_index: every label valid
                yv = y.clone()
                yv[1] = 0
                w.data(did + "_valid", {"u": (u, "f32", False), "y": (yv, "i64", False)})
                emit_case(w, "cross_entropy/K%d/no_ignore_index" % K, did + "_valid", "cross_entropy", [], u,
                          lambda x, red: F.cross_entropy(x, yv, reduction=red), settings=["ignore_index none"])
                # another ignore_index: class 0 (rows labelled 0 are ignored)
                if K > 1:
                    emit_case(w, "cross_entropy/K%d/ignore_index_0" % K, did + "_valid", "cross_entropy", [], u,
                              lambda x, red: F.cross_entropy(x, yv, ignore_index=0, reduction=red), settings=["ignore_index 0"])
    return w.close()


# ---- probability targets: soft cross-entropy, KL, distillation ------------------------------

def soft_losses():
    w = Writer("soft_losses")
    for K in (1, 5, 1000):
        for variant in ("random", "big", "masked"):
            if K == 1000 and variant == "big":
                continue
            u, p, masked = soft_data(K, variant, seed=200 * K + len(variant))
            did = "probs_K%d_%s" % (K, variant)
            w.data(did, {"u": (u, "f32", False), "p": (p, "f32", False)})
            keep = torch.ones(u.shape[0], dtype=torch.bool)
            for r in masked:
                keep[r] = False
            un = torch.where(torch.isinf(u) & (u < 0), torch.full_like(u, NEG), u)  # -inf -> -1e4

            def lossjit_batch(fn):
                # PyTorch on the kept rows (a fully masked row is left out) with -inf -> -1e4
                def g(x, red):
                    xs = torch.where(torch.isinf(x) & (x < 0), torch.full_like(x, NEG), x)
                    out = fn(xs[keep], p[keep], red)
                    if red != "none":
                        return out
                    full = torch.zeros(x.shape[0], dtype=out.dtype)
                    return full.index_put((keep.nonzero()[:, 0],), out)
                return g

            notes = []
            if variant == "masked":
                notes = ["targets 0 against logits -inf: PyTorch computes 0 * -inf = NaN, lossjit's product is 0",
                         "a fully masked row (row 2): PyTorch gives NaN, lossjit skips it (not counted)"]
            diff = "; ".join(notes) or None

            def soft_ce(x, pp, red):
                return F.cross_entropy(x, pp, reduction=red)

            def kl(x, pp, red):
                r = {"none": "none", "sum": "sum", "mean": "batchmean"}[red]
                out = F.kl_div(F.log_softmax(x, 1), pp, reduction=r, log_target=False)
                return out.sum(1) if red == "none" else out

            for name, loss, fn in (("soft_cross_entropy", "soft_cross_entropy", soft_ce), ("kl_divergence", "kl_divergence", kl)):
                emit_case(w, "%s/K%d/%s" % (name, K, variant), did, loss, [], u, lambda x, red, fn=fn: fn(x, p, red),
                          lossjit_batch(fn), masked, diff,
                          settings=["note mean = PyTorch's batchmean"] if name == "kl_divergence" else ())

            # distillation: T^2 KL(softmax(t / T) || softmax(s / T)), gradient w.r.t. s
            gen = torch.Generator().manual_seed(300 * K + len(variant))
            t = logits(gen, u.shape[0], K, variant)
            if variant == "masked":
                t = torch.where(torch.isinf(u), torch.full_like(t, -math.inf), t)  # the teacher masks the same classes
                t[2] = f32(torch.randn(K, generator=gen))  # row 2: the student's logits are all -inf
            did2 = "distill_K%d_%s" % (K, variant)
            w.data(did2, {"s": (u, "f32", False), "t": (t, "f32", False)})
            for T in (2.0, 1.0):
                def distill(x, tt, red, T=T):
                    r = {"none": "none", "sum": "sum", "mean": "batchmean"}[red]
                    out = F.kl_div(F.log_softmax(x / T, 1), F.softmax(tt / T, 1), reduction=r, log_target=False) * T * T
                    return out.sum(1) if red == "none" else out

                def distill_lj(x, red, distill=distill):
                    xs = torch.where(torch.isinf(x) & (x < 0), torch.full_like(x, NEG), x)
                    out = distill(xs[keep], t[keep], red)
                    if red != "none":
                        return out
                    full = torch.zeros(x.shape[0], dtype=out.dtype)
                    return full.index_put((keep.nonzero()[:, 0],), out)
                emit_case(w, "distillation_T%g/K%d/%s" % (T, K, variant), did2, "distillation_kl", [("temperature", T)], u,
                          lambda x, red, distill=distill: distill(x, t, red), distill_lj, masked, diff,
                          settings=["note mean = PyTorch's batchmean"])
    return w.close()


# ---- binary cross-entropy with logits ------------------------------------------------------

def bce_losses():
    w = Writer("bce_losses")
    for K in (1, 5, 1000):
        for variant in ("random", "big"):
            gen = torch.Generator().manual_seed(400 * K + len(variant))
            N = rows_for(K)
            u = logits(gen, N, K, variant)
            kind = torch.rand(N, K, generator=gen)
            tg = f32(torch.where(kind < 0.3, torch.zeros(N, K), torch.where(kind < 0.6, torch.ones(N, K), torch.rand(N, K, generator=gen))))
            pw = f32(torch.rand(K, generator=gen) * 2.5 + 0.5)
            did = "bce_K%d_%s" % (K, variant)
            w.data(did, {"u": (u, "f32", False), "targets": (tg, "f32", False), "pos_weight": (pw, "f32", True)})

            # lossjit's row is the mean over the row's K labels: PyTorch's none is averaged over
            # dim 1, PyTorch's sum is lossjit's sum times K, PyTorch's mean is lossjit's mean
            def bce(x, red, pos_weight):
                if red == "none":
                    return F.binary_cross_entropy_with_logits(x, tg, pos_weight=pos_weight, reduction="none").mean(1)
                if red == "sum":
                    return F.binary_cross_entropy_with_logits(x, tg, pos_weight=pos_weight, reduction="sum") / K
                return F.binary_cross_entropy_with_logits(x, tg, pos_weight=pos_weight, reduction="mean")
            note = ["note lossjit's row loss is the mean over its K labels: none = PyTorch's none averaged over the row, sum = PyTorch's sum / K, mean = PyTorch's mean"]
            emit_case(w, "bce_pos_weight/K%d/%s" % (K, variant), did, "binary_cross_entropy_with_logits", [], u,
                      lambda x, red: bce(x, red, pw), settings=note)
            emit_case(w, "bce/K%d/%s" % (K, variant), did, "binary_cross_entropy", [], u,
                      lambda x, red: bce(x, red, None), settings=note)
    return w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    total_cases = total_bytes = 0
    for make in (label_losses, soft_losses, bce_losses):
        cases, size = make()
        total_cases += cases
        total_bytes += size
    print("%d cases, %.2f MB in %s" % (total_cases, total_bytes / 1e6, OUT))


if __name__ == "__main__":
    sys.exit(main())
