"""Fused recurrent step kernels in Triton: one launch advances one xLSTM block by T <= 4 tokens.

An environment step feeds T = 3 tokens (r_{t-1}, s_t, R_t). fp32 everywhere, dense row-major, batch first,
the xlstm layouts. ``kernels/reference.py`` is the same math in NumPy; the tests run these kernels on the
CPU with the Triton interpreter against it, and ``kernels/build.py`` compiles them ahead of time to PTX and
cubins for Orin (sm_87), Hopper (sm_90) and Thor (sm_110).

Launch contract (also the order of the TensorRT AOT plugin: inputs, int32 scalars, outputs)::

    lram_mlstm_step_f32(q, k, v [B,T,NH,DH], igate, fgate [B,T,NH], valid [B,T], C [B,NH,DH,DH], n [B,NH,DH,1],
               m [B,NH,1,1], B, T, NH, DH, h [B,T,NH,DH], C', n', m')
        grid (ceil(DH / MLSTM_BV), B * NH), MLSTM_WARPS warps
    lram_slstm_step_f32(wx [B,T,4H] (gate-major i,f,z,o; head; dh), valid [B,T], h, c, n, m [B,H],
               R [NH,4DH,DH] (vanilla layout), bias [4H], B, T, NH, DH, y [B,T,H], h', c', n', m')
        grid (NH, ceil(B / SLSTM_BB)), SLSTM_WARPS warps

valid[b, t] == 0 skips token t: the state passes through unchanged and the token's output is computed from
the unchanged state (the reward token of an episode's first step). k is scaled by 1/sqrt(DH) inside the
kernel. Outputs must not alias inputs (ping-pong the state buffers): programs of one launch read the input
state while others write the output state.

How the work is split, and why
------------------------------
mLSTM. The state of a head is the DH x DH matrix C (C[i, j]: i indexes k, j indexes v) plus n [DH] and the
scalar m. The update C' = f C + i k v^T and the readout h_j = q . C'[:, j] / max(|q . n'|, e^-m) never mix
value columns: column j of C' and h_j need column j of C and nothing else of it. So a program owns a strip
of MLSTM_BV = 16 value columns of one (batch row, head): grid (ceil(DH / 16), B * NH). For the 16M preset
at batch 1 (NH 4, DH 256) that is 64 programs, 4 per SM on an Orin AGX (16 SMs), 8 per SM on an Orin NX;
a head-per-program split (as NX-AI's generation kernel does at small batch) would give 4. The strip is
walked in chunks of MLSTM_BK = 64 rows; each chunk of C is loaded once, carried through all T tokens in
registers and stored once (C is read once and written once per environment step), and the chunk's
contribution to every token's numerator q_t . C_t[:, j] and denominator q_t . n_t is accumulated in a
[T_MAX, BV] / [T_MAX] register tile. The gate scalars (stabiliser m_t, f and i factors) depend only on the
head's gates, so every program recomputes them (a few flops) instead of synchronising. Row chunking keeps
the register tile at 64 x 16 floats whatever DH is (64 up to 640 in the presets): no variant per head size,
no spills. q and k are re-read by the DH/16 programs of a head (from L2; about 6/16 of C's bytes).
The program with column strip 0 also writes n' and m'.

sLSTM. Token t+1's recurrent pre-activations R h_t need every unit of the head's h_t, so a head's T tokens
are a sequential chain that one program must own: splitting a head across programs would need a grid-wide
barrier per token, which neither a plain launch nor TensorRT's AOT plugin launch offers. A program owns one
head for SLSTM_BB = 4 batch rows: grid (NH, ceil(B / 4)); the rows share every load of R (4 DH x DH per
head, the bulk of the bytes). Per token it walks the head's units in chunks of SLSTM_BU = 32 (all four
gates of a unit together, then the pointwise stabilised update) and the recurrent matvec in chunks of
SLSTM_BD = 16 inputs. The new h of token t goes to y[:, t], where token t+1 reads it after a CTA barrier
(h_{t} must stay intact until every unit of token t is computed); c, n, m go to their outputs.

Numerics: no libdevice (the interpreter cannot run extern calls): log1p and tanh are written with exp/log
(absolute error below 1e-7). On a GPU Triton lowers exp/log/division to the fast approximate PTX
instructions, so GPU results differ from the interpreter's NumPy ones at about 1e-6 relative;
kernels/gpu_check.py holds the GPU to 1e-5 against the float64 reference.

``TRITON_INTERPRET=1`` must be set before triton is first imported to run these on a CPU.
"""
from __future__ import annotations

import triton
import triton.language as tl

T_MAX = 4  # tokens per launch (3 per environment step); tokens t >= T are masked off
MLSTM_BK, MLSTM_BV, MLSTM_WARPS = 64, 16, 4
SLSTM_BB, SLSTM_BU, SLSTM_BD, SLSTM_WARPS = 4, 32, 16, 4


@triton.jit
def lram_mlstm_step_f32(q, k, v, igate, fgate, valid, C_in, n_in, m_in,
                        B, T, NH, DH,
                        h, C_out, n_out, m_out,
                        BK: tl.constexpr, BV: tl.constexpr, TMAX: tl.constexpr):
    pid_v = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)  # b * NH + head
    b = bh // NH
    hd = bh % NH
    cols = pid_v * BV + tl.arange(0, BV)
    cmask = cols < DH
    scale = 1.0 / tl.sqrt(DH.to(tl.float32))
    writer = pid_v == 0  # the program that also writes n' and m'
    # (masks combine a vector with a scalar condition through a bound, never `vector & scalar`: the
    # interpreter of Triton 3.9 turns that into int32 and rejects it as a mask)
    n_lim = tl.where(writer, DH, 0)

    # gate scalars per token: they depend only on the head's gates and m, so every program recomputes them
    m = tl.load(m_in + bh)
    fa_t = ()  # tuples: Triton's frontend has no list.append
    ia_t = ()
    m_t = ()
    for t in tl.static_range(TMAX):
        live = t < T
        ok = tl.load(valid + b * T + t, mask=live, other=0.0) != 0.0  # tokens t >= T: not ok
        tok = (b * T + t) * NH + hd
        ig = tl.load(igate + tok, mask=live, other=0.0)
        fg = tl.load(fgate + tok, mask=live, other=0.0)
        logf = tl.minimum(fg, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(fg)))  # exact log sigmoid, finite at -40
        m_new = tl.where(ok, tl.maximum(logf + m, ig), m)
        fa_t = fa_t + (tl.where(ok, tl.exp(logf + m - m_new), 1.0),)
        ia_t = ia_t + (tl.where(ok, tl.exp(ig - m_new), 0.0),)
        m_t = m_t + (m_new,)
        m = m_new

    trow = tl.arange(0, TMAX)
    num = tl.full([TMAX, BV], 0.0, tl.float32)  # q_t . C_t[:, cols], summed over row chunks
    qn = tl.full([TMAX], 0.0, tl.float32)  # q_t . n_t
    cbase = bh * DH * DH
    for k0 in range(0, DH, BK):
        rows = k0 + tl.arange(0, BK)
        rmask = rows < DH
        tile = rmask[:, None] & cmask[None, :]
        c = tl.load(C_in + cbase + rows[:, None] * DH + cols[None, :], mask=tile, other=0.0)
        nv = tl.load(n_in + bh * DH + rows, mask=rmask, other=0.0)
        for t in tl.static_range(TMAX):
            if t < T:  # tokens beyond T cost nothing
                vec = ((b * T + t) * NH + hd) * DH
                qt = tl.load(q + vec + rows, mask=rmask, other=0.0)
                kt = tl.load(k + vec + rows, mask=rmask, other=0.0) * scale
                vt = tl.load(v + vec + cols, mask=cmask, other=0.0)
                c = fa_t[t] * c + ia_t[t] * (kt[:, None] * vt[None, :])
                nv = fa_t[t] * nv + ia_t[t] * kt
                num = tl.where(trow[:, None] == t, num + tl.sum(qt[:, None] * c, axis=0)[None, :], num)
                qn = tl.where(trow == t, qn + tl.sum(qt * nv, axis=0), qn)
        tl.store(C_out + cbase + rows[:, None] * DH + cols[None, :], c, mask=tile)
        tl.store(n_out + bh * DH + rows, nv, mask=rows < n_lim)

    for t in tl.static_range(TMAX):
        den = tl.maximum(tl.abs(tl.sum(tl.where(trow == t, qn, 0.0), axis=0)), tl.exp(-m_t[t])) + 1e-6  # reference.EPS
        ht = tl.sum(tl.where(trow[:, None] == t, num, 0.0), axis=0) / den
        tl.store(h + ((b * T + t) * NH + hd) * DH + cols, ht, mask=cols < tl.where(t < T, DH, 0))
    tl.store(m_out + bh, m, mask=writer)


@triton.jit
def lram_slstm_step_f32(wx, valid, h_in, c_in, n_in, m_in, R, bias,
                        B, T, NH, DH,
                        y, h_out, c_out, n_out, m_out,
                        BB: tl.constexpr, BU: tl.constexpr, BD: tl.constexpr):
    hd = tl.program_id(0).to(tl.int64)
    brow = tl.program_id(1) * BB + tl.arange(0, BB).to(tl.int64)
    bmask = brow < B
    H = NH * DH
    Rh = R + hd * 4 * DH * DH
    for t in range(0, T):
        # vector limits for "from the input state" (t == 0) and "from this launch's outputs" (t > 0)
        lim_in = tl.where(t == 0, DH, 0)
        lim_out = tl.where(t > 0, DH, 0)
        ok = (tl.load(valid + brow * T + t, mask=bmask, other=0.0) != 0.0)[:, None]
        ybase = (brow * T + t) * H + hd * DH  # [BB]
        yprev = (brow * T + t - 1) * H + hd * DH
        for u0 in range(0, DH, BU):
            u = u0 + tl.arange(0, BU)
            umask = u < DH
            acc_i = tl.full([BB, BU], 0.0, tl.float32)
            acc_f = tl.full([BB, BU], 0.0, tl.float32)
            acc_z = tl.full([BB, BU], 0.0, tl.float32)
            acc_o = tl.full([BB, BU], 0.0, tl.float32)
            for d0 in range(0, DH, BD):
                d = d0 + tl.arange(0, BD)
                dmask = d < DH
                # h before token t: the input state for t == 0, else what this program wrote to y[:, t-1]
                hp = tl.load(h_in + brow[:, None] * H + hd * DH + d[None, :],
                             mask=bmask[:, None] & (d < lim_in)[None, :], other=0.0) \
                    + tl.load(y + yprev[:, None] + d[None, :], mask=bmask[:, None] & (d < lim_out)[None, :], other=0.0)
                hp3 = hp[:, None, :]
                rm = umask[:, None] & dmask[None, :]
                roff = u[:, None] * DH + d[None, :]
                acc_i += tl.sum(hp3 * tl.load(Rh + 0 * DH * DH + roff, mask=rm, other=0.0)[None, :, :], axis=2)
                acc_f += tl.sum(hp3 * tl.load(Rh + 1 * DH * DH + roff, mask=rm, other=0.0)[None, :, :], axis=2)
                acc_z += tl.sum(hp3 * tl.load(Rh + 2 * DH * DH + roff, mask=rm, other=0.0)[None, :, :], axis=2)
                acc_o += tl.sum(hp3 * tl.load(Rh + 3 * DH * DH + roff, mask=rm, other=0.0)[None, :, :], axis=2)
            um = bmask[:, None] & umask[None, :]
            xo = (brow * T + t)[:, None] * 4 * H + hd * DH + u[None, :]
            bo = hd * DH + u
            iraw = tl.load(wx + xo, mask=um, other=0.0) + acc_i + tl.load(bias + bo, mask=umask, other=0.0)[None, :]
            fraw = tl.load(wx + xo + H, mask=um, other=0.0) + acc_f \
                + tl.load(bias + H + bo, mask=umask, other=0.0)[None, :]
            zraw = tl.load(wx + xo + 2 * H, mask=um, other=0.0) + acc_z \
                + tl.load(bias + 2 * H + bo, mask=umask, other=0.0)[None, :]
            oraw = tl.load(wx + xo + 3 * H, mask=um, other=0.0) + acc_o \
                + tl.load(bias + 3 * H + bo, mask=umask, other=0.0)[None, :]
            so = brow[:, None] * H + hd * DH + u[None, :]
            um_in = bmask[:, None] & (u < lim_in)[None, :]
            um_out = bmask[:, None] & (u < lim_out)[None, :]
            h_old = tl.load(h_in + so, mask=um_in, other=0.0) \
                + tl.load(y + yprev[:, None] + u[None, :], mask=um_out, other=0.0)
            c_old = tl.load(c_in + so, mask=um_in, other=0.0) + tl.load(c_out + so, mask=um_out, other=0.0)
            n_old = tl.load(n_in + so, mask=um_in, other=0.0) + tl.load(n_out + so, mask=um_out, other=0.0)
            m_old = tl.load(m_in + so, mask=um_in, other=0.0) + tl.load(m_out + so, mask=um_out, other=0.0)
            logfm = m_old + tl.minimum(fraw, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(fraw)))
            m_new = tl.where(n_old == 0.0, iraw, tl.maximum(iraw, logfm))
            i_g = tl.minimum(tl.exp(iraw - m_new), 1.0)
            f_g = tl.minimum(tl.exp(logfm - m_new), 1.0)
            o_g = 1.0 / (1.0 + tl.exp(-oraw))
            e2 = tl.exp(-2.0 * tl.abs(zraw))
            tanh_z = tl.where(zraw < 0.0, -1.0, 1.0) * (1.0 - e2) / (1.0 + e2)
            c_new = f_g * c_old + i_g * tanh_z
            n_new = f_g * n_old + i_g
            h_new = o_g * c_new / n_new
            h_new = tl.where(ok, h_new, h_old)
            tl.store(y + ybase[:, None] + u[None, :], h_new, mask=um)
            tl.store(h_out + so, h_new, mask=um)
            tl.store(c_out + so, tl.where(ok, c_new, c_old), mask=um)
            tl.store(n_out + so, tl.where(ok, n_new, n_old), mask=um)
            tl.store(m_out + so, tl.where(ok, m_new, m_old), mask=um)
        tl.debug_barrier()  # y[:, t] and c/n/m of every unit written before token t+1 reads them


# ---------------------------------------------------------------------------------------------------------
# launch geometry and argument lists: shared by the interpreter runs, the GPU check and the TensorRT plugins
# ---------------------------------------------------------------------------------------------------------
MLSTM_INPUTS = ("q", "k", "v", "igate", "fgate", "valid", "C", "n", "m")
MLSTM_OUTPUTS = ("h", "C_out", "n_out", "m_out")
SLSTM_INPUTS = ("wx", "valid", "h", "c", "n", "m", "R", "bias")
SLSTM_OUTPUTS = ("y", "h_out", "c_out", "n_out", "m_out")
SCALARS = ("B", "T", "NH", "DH")

KERNELS = {  # name -> (jit function, inputs, outputs, constexprs, num_warps)
    "mlstm_step": (lram_mlstm_step_f32, MLSTM_INPUTS, MLSTM_OUTPUTS, dict(BK=MLSTM_BK, BV=MLSTM_BV, TMAX=T_MAX),
                   MLSTM_WARPS),
    "slstm_step": (lram_slstm_step_f32, SLSTM_INPUTS, SLSTM_OUTPUTS, dict(BB=SLSTM_BB, BU=SLSTM_BU, BD=SLSTM_BD),
                   SLSTM_WARPS),
}


def cdiv(a, b):
    """ceil(a / b) for ints and for symbolic dimension expressions (TensorRT's have + and //)."""
    return (a + (b - 1)) // b


def mlstm_grid(B, NH, DH) -> tuple:
    return (cdiv(DH, MLSTM_BV), B * NH, 1)


def slstm_grid(B, NH) -> tuple:
    return (NH, cdiv(B, SLSTM_BB), 1)


class LaunchError(ValueError):
    pass


def check_tokens(T) -> None:
    if not 1 <= int(T) <= T_MAX:
        raise LaunchError(f"the step kernels take 1 to {T_MAX} tokens per launch, got T = {T}")


def run_mlstm(q, k, v, igate, fgate, valid, C, n, m, h, C_out, n_out, m_out) -> None:
    """Launch mlstm_step on torch tensors (CUDA, or CPU under TRITON_INTERPRET=1)."""
    B, T, NH, DH = (int(x) for x in q.shape)
    check_tokens(T)
    fn, _, _, const, warps = KERNELS["mlstm_step"]
    fn[mlstm_grid(B, NH, DH)[:2]](q, k, v, igate, fgate, valid, C, n, m, B, T, NH, DH, h, C_out, n_out, m_out,
                                  num_warps=warps, **const)


def run_slstm(wx, valid, h, c, n, m, R, bias, y, h_out, c_out, n_out, m_out) -> None:
    """Launch slstm_step on torch tensors (CUDA, or CPU under TRITON_INTERPRET=1)."""
    B, T, _ = (int(x) for x in wx.shape)
    NH, _, DH = (int(x) for x in R.shape)
    check_tokens(T)
    fn, _, _, const, warps = KERNELS["slstm_step"]
    fn[slstm_grid(B, NH)[:2]](wx, valid, h, c, n, m, R, bias, B, T, NH, DH, y, h_out, c_out, n_out, m_out,
                              num_warps=warps, **const)
