#!/usr/bin/env python3
"""External NumPy reference for one MSA attention layer, checked against `msatrain op msa`.

The layer is written here from ../shared/spec/msa.md (the algorithm) and docs/op_msa.md (the file schema and the
conventions the spec leaves open: RoPE pairing, the weight layouts, the order of the block ids in a selection
row), not from the C++ code. Everything is float64, forward and a hand-written backward.

For each case the script draws random weights and inputs, writes IN.h5, runs `msatrain op msa --in IN.h5
--out OUT.h5` and compares the file with its own results: out, sel, lse, q, k, index.qi, index.ki, the scalars
kl_loss, kl_objective, index_recall, selected_share, and grad/x and every grad/<parameter>. Before that it
checks its own backward against central differences of its own forward (--fd-samples entries per tensor), so
that a gradient mismatch points at the C++ code, not at this file.

Needs numpy and h5py.  Usage:
    python3 tools/msa_reference.py --bin build/msatrain [--keep DIR] [--case NAME ...] [--fd-samples N]
Exit status 0 when every case passes; the last line reads "N passed, M failed".
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

RTOL = 1e-9  # max |msatrain - reference| <= RTOL * max(1, max |reference|), per tensor


# ---- building blocks -------------------------------------------------------------------------------------------
def rotary_dims(fraction, dim):
    """round(fraction * dim), halves away from zero (as the config rule)."""
    return int(math.floor(fraction * dim + 0.5))


def rmsnorm(x, w, eps):
    """y = x / sqrt(mean(x^2) + eps) * w over the last axis; returns y and the 1/rms factor."""
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return x * r * w, r


def rmsnorm_backward(dy, x, w, r):
    """Gradients of y = x r(x) w: dx = r g - x r^3 mean(g x) with g = dy w; dw = sum(dy x r)."""
    g = dy * w
    dx = r * g - x * r ** 3 * np.mean(g * x, axis=-1, keepdims=True)
    dw = (dy * x * r).reshape(-1, x.shape[-1]).sum(axis=0)
    return dx, dw


def rope_tables(seq, rot, theta):
    """cos, sin (T, rot/2) of the angle pos * theta^(-2i/rot), positions 0..T-1."""
    i = np.arange(rot // 2, dtype=np.float64)
    ang = np.arange(seq, dtype=np.float64)[:, None] * theta ** (-2.0 * i / rot)[None, :]
    return np.cos(ang), np.sin(ang)


def rope(x, cos, sin, rot, inverse=False):
    """Half-split rotary embedding of x (B, T, H, D): dims (i, i + rot/2), i < rot/2, turn by the angle; dims
    rot..D-1 pass through. inverse = the transpose rotation (the backward)."""
    half = rot // 2
    c = cos[None, :, None, :]
    s = -sin[None, :, None, :] if inverse else sin[None, :, None, :]
    y = x.copy()
    x1, x2 = x[..., :half], x[..., half:rot]
    y[..., :half] = x1 * c - x2 * s
    y[..., half:rot] = x1 * s + x2 * c
    return y


def masked_softmax(z, mask):
    """softmax and logsumexp of z over the last axis restricted to mask (every row has a True)."""
    zm = np.where(mask, z, -np.inf)
    m = zm.max(axis=-1, keepdims=True)
    e = np.where(mask, np.exp(zm - m), 0.0)
    tot = e.sum(axis=-1, keepdims=True)
    return e / tot, (m + np.log(tot))[..., 0]


# ---- spec §2: selection ----------------------------------------------------------------------------------------
def select_blocks(s, cfg):
    """s (B, Hkv, T, T) token scores -> sel (B, Hkv, T, k) int32: sinks ascending, then the best other blocks by
    descending block score (ties: lower id), the local block last, -1 padding."""
    B, G, T, _ = s.shape
    bs, k, sinks = cfg["block_size"], cfg["topk_blocks"], cfg["sink_blocks"]
    sel = -np.ones((B, G, T, k), dtype=np.int32)
    for b in range(B):
        for g in range(G):
            for t in range(T):
                local = t // bs
                score = {}
                for blk in range(local + 1):
                    vals = s[b, g, t, blk * bs:min((blk + 1) * bs, t + 1)]
                    score[blk] = vals.max() if cfg["score_pool"] == "max" else vals.mean()
                forced = set(range(min(sinks, local + 1)))
                if cfg["force_local"]:
                    forced.add(local)
                others = sorted((c for c in range(local + 1) if c not in forced), key=lambda c: (-score[c], c))
                picks = others[:k - len(forced)]
                row = sorted(c for c in forced if c != local) + [c for c in picks if c != local]
                if local in forced or local in picks:
                    row.append(local)
                sel[b, g, t, :len(row)] = row
    return sel


def selected_mask(sel, block_size, seq):
    """Vis (B, Hkv, T, T): key j visible to query t of group g iff j <= t and j's block is in sel[b, g, t]."""
    blk = np.arange(seq) // block_size
    causal = np.tril(np.ones((seq, seq), dtype=bool))
    hit = (sel[..., :, None] == blk[None, None, None, None, :]).any(axis=-2)  # (B, G, T, T)
    return hit & causal


# ---- the layer -------------------------------------------------------------------------------------------------
def forward(cfg, W, x, dout, frozen_sel=None, frozen_teacher=None):
    """One MSA layer. frozen_* replace the selection / KL teacher (for finite differences under stopgrad)."""
    B, T, C = x.shape
    Hq, Hkv, d, dI = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["index_head_dim"]
    G, eps, theta = Hq // Hkv, cfg["norm_eps"], cfg["rope_theta"]
    grp = np.arange(Hq) // G
    r = {}
    causal = np.tril(np.ones((T, T), dtype=bool))

    # §1 Index Branch (its input is x; stopgrad is a backward matter).
    rI = rotary_dims(cfg["rotary_fraction"], dI)
    cosI, sinI = rope_tables(T, rI, theta)
    r["qi_pre"] = (x @ W["index.wq"].T).reshape(B, T, Hkv, dI)
    r["ki_pre"] = (x @ W["index.wk"].T).reshape(B, T, 1, dI)
    qn, r["qi_r"] = rmsnorm(r["qi_pre"], W["index.q_norm"], eps)
    kn, r["ki_r"] = rmsnorm(r["ki_pre"], W["index.k_norm"], eps)
    r["qi"] = rope(qn, cosI, sinI, rI)
    r["ki"] = rope(kn, cosI, sinI, rI)[:, :, 0, :]
    tau = 1.0 / math.sqrt(dI)
    s = tau * np.einsum("btgd,bjd->bgtj", r["qi"], r["ki"])

    # §2 selection, §3 Main Branch.
    r["sel"] = select_blocks(s, cfg) if frozen_sel is None else frozen_sel
    vis = selected_mask(r["sel"], cfg["block_size"], T)
    sparse = cfg["phase"] == "sparse"
    support = vis if sparse else np.broadcast_to(causal, vis.shape)  # Main Branch and KL support

    rot = rotary_dims(cfg["rotary_fraction"], d)
    cos, sin = rope_tables(T, rot, theta)
    qkv = x @ W["wqkv"].T
    r["q_pre"] = qkv[..., :Hq * d].reshape(B, T, Hq, d)
    r["k_pre"] = qkv[..., Hq * d:(Hq + Hkv) * d].reshape(B, T, Hkv, d)
    r["v"] = qkv[..., (Hq + Hkv) * d:].reshape(B, T, Hkv, d)
    q, k = r["q_pre"], r["k_pre"]
    if cfg["qk_norm"]:
        q, r["q_r"] = rmsnorm(q, W["q_norm"], eps)
        k, r["k_r"] = rmsnorm(k, W["k_norm"], eps)
    r["q"], r["k"] = rope(q, cos, sin, rot), rope(k, cos, sin, rot)
    scale = 1.0 / math.sqrt(d)
    z = scale * np.einsum("bthd,bjhd->bhtj", r["q"], r["k"][:, :, grp, :])  # (B, Hq, T, T)
    r["P"], r["lse"] = masked_softmax(z, support[:, grp])
    r["o"] = np.einsum("bhtj,bjhd->bthd", r["P"], r["v"][:, :, grp, :])
    r["out"] = r["o"].reshape(B, T, Hq * d) @ W["wo"].T
    r["lm"] = float(np.sum(r["out"] * dout))

    # §4 KL alignment: teacher = group mean of the Main Branch's P (a constant), student = softmax of s.
    pbar = r["P"].reshape(B, Hkv, G, T, T).mean(axis=2) if frozen_teacher is None else frozen_teacher
    r["pbar"] = pbar
    r["pi"], _ = masked_softmax(s, support)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pbar = np.log(np.where(pbar > 0, pbar, 1.0))
        log_pi = np.log(np.where(support, r["pi"], 1.0))
        terms = np.where(pbar > 0, pbar * (log_pbar - log_pi), 0.0)
    kl_rows = terms.sum(axis=-1)  # (B, Hkv, T)
    rows = B * T * Hkv
    r["kl_sum"] = float(kl_rows.sum())
    r["kl_loss"] = r["kl_sum"] / rows
    r["kl_grad_coef"] = cfg["kl_coef"] * cfg["kl_weight"] / Hkv
    r["kl_objective"] = r["kl_grad_coef"] * r["kl_sum"]
    r["support"] = support

    # Metrics: dense causal attention mass inside the selected blocks (mean over the group's heads), and the
    # share of causal keys that are selected.
    dense, _ = masked_softmax(z, np.broadcast_to(causal, z.shape))
    inside = (dense * vis[:, grp]).sum(axis=-1)  # (B, Hq, T)
    r["index_recall"] = float(inside.reshape(B, Hkv, G, T).mean(axis=2).mean())
    r["selected_share"] = float((vis.sum(axis=-1) / causal.sum(axis=-1)).mean())
    r["tables"] = (cos, sin, rot, cosI, sinI, rI, tau, scale, grp)
    return r


def backward(cfg, W, x, dout, r):
    """Gradients of sum(out * dout) + kl_objective, with the teacher and the selection constant; the KL term
    reaches x only when detach_index_input is false."""
    B, T, C = x.shape
    Hq, Hkv, d, dI = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["index_head_dim"]
    G = Hq // Hkv
    cos, sin, rot, cosI, sinI, rI, tau, scale, grp = r["tables"]
    g = {}

    # Main Branch: out = o Wo^T, flash-attention backward over its support, rope^T, qk-norm, projection.
    o2 = r["o"].reshape(B, T, Hq * d)
    g["wo"] = np.einsum("btc,bte->ce", dout, o2)
    dO = (dout @ W["wo"]).reshape(B, T, Hq, d)
    P = r["P"]
    dP = np.einsum("bthd,bjhd->bhtj", dO, r["v"][:, :, grp, :])
    D = np.einsum("bthd,bthd->bht", dO, r["o"])
    dZ = P * (dP - D[..., None])
    dq = scale * np.einsum("bhtj,bjhd->bthd", dZ, r["k"][:, :, grp, :])
    dk = (scale * np.einsum("bhtj,bthd->bjhd", dZ, r["q"])).reshape(B, T, Hkv, G, d).sum(axis=3)
    dv = np.einsum("bhtj,bthd->bjhd", P, dO).reshape(B, T, Hkv, G, d).sum(axis=3)
    dq, dk = rope(dq, cos, sin, rot, inverse=True), rope(dk, cos, sin, rot, inverse=True)
    if cfg["qk_norm"]:
        dq, g["q_norm"] = rmsnorm_backward(dq, r["q_pre"], W["q_norm"], r["q_r"])
        dk, g["k_norm"] = rmsnorm_backward(dk, r["k_pre"], W["k_norm"], r["k_r"])
    dqkv = np.concatenate([dq.reshape(B, T, -1), dk.reshape(B, T, -1), dv.reshape(B, T, -1)], axis=-1)
    g["wqkv"] = np.einsum("bte,btc->ec", dqkv, x)
    g["x"] = dqkv @ W["wqkv"]

    # Index Branch: ds = coef (pi - pbar) on the support, through tau, rope^T, rmsnorm, projections.
    ds = np.where(r["support"], r["kl_grad_coef"] * (r["pi"] - r["pbar"]), 0.0)
    dqi = tau * np.einsum("bgtj,bjd->btgd", ds, r["ki"])
    dki = tau * np.einsum("bgtj,btgd->bjd", ds, r["qi"])
    dqn = rope(dqi, cosI, sinI, rI, inverse=True)
    dkn = rope(dki[:, :, None, :], cosI, sinI, rI, inverse=True)
    dq_pre, g["index.q_norm"] = rmsnorm_backward(dqn, r["qi_pre"], W["index.q_norm"], r["qi_r"])
    dk_pre, g["index.k_norm"] = rmsnorm_backward(dkn, r["ki_pre"], W["index.k_norm"], r["ki_r"])
    dq_pre, dk_pre = dq_pre.reshape(B, T, Hkv * dI), dk_pre.reshape(B, T, dI)
    g["index.wq"] = np.einsum("bte,btc->ec", dq_pre, x)
    g["index.wk"] = np.einsum("bte,btc->ec", dk_pre, x)
    if not cfg["detach_index_input"]:
        g["x"] = g["x"] + dq_pre @ W["index.wq"] + dk_pre @ W["index.wk"]
    return g


def param_shapes(cfg):
    C, Hq, Hkv = cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"]
    d, dI = cfg["head_dim"], cfg["index_head_dim"]
    shapes = {"wqkv": ((Hq + 2 * Hkv) * d, C), "wo": (C, Hq * d)}
    if cfg["qk_norm"]:
        shapes.update({"q_norm": (d,), "k_norm": (d,)})
    shapes.update({"index.wq": (Hkv * dI, C), "index.wk": (dI, C), "index.q_norm": (dI,), "index.k_norm": (dI,)})
    return shapes


# ---- self-check of the reference's backward by central differences ---------------------------------------------
def fd_check(cfg, W, x, dout, r, g, samples, rng):
    """Returns a list of failures. Selection and teacher are held at the unperturbed forward's (stopgrad)."""
    sel, teacher = r["sel"], r["pbar"]

    def objective(name, Wp, xp):
        rr = forward(cfg, Wp, xp, dout, frozen_sel=sel, frozen_teacher=teacher)
        if name.startswith("index."):
            return rr["kl_objective"]
        if name == "x" and not cfg["detach_index_input"]:
            return rr["lm"] + rr["kl_objective"]
        return rr["lm"]

    failures = []
    for name in ["x"] + list(W):
        base = x if name == "x" else W[name]
        flat = base.reshape(-1)
        worst = 0.0
        for i in rng.choice(flat.size, size=min(samples, flat.size), replace=False):
            vals = []
            for sign in (1.0, -1.0):
                pert = base.copy()
                pert.reshape(-1)[i] += sign * 1e-6
                vals.append(objective(name, W if name == "x" else {**W, name: pert}, pert if name == "x" else x))
            num = (vals[0] - vals[1]) / 2e-6
            ana = g[name].reshape(-1)[i]
            worst = max(worst, abs(num - ana) / max(1e-4, abs(num), abs(ana)))
        if worst > 1e-5:
            failures.append(f"reference backward vs finite differences: {name} relative error {worst:.2e}")
    return failures


# ---- cases ---------------------------------------------------------------------------------------------------
BASE = dict(d_model=16, n_heads=4, n_kv_heads=2, head_dim=8, rope_theta=10000.0, rotary_fraction=0.5, qk_norm=True,
            norm_eps=1e-5, block_size=4, topk_blocks=3, index_head_dim=8, score_pool="max", force_local=True,
            sink_blocks=1, kl_coef=0.7, detach_index_input=True, phase="sparse")

CASES = {
    # Sparse phase, sinks, max pooling, qk-norm, partial rotation; T = 40 >> k B = 12.
    "sparse": dict(B=2, T=40),
    # Dense warmup: Main Branch and KL over the whole causal prefix; mean pooling; no qk-norm; explicit kl_weight.
    "warmup_mean": dict(B=2, T=33, phase="warmup", score_pool="mean", sink_blocks=0, qk_norm=False,
                        rotary_fraction=1.0, kl_weight=0.05),
    # The KL gradient flows into x; no forced local block; 2 sinks; a partial last block; G = 2 with 3 groups.
    "undetached_nolocal": dict(B=1, T=37, n_heads=6, n_kv_heads=3, head_dim=8, index_head_dim=8, block_size=3,
                               topk_blocks=4, sink_blocks=2, force_local=False, detach_index_input=False,
                               rotary_fraction=0.75),
    # No dout: only the KL gradients (index parameters) are non-zero.
    "no_dout": dict(B=2, T=24, n_heads=8, n_kv_heads=2, dout=False, rope_theta=500.0),
    # T <= k B: every visible block is selected, so MSA is dense causal attention (spec §2 exactness).
    "all_blocks_fit": dict(B=2, T=12, block_size=4, topk_blocks=3, sink_blocks=0),
    # Index key weights zero: every token score is exactly 0, every block ties, and the lower ids win (spec §2).
    "all_ties": dict(B=1, T=30, topk_blocks=4, sink_blocks=0, zero_index_wk=True),
    # kl_coef = 0: the Index Branch gets exactly zero gradient; MHA (n_heads = n_kv_heads).
    "kl_off_mha": dict(B=1, T=20, n_heads=2, n_kv_heads=2, kl_coef=0.0, index_head_dim=4, rotary_fraction=0.5),
}


def make_case(name, seed):
    spec = dict(BASE)
    spec.update(CASES[name])
    B, T = spec.pop("B"), spec.pop("T")
    with_dout = spec.pop("dout", True)
    zero_index_wk = spec.pop("zero_index_wk", False)
    explicit_kl_weight = "kl_weight" in spec
    cfg = dict(spec)
    cfg.setdefault("kl_weight", 1.0 / (B * T))
    rng = np.random.default_rng(seed)
    W = {}
    for pname, shape in param_shapes(cfg).items():
        base = 1.0 if pname.endswith("norm") else 0.0
        W[pname] = base + 0.4 * rng.standard_normal(shape)
    if zero_index_wk:
        W["index.wk"][:] = 0.0
    x = rng.standard_normal((B, T, cfg["d_model"]))
    dout = rng.standard_normal(x.shape) if with_dout else np.zeros(x.shape)
    return cfg, W, x, dout, with_dout, explicit_kl_weight


def write_input(path, cfg, W, x, dout, with_dout, explicit_kl_weight):
    with h5py.File(path, "w") as f:
        for key in ["d_model", "n_heads", "n_kv_heads", "head_dim", "block_size", "topk_blocks", "index_head_dim",
                    "sink_blocks"]:
            f.attrs[key] = int(cfg[key])
        for key in ["rope_theta", "rotary_fraction", "norm_eps", "kl_coef"]:
            f.attrs[key] = float(cfg[key])
        for key in ["qk_norm", "force_local", "detach_index_input"]:
            f.attrs[key] = bool(cfg[key])
        f.attrs["score_pool"] = cfg["score_pool"]
        f.attrs["phase"] = cfg["phase"]
        if explicit_kl_weight:
            f.attrs["kl_weight"] = float(cfg["kl_weight"])
        f["x"] = x
        if with_dout:
            f["dout"] = dout
        for pname, value in W.items():
            f[pname] = value


def compare(name, got, want, failures, report):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        failures.append(f"{name}: shape {got.shape}, reference {want.shape}")
        return
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    bound = RTOL * max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    report.append(f"{name} {err:.1e}")
    if not err <= bound:
        failures.append(f"{name}: max |msatrain - reference| = {err:.3e} > {bound:.1e}")


def run_case(name, args, seed, workdir):
    cfg, W, x, dout, with_dout, explicit = make_case(name, seed)
    r = forward(cfg, W, x, dout)
    g = backward(cfg, W, x, dout, r)
    failures = []
    if args.fd_samples > 0:
        failures += fd_check(cfg, W, x, dout, r, g, args.fd_samples, np.random.default_rng(seed + 1))
    # Spec-level properties the reference itself must show.
    if name == "all_blocks_fit":
        dense_cfg = dict(cfg, phase="warmup")
        rd = forward(dense_cfg, W, x, dout)
        if r["selected_share"] != 1.0 or np.max(np.abs(rd["out"] - r["out"])) > 1e-13:
            failures.append("reference: with T <= k B the sparse layer is not dense attention")
    if name == "all_ties":
        bs, k = cfg["block_size"], cfg["topk_blocks"]
        for t in range(x.shape[1]):
            local = t // bs
            want = list(range(min(local, k - 1))) + [local]
            if list(r["sel"][0, 0, t, :len(want)]) != want:
                failures.append(f"reference: all-tie selection of query {t} is {r['sel'][0, 0, t]}, not {want}")
                break
    if cfg["kl_coef"] == 0.0 and any(np.any(g[p] != 0) for p in g if p.startswith("index.")):
        failures.append("reference: kl_coef = 0 but the Index Branch has gradient")

    inp, out = os.path.join(workdir, f"{name}.in.h5"), os.path.join(workdir, f"{name}.out.h5")
    write_input(inp, cfg, W, x, dout, with_dout, explicit)
    proc = subprocess.run([args.bin, "op", "msa", "--in", inp, "--out", out], capture_output=True, text=True)
    if proc.returncode != 0:
        return failures + [f"msatrain op msa exited {proc.returncode}: {proc.stderr.strip()}"], []
    report = []
    with h5py.File(out, "r") as f:
        sel = f["sel"][()]
        if sel.dtype != np.int32 or not np.array_equal(sel, r["sel"]):
            bad = np.argwhere(sel != r["sel"]) if sel.shape == r["sel"].shape else []
            failures.append(f"sel differs ({sel.dtype}, {len(bad)} entries; first at (b, g, t, slot) = "
                            f"{tuple(bad[0]) if len(bad) else '-'})")
        for key in ["out", "lse", "q", "k", "index.qi", "index.ki"]:
            want = {"lse": r["lse"], "q": r["q"], "k": r["k"], "out": r["out"], "index.qi": r["qi"],
                    "index.ki": r["ki"]}[key]
            compare(key, f[key][()], want, failures, report)
        for key in ["kl_loss", "kl_objective", "index_recall", "selected_share"]:
            compare(key, f.attrs[key], r[key], failures, report)
        compare("kl_weight", f.attrs["kl_weight"], cfg["kl_weight"], failures, report)
        expected_grads = {"x"} | set(W)
        stored = set(f["grad"].keys())
        if stored != expected_grads:
            failures.append(f"grad/ holds {sorted(stored)}, expected {sorted(expected_grads)}")
        for key in sorted(expected_grads & stored):
            compare("grad/" + key, f["grad/" + key][()], g[key], failures, report)
    return failures, report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("MSATRAIN_BIN", "build/msatrain"), help="the msatrain binary")
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases (repeatable)")
    ap.add_argument("--keep", help="write the .h5 files into this folder and keep them")
    ap.add_argument("--fd-samples", type=int, default=4, help="finite-difference entries per tensor (0: skip)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"msa_reference: no msatrain binary at {args.bin} (use --bin)")
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or tmp
        os.makedirs(workdir, exist_ok=True)
        for i, name in enumerate(args.case or list(CASES)):
            failures, report = run_case(name, args, args.seed + 17 * i, workdir)
            status = "FAIL" if failures else "ok"
            print(f"{status:4} {name}: " + ", ".join(report))
            for fl in failures:
                print(f"     {fl}")
            passed, failed = passed + (not failures), failed + bool(failures)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
