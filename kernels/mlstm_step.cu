// Fused mLSTM step over T tokens (T = 3 per environment step). Launch contract: lram_kernels.cuh.
//
// Work split: thread block (jt, b*NH + hd) owns columns j = 32*jt + threadIdx.x of the head's C matrix;
// threadIdx.y walks rows i = threadIdx.y + NY*r. Its tile of C stays in registers over all T tokens, so C
// is read once and written once per environment step. n (DH floats) and the scalar m are tiny: every
// block recomputes them (needed for the denominator q.n) and block jt == 0 writes them back.
#include "lram_kernels.cuh"

extern "C" __global__ void __launch_bounds__(LRAM_MLSTM_MAX_THREADS) lram_mlstm_step_f32(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ igate, const float* __restrict__ fgate, const float* __restrict__ valid,
    const float* __restrict__ C_in, const float* __restrict__ n_in, const float* __restrict__ m_in,
    int B, int T, int NH, int DH,
    float* __restrict__ h, float* __restrict__ C_out, float* __restrict__ n_out, float* __restrict__ m_out)
{
    extern __shared__ float smem[];
    const int NY = blockDim.y;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * blockDim.x + tx;
    const int nthreads = blockDim.x * blockDim.y;
    const int bh = blockIdx.y;             // b * NH + head
    const int b = bh / NH, hd = bh % NH;
    if (b >= B) return;
    const int j = blockIdx.x * LRAM_MLSTM_TILE + tx;
    const bool jok = j < DH;

    float* q_s = smem;                     // [DH]
    float* k_s = q_s + DH;                 // [DH], already scaled by 1/sqrt(DH)
    float* n_s = k_s + DH;                 // [DH]
    float* red = n_s + DH;                 // [NY][32]
    float* wsum = red + 32 * NY;           // [32] per-warp partial sums of q.n

    const size_t cbase = (size_t)bh * DH * DH;
    float c[LRAM_MLSTM_MAX_ROWS];
#pragma unroll
    for (int r = 0; r < LRAM_MLSTM_MAX_ROWS; ++r) {
        const int i = ty + NY * r;
        c[r] = (jok && i < DH) ? C_in[cbase + (size_t)i * DH + j] : 0.0f;
    }
    for (int i = tid; i < DH; i += nthreads) n_s[i] = n_in[(size_t)bh * DH + i];
    float m = m_in[bh];
    const float kscale_exact = 1.0f / sqrtf((float)DH);

    for (int t = 0; t < T; ++t) {
        const size_t tok = ((size_t)b * T + t) * NH + hd;   // index into [B, T, NH]
        const size_t vec = tok * DH;                         // index into [B, T, NH, DH]
        __syncthreads();                                     // previous token done with q_s/k_s/red/wsum
        for (int i = tid; i < DH; i += nthreads) {
            q_s[i] = q[vec + i];
            k_s[i] = k[vec + i] * kscale_exact;
        }
        const bool ok = valid[(size_t)b * T + t] != 0.0f;
        float fa = 1.0f, ia = 0.0f, m_new = m;
        if (ok) {
            const float ig = igate[tok];
            const float logf = lram_logsigmoid(fgate[tok]);
            m_new = fmaxf(logf + m, ig);
            fa = expf(logf + m - m_new);
            ia = expf(ig - m_new);
        }
        const float vj = jok ? v[vec + j] : 0.0f;
        __syncthreads();

        // C' = f C + i ks v^T on the register tile, and the partial numerator q^T C'[:, j]
        float part = 0.0f;
#pragma unroll
        for (int r = 0; r < LRAM_MLSTM_MAX_ROWS; ++r) {
            const int i = ty + NY * r;
            if (i < DH) {
                c[r] = fa * c[r] + ia * (k_s[i] * vj);
                part += q_s[i] * c[r];
            }
        }
        red[ty * 32 + tx] = part;

        // n' = f n + i ks and q.n'
        float qn = 0.0f;
        for (int i = tid; i < DH; i += nthreads) {
            const float nn = fa * n_s[i] + ia * k_s[i];
            n_s[i] = nn;
            qn += q_s[i] * nn;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) qn += __shfl_xor_sync(0xffffffffu, qn, off);
        if (tx == 0) wsum[ty] = qn;
        __syncthreads();

        if (ty == 0) {
            float qn_all = 0.0f;
            for (int w = 0; w < NY; ++w) qn_all += wsum[w];
            float num = 0.0f;
            for (int w = 0; w < NY; ++w) num += red[w * 32 + tx];
            const float denom = fmaxf(fabsf(qn_all), expf(-m_new)) + 1e-6f;
            if (jok) h[vec + j] = num / denom;
        }
        m = m_new;
    }

#pragma unroll
    for (int r = 0; r < LRAM_MLSTM_MAX_ROWS; ++r) {
        const int i = ty + NY * r;
        if (jok && i < DH) C_out[cbase + (size_t)i * DH + j] = c[r];
    }
    if (blockIdx.x == 0) {
        __syncthreads();
        for (int i = tid; i < DH; i += nthreads) n_out[(size_t)bh * DH + i] = n_s[i];
        if (tid == 0) m_out[bh] = m;
    }
}
