// Fused sLSTM step over T tokens (T = 3 per environment step). Launch contract: lram_kernels.cuh.
//
// One thread block per (batch row, head). Per token: Ry = R_head (4DH x DH) @ h_head with one warp per
// output row (lanes stride the contiguous DH axis, coalesced), then the pointwise stabilised update for the
// head's DH units. h, c, n, m live in shared memory across the T tokens (read once, written once).
#include "lram_kernels.cuh"

extern "C" __global__ void lram_slstm_step_f32(
    const float* __restrict__ wx, const float* __restrict__ valid,
    const float* __restrict__ h_in, const float* __restrict__ c_in, const float* __restrict__ n_in,
    const float* __restrict__ m_in, const float* __restrict__ R, const float* __restrict__ bias,
    int B, int T, int NH, int DH,
    float* __restrict__ y, float* __restrict__ h_out, float* __restrict__ c_out, float* __restrict__ n_out,
    float* __restrict__ m_out)
{
    extern __shared__ float smem[];
    const int bh = blockIdx.x;
    const int b = bh / NH, hd = bh % NH;
    if (b >= B) return;
    const int H = NH * DH;
    const int tid = threadIdx.x, nthreads = blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nwarps = nthreads >> 5;

    float* h_s = smem;          // [DH]
    float* c_s = h_s + DH;      // [DH]
    float* n_s = c_s + DH;      // [DH]
    float* m_s = n_s + DH;      // [DH]
    float* ry = m_s + DH;       // [4 * DH]

    const size_t sbase = (size_t)b * H + (size_t)hd * DH;
    for (int u = tid; u < DH; u += nthreads) {
        h_s[u] = h_in[sbase + u];
        c_s[u] = c_in[sbase + u];
        n_s[u] = n_in[sbase + u];
        m_s[u] = m_in[sbase + u];
    }
    const float* Rh = R + (size_t)hd * 4 * DH * DH;

    for (int t = 0; t < T; ++t) {
        __syncthreads();
        const size_t ybase = ((size_t)b * T + t) * H + (size_t)hd * DH;
        if (valid[(size_t)b * T + t] == 0.0f) {          // block-uniform branch
            for (int u = tid; u < DH; u += nthreads) y[ybase + u] = h_s[u];
            continue;
        }
        for (int row = warp; row < 4 * DH; row += nwarps) {
            const float* Rr = Rh + (size_t)row * DH;
            float acc = 0.0f;
            for (int d = lane; d < DH; d += 32) acc += Rr[d] * h_s[d];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
            if (lane == 0) ry[row] = acc;
        }
        __syncthreads();
        const size_t xbase = ((size_t)b * T + t) * 4 * H + (size_t)hd * DH;
        const size_t bbase = (size_t)hd * DH;
        for (int u = tid; u < DH; u += nthreads) {
            const float iraw = wx[xbase + 0 * H + u] + ry[0 * DH + u] + bias[bbase + 0 * H + u];
            const float fraw = wx[xbase + 1 * H + u] + ry[1 * DH + u] + bias[bbase + 1 * H + u];
            const float zraw = wx[xbase + 2 * H + u] + ry[2 * DH + u] + bias[bbase + 2 * H + u];
            const float oraw = wx[xbase + 3 * H + u] + ry[3 * DH + u] + bias[bbase + 3 * H + u];
            const float n = n_s[u], m = m_s[u];
            const float logfplusm = m + lram_logsigmoid(fraw);
            const float m_new = (n == 0.0f) ? iraw : fmaxf(iraw, logfplusm);
            const float ig = fminf(expf(iraw - m_new), 1.0f);
            const float fg = fminf(expf(logfplusm - m_new), 1.0f);
            const float og = 1.0f / (1.0f + expf(-oraw));
            const float c_new = fg * c_s[u] + ig * tanhf(zraw);
            const float n_new = fg * n + ig;
            const float h_new = og * c_new / n_new;
            c_s[u] = c_new; n_s[u] = n_new; m_s[u] = m_new; h_s[u] = h_new;
            y[ybase + u] = h_new;
        }
    }
    __syncthreads();
    for (int u = tid; u < DH; u += nthreads) {
        h_out[sbase + u] = h_s[u];
        c_out[sbase + u] = c_s[u];
        n_out[sbase + u] = n_s[u];
        m_out[sbase + u] = m_s[u];
    }
}
