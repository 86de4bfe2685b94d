/* The native flavour's mLSTM cell: one environment step (a chunk of T tokens) of the stabilised mLSTM for every
 * (robot, head), in ONE pass over the matrix memory C.
 *
 * The math is export/cells.py::mlstm_cell, line for line (same stabiliser, same episode-reset fold: valid0 = 0
 * means token 0 is the skipped reward token of an episode start and the carried-in C, n, m count as zero).
 * Why native: ONNX Runtime's fused LinearAttention walks the state about four times per chunk (copy, decay,
 * rank-1 update per token, readout) and the standard-op chain about seven; here each row of C is read once,
 * gives the T readouts q_t^T C and is written once as fT C + sum_j kw_j v_j^T. The state never enters ONNX
 * Runtime: runtime/backend_native.py runs the graph's ONNX segments around these calls.
 *
 * Buffers are C-contiguous float32: q, k, v, h [B, T, NH, DH]; igate, fgate [B, T, NH]; valid0 [B];
 * C [B, NH, DH, DH]; n [B, NH, DH, 1]; m [B, NH, 1, 1]. Outputs are written, inputs never are.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#if defined(__AVX__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#define NEG (-1e30f)
#define TMAX 8

static inline float logsigmoidf(float x) { return x >= 0.f ? -log1pf(expf(-x)) : x - log1pf(expf(x)); }

/* Sums in any order (the 'omp simd' reduction; -fopenmp-simd, no OpenMP runtime): without it the compiler keeps
 * the written order and these stay scalar chains. */
__attribute__((noinline)) static float dot(const float *restrict a, const float *restrict b, int n)
{
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

__attribute__((noinline)) static float sum(const float *restrict a, int n)
{
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int i = 0; i < n; i++) acc += a[i];
    return acc;
}

__attribute__((noinline)) static float sum_sq_dev(const float *restrict a, float mean, int n)
{
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int i = 0; i < n; i++) acc += (a[i] - mean) * (a[i] - mean);
    return acc;
}

#if defined(__AVX__) && defined(__FMA__)
/* Eight columns of one row c of C: the readouts y_t += a_t c, and the new row f c + sum_j w_j v_j. */
static inline void readout8(__m256 c, float *y0, float *y1, float *y2, __m256 A0, __m256 A1, __m256 A2)
{
    _mm256_storeu_ps(y0, _mm256_fmadd_ps(A0, c, _mm256_loadu_ps(y0)));
    _mm256_storeu_ps(y1, _mm256_fmadd_ps(A1, c, _mm256_loadu_ps(y1)));
    _mm256_storeu_ps(y2, _mm256_fmadd_ps(A2, c, _mm256_loadu_ps(y2)));
}

static inline __m256 update8(__m256 c, const float *v0, const float *v1, const float *v2, __m256 W0, __m256 W1,
                             __m256 W2, __m256 F)
{
    __m256 o = _mm256_mul_ps(F, c);
    o = _mm256_fmadd_ps(W0, _mm256_loadu_ps(v0), o);
    o = _mm256_fmadd_ps(W1, _mm256_loadu_ps(v1), o);
    return _mm256_fmadd_ps(W2, _mm256_loadu_ps(v2), o);
}
#endif

/* One row of C for a 3-token chunk (the hot loop: everything else is small). Not inlined, so that the
 * restrict qualifiers hold and the compiler vectorises it: inlined into the caller gcc 12 lost them and ran
 * it scalar, 8x slower (measured). With AVX, a 32-byte aligned output (runtime/native_xlstm.py allocates so)
 * and ``stream`` (the output is C' itself, not a buffer read again at once), the new row is written with streaming
 * stores: C' is never read back in this step, and a plain store
 * would first read each cache line of the output (a third pass over the state). */
__attribute__((noinline)) static void c_row3(const float *restrict row, float *restrict out, float *restrict y0,
                                             float *restrict y1, float *restrict y2, const float *restrict v0,
                                             const float *restrict v1, const float *restrict v2, float a0, float a1,
                                             float a2, float w0, float w1, float w2, float fT, int keep, int DH,
                                             int stream)
{
    if (!keep) {
        for (int d = 0; d < DH; d++) out[d] = w0 * v0[d] + w1 * v1[d] + w2 * v2[d];
        return;
    }
#if defined(__AVX__) && defined(__FMA__)
    if (stream && ((uintptr_t)out & 31) == 0 && (DH & 7) == 0) {
        const __m256 A0 = _mm256_set1_ps(a0), A1 = _mm256_set1_ps(a1), A2 = _mm256_set1_ps(a2);
        const __m256 W0 = _mm256_set1_ps(w0), W1 = _mm256_set1_ps(w1), W2 = _mm256_set1_ps(w2), F = _mm256_set1_ps(fT);
        for (int d = 0; d < DH; d += 8) {
            const __m256 c = _mm256_loadu_ps(row + d);
            readout8(c, y0 + d, y1 + d, y2 + d, A0, A1, A2);
            _mm256_stream_ps(out + d, update8(c, v0 + d, v1 + d, v2 + d, W0, W1, W2, F));
        }
        return;
    }
#endif
    for (int d = 0; d < DH; d++) {
        const float c = row[d];
        y0[d] += a0 * c; y1[d] += a1 * c; y2[d] += a2 * c;
        out[d] = fT * c + w0 * v0[d] + w1 * v1[d] + w2 * v2[d];
    }
}

/* The opt-in bf16 matrix memory (lram calibrate --precision bf16-state): C is stored as the top 16 bits of
 * each float32, arithmetic stays float32, rounded once per step: half the bytes of the state pass. c_row3_bf16 does it in registers; these widen / narrow a row through an L1 buffer for the other paths
 * (no AVX2, a chunk of other than 3 tokens), where a NaN stays a NaN. */
__attribute__((noinline)) static void bf16_to_f32(const uint16_t *restrict x, float *restrict y, int n)
{
    for (int i = 0; i < n; i++) {
        const uint32_t u = (uint32_t)x[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        y[i] = f;
    }
}

/* Stochastic rounding to bf16: add a dither in [0, 2^16) below the kept bits, then truncate. Round-to-nearest
 * loses every update smaller than half a bf16 step of C (8 significant bits) on a memory that forgets slowly,
 * and the loss piles up in one direction; a dither makes the rounding unbiased. The dither is a hash of the
 * value's own bits and its position in the row, not a random stream, so a step is a pure function of its
 * inputs (verify and the tests can repeat it). */
static inline uint32_t dither(uint32_t u, uint32_t pos)
{
    /* the top 16 bits of a multiplicative hash: one multiply per value (a stronger mixer made the bf16 path
     * compute-bound: 1.06x the FP32 step at batch 16 instead of 0.8-0.9x) */
    return ((u ^ (pos * 0x9E3779B1u)) * 0x85EBCA77u) >> 16;
}

__attribute__((noinline)) static void f32_to_bf16(const float *restrict x, uint16_t *restrict y, int n, uint32_t pos0)
{
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        const uint32_t rounded = (u + dither(u, pos0 + (uint32_t)i)) >> 16;
        y[i] = (uint16_t)(((u & 0x7FFFFFFFu) > 0x7F800000u) ? ((u >> 16) | 0x40u) : rounded);
    }
}

/* c_row3 for a bf16 row: widened, updated and rounded (stochastically, as f32_to_bf16) in registers, the new row
 * streamed out. pos0: the row's first element's position in C. */
__attribute__((noinline)) static void c_row3_bf16(const uint16_t *restrict row, uint16_t *restrict out,
                                                  float *restrict y0, float *restrict y1, float *restrict y2,
                                                  const float *restrict v0, const float *restrict v1,
                                                  const float *restrict v2, float a0, float a1, float a2, float w0,
                                                  float w1, float w2, float fT, int keep, int DH, float *restrict tmp,
                                                  uint32_t pos0)
{
#if defined(__AVX2__) && defined(__FMA__)
    if (((uintptr_t)out & 15) == 0 && (DH & 7) == 0) {
        const __m256 A0 = _mm256_set1_ps(a0), A1 = _mm256_set1_ps(a1), A2 = _mm256_set1_ps(a2);
        const __m256 W0 = _mm256_set1_ps(w0), W1 = _mm256_set1_ps(w1), W2 = _mm256_set1_ps(w2);
        const __m256 F = _mm256_set1_ps(keep ? fT : 0.f);
        const uint32_t G = 0x9E3779B1u;
        const __m256i laneG = _mm256_setr_epi32(0, (int)G, (int)(2 * G), (int)(3 * G), (int)(4 * G), (int)(5 * G),
                                                (int)(6 * G), (int)(7 * G));
        const __m256i M1 = _mm256_set1_epi32((int)0x85EBCA77u);
        for (int d = 0; d < DH; d += 8) {
            const __m256 c = keep ? _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + d))), 16)) : _mm256_setzero_ps();
            if (keep) readout8(c, y0 + d, y1 + d, y2 + d, A0, A1, A2);
            const __m256 o = update8(c, v0 + d, v1 + d, v2 + d, W0, W1, W2, F);
            /* dither() on 8 lanes (the state is finite: the update of finite numbers, so no NaN case) */
            const __m256i u = _mm256_castps_si256(o);
            const __m256i posG = _mm256_add_epi32(_mm256_set1_epi32((int)((pos0 + (uint32_t)d) * G)), laneG);
            const __m256i h = _mm256_srli_epi32(_mm256_mullo_epi32(_mm256_xor_si256(u, posG), M1), 16);
            const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, h), 16);
            const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
            _mm_stream_si128((__m128i *)(out + d), packed);
        }
        return;
    }
#endif
    bf16_to_f32(row, tmp, DH);
    c_row3(tmp, tmp + DH, y0, y1, y2, v0, v1, v2, a0, a1, a2, w0, w1, w2, fT, keep, DH, 0);
    f32_to_bf16(tmp + DH, out, DH, pos0);
}

/* One (row b, head h) of the chunked stabilised mLSTM: the math of export/cells.py::mlstm_cell. */
static void cell_head(int T, int DH, const float *restrict q, const float *restrict k, const float *restrict v,
                      ptrdiff_t tstride, const float *restrict ig_raw, const float *restrict fg_raw, ptrdiff_t gstride,
                      float valid0, const float *restrict C, const float *restrict n, float m_in,
                      float *restrict Cout, float *restrict nout, float *restrict mout, float *restrict h,
                      float *restrict y /* [T][DH] scratch */, const uint16_t *C16, uint16_t *Co16,
                      float *rows /* 2 DH scratch: a bf16 row widened, and its update */)
{
    const float keep = valid0 != 0.f ? 1.f : 0.f;
    const float scale = 1.f / sqrtf((float)DH);
    float a[TMAX], src[TMAX], mt[TMAX], decay0[TMAX], S[TMAX][TMAX], kwc[TMAX];
    float acc = 0.f;
    const float m0 = keep ? m_in : 0.f;
    for (int t = 0; t < T; t++) {
        int skip = (t == 0 && !keep);
        float ig = skip ? ig_raw[t * gstride] + NEG : ig_raw[t * gstride];
        float lf = skip ? 0.f : logsigmoidf(fg_raw[t * gstride]);
        acc += lf; a[t] = acc; src[t] = ig - acc;
    }
    for (int t = 0; t < T; t++) {
        float mx = a[t] + m0;
        for (int j = 0; j <= t; j++) { float l = a[t] + src[j]; if (l > mx) mx = l; }
        mt[t] = mx;
        decay0[t] = keep ? expf(a[t] + m0 - mx) : 0.f;
        for (int j = 0; j <= t; j++) {
            const float qk = dot(q + t * tstride, k + j * tstride, DH);
            S[t][j] = qk * scale * expf(a[t] + src[j] - mx);
        }
    }
    const float aT = a[T - 1], mT = mt[T - 1];
    const float fT = keep ? expf(aT + m0 - mT) : 0.f;
    for (int j = 0; j < T; j++) kwc[j] = scale * expf(aT + src[j] - mT);
    /* the one pass over C: the readouts q_t^T C and the new C' = fT C + sum_j kw_j v_j^T */
    memset(y, 0, sizeof(float) * T * DH);
    for (int i = 0; i < DH; i++) {
        if (C16 && T == 3) {
            c_row3_bf16(C16 + (ptrdiff_t)i * DH, Co16 + (ptrdiff_t)i * DH, y, y + DH, y + 2 * DH, v, v + tstride,
                        v + 2 * tstride, q[i], q[tstride + i], q[2 * tstride + i], kwc[0] * k[i], kwc[1] * k[tstride + i],
                        kwc[2] * k[2 * tstride + i], fT, keep, DH, rows, (uint32_t)(i * DH));
            continue;
        }
        const float *row = C16 ? rows : C + (ptrdiff_t)i * DH;
        float *out = C16 ? rows + DH : Cout + (ptrdiff_t)i * DH;
        if (C16) bf16_to_f32(C16 + (ptrdiff_t)i * DH, rows, DH);
        if (T == 3) {
            c_row3(row, out, y, y + DH, y + 2 * DH, v, v + tstride, v + 2 * tstride, q[i], q[tstride + i],
                   q[2 * tstride + i], kwc[0] * k[i], kwc[1] * k[tstride + i], kwc[2] * k[2 * tstride + i], fT, keep, DH,
                   C16 == NULL /* a bf16 row is updated in L1 and narrowed: no streaming stores into that buffer */);
        } else {
            for (int d = 0; d < DH; d++) out[d] = keep ? fT * row[d] : 0.f;
            for (int t = 0; t < T; t++) {
                const float qi = keep ? q[t * tstride + i] : 0.f, wi = kwc[t] * k[t * tstride + i];
                const float *vt = v + t * tstride; float *yt = y + t * DH;
                for (int d = 0; d < DH; d++) { yt[d] += qi * row[d]; out[d] += wi * vt[d]; }
            }
        }
        if (C16) f32_to_bf16(out, Co16 + (ptrdiff_t)i * DH, DH, (uint32_t)(i * DH));
    }
    /* the q.n readouts, the normalised outputs, then n' */
    for (int t = 0; t < T; t++) {
        float qn = 0.f;
        if (keep) qn = dot(q + t * tstride, n, DH);
        qn *= decay0[t];
        float ssum = 0.f;
        for (int j = 0; j <= t; j++) ssum += S[t][j];
        qn += ssum;
        const float denom = fmaxf(fabsf(qn), expf(-mt[t])) + 1e-6f;
        float *ht = h + t * tstride; const float *yt = y + t * DH;
        for (int d = 0; d < DH; d++) {
            float num = decay0[t] * yt[d];
            for (int j = 0; j <= t; j++) num += S[t][j] * v[j * tstride + d];
            ht[d] = num / denom;
        }
    }
    for (int d = 0; d < DH; d++) {
        float x = keep ? fT * n[d] : 0.f;
        for (int j = 0; j < T; j++) x += kwc[j] * k[j * tstride + d];
        nout[d] = x;
    }
    *mout = mT;
}

/* exp for the sigmoids of the conv output and the gate z (2 x T x I per robot and block): glibc's expf does
 * not vectorise without -ffast-math, and scalar calls cost about as much as the rest of the core at batch 16.
 * Cody-Waite reduction + the degree-6 polynomial of Cephes' expf, exact to ~2 ulp over the clamped range. */
static inline float vexpf(float x)
{
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);  /* not fminf/fmaxf: those are calls, not vectorised */
    const float n = floorf(x * 1.44269504088896341f + 0.5f);
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } s;
    s.i = ((int32_t)n + 127) << 23;
    return p * s.f;
}

static inline float silu(float x) { return x / (1.0f + vexpf(-x)); }

/* The element-wise loops below are small functions kept out of line for the same reason as c_row3: with
 * restrict pointers that survive, gcc vectorises them. */
__attribute__((noinline)) static void fma_into(float *restrict o, const float *restrict w, const float *restrict x, int n)
{
    for (int c = 0; c < n; c++) o[c] += w[c] * x[c];
}

__attribute__((noinline)) static void silu_inplace(float *restrict x, int n)
{
    for (int c = 0; c < n; c++) x[c] = silu(x[c]);
}

/* (normalised head output + skip * conv output) * silu(z) */
__attribute__((noinline)) static void gated_out(float *restrict out, const float *restrict hv, float mean, float rstd,
                                                const float *restrict scale, const float *restrict skip,
                                                const float *restrict xc, const float *restrict z, int n)
{
    for (int c = 0; c < n; c++) out[c] = ((hv[c] - mean) * rstd * (1.f + scale[c]) + skip[c] * xc[c]) * silu(z[c]);
}

/* gt[o] = b[o] + sum_e x[e] w[e][o] for G outputs; G = 2 NH is small (8 for 4 heads): accumulate in
 * registers, a fixed width when it is 8 */
__attribute__((noinline)) static void gate_preacts(float *restrict gt, const float *restrict x, const float *restrict w,
                                                   const float *restrict b, int E, int G)
{
    if (G == 8) {  /* four accumulators: one would make every FMA wait for the previous one */
        float a0[8] = {0}, a1[8] = {0}, a2[8] = {0}, a3[8] = {0};
        int e = 0;
        for (; e + 4 <= E; e += 4) {
            const float *we = w + (ptrdiff_t)e * 8;
            for (int o = 0; o < 8; o++) {
                a0[o] += x[e] * we[o];
                a1[o] += x[e + 1] * we[8 + o];
                a2[o] += x[e + 2] * we[16 + o];
                a3[o] += x[e + 3] * we[24 + o];
            }
        }
        for (; e < E; e++)
            for (int o = 0; o < 8; o++) a0[o] += x[e] * w[(ptrdiff_t)e * 8 + o];
        for (int o = 0; o < 8; o++) gt[o] = b[o] + ((a0[o] + a1[o]) + (a2[o] + a3[o]));
        return;
    }
    for (int o = 0; o < G; o++) gt[o] = b[o];
    for (int e = 0; e < E; e++)
        for (int o = 0; o < G; o++) gt[o] += x[e] * w[(ptrdiff_t)e * G + o];
}

/* The headwise projection: out[b*o + oi] = sum_j x[b*d + j] w[(oi*d + j)*NB + b] for NB blocks of d -> o
 * (4 x 4 in the mLSTM). Done block-innermost (x de-interleaved to [d][NB], rows of w are over the blocks) so
 * that every multiply-add is a contiguous vector one; tmp holds (d + o) NB floats. */
static void headwise(const float *restrict x, const float *restrict w, int o, int d, int NB, float *restrict out,
                     float *restrict tmp)
{
    float *xT = tmp, *oT = tmp + (ptrdiff_t)d * NB;
    for (int b = 0; b < NB; b++)
        for (int j = 0; j < d; j++) xT[(ptrdiff_t)j * NB + b] = x[b * d + j];
    for (int oi = 0; oi < o; oi++) {
        float *r = oT + (ptrdiff_t)oi * NB;
        memset(r, 0, sizeof(float) * NB);
        for (int j = 0; j < d; j++) fma_into(r, w + ((ptrdiff_t)oi * d + j) * NB, xT + (ptrdiff_t)j * NB, NB);
    }
    for (int b = 0; b < NB; b++)
        for (int oi = 0; oi < o; oi++) out[b * o + oi] = oT[(ptrdiff_t)oi * NB + b];
}

typedef struct {
    int T, NH, DH, K, I, NB, d;
    const float *conv_w, *conv_b, *w_qk, *wv, *w_if, *b_if, *outnorm_w, *skip;
} Layer;

/* One robot: export/cells.py::mlstm_layer_core. scratch: 6 T I + 5 I + 2 T NH + T DH + 2 DH floats. C and Co are
 * float32, or bf16 (uint16) when c_bf16. */
static void layer_row(const Layer *L, const float *x_in, float valid0, const void *C, const float *n, const float *m,
                      const float *conv, float *h_out, void *Co, float *no, float *mo, float *conv_out, float *scratch,
                      int c_bf16)
{
    const int T = L->T, I = L->I, K = L->K, NH = L->NH, DH = L->DH, d = L->d, NB = L->NB;
    const int keep = valid0 != 0.f;
    float *xc = scratch, *q = xc + T * I, *k = q + T * I, *v = k + T * I, *h = v + T * I, *xm0 = h + T * I;
    float *cat = xm0 + T * I, *tmp = cat + 3 * I, *g = tmp + 2 * I, *y = g + 2 * T * NH, *rows = y + T * DH;
    /* the cell's input half with token 0 zeroed when it is the skipped reward token (the conv window sees
     * zeros there, as in causal_conv) */
    for (int t = 0; t < T; t++) {
        const float s = (t == 0 && !keep) ? 0.f : 1.f;
        const float *xm = x_in + (ptrdiff_t)t * 2 * I;
        for (int c = 0; c < I; c++) xm0[t * I + c] = s * xm[c];
    }
    /* causal conv over [conv window (K rows), the T new rows]: y_t = b + sum_j w_j full[t + 1 + j] */
    for (int t = 0; t < T; t++) {
        float *o = xc + t * I;
        for (int c = 0; c < I; c++) o[c] = L->conv_b[c];
        for (int j = 0; j < K; j++) {
            const int r = t + 1 + j;
            const float *src = r < K ? conv + (ptrdiff_t)r * I : xm0 + (ptrdiff_t)(r - K) * I;
            fma_into(o, L->conv_w + (ptrdiff_t)j * I, src, I);
        }
        silu_inplace(o, I);
    }
    for (int r = T; r < T + K; r++)  /* the new window: the last K rows of full */
        memcpy(conv_out + (ptrdiff_t)(r - T) * I, r < K ? conv + (ptrdiff_t)r * I : xm0 + (ptrdiff_t)(r - K) * I,
               sizeof(float) * I);
    /* headwise q, k (from the conv output) and v (from the raw input half) */
    for (int t = 0; t < T; t++) {
        const float *xm = x_in + (ptrdiff_t)t * 2 * I;
        headwise(xc + t * I, L->w_qk, d, d, NB, q + t * I, tmp);
        headwise(xc + t * I, L->w_qk + (ptrdiff_t)d * d * NB, d, d, NB, k + t * I, tmp);
        headwise(xm, L->wv, d, d, NB, v + t * I, tmp);
    }
    /* the gate pre-activations: [q, k, v] (3I) @ w_if [3I, 2NH] + b_if; joined per token in cat */
    const int G = 2 * NH;
    for (int t = 0; t < T; t++) {
        memcpy(cat, q + t * I, sizeof(float) * I);
        memcpy(cat + I, k + t * I, sizeof(float) * I);
        memcpy(cat + 2 * I, v + t * I, sizeof(float) * I);
        gate_preacts(g + t * G, cat, L->w_if, L->b_if, 3 * I, G);
    }
    for (int hh = 0; hh < NH; hh++) {
        const ptrdiff_t c0 = (ptrdiff_t)hh * DH * DH;
        cell_head(T, DH, q + hh * DH, k + hh * DH, v + hh * DH, I, g + hh, g + NH + hh, G, valid0,
                  c_bf16 ? NULL : (const float *)C + c0, n + (ptrdiff_t)hh * DH, m[hh],
                  c_bf16 ? NULL : (float *)Co + c0, no + (ptrdiff_t)hh * DH, mo + hh, h + hh * DH, y,
                  c_bf16 ? (const uint16_t *)C + c0 : NULL, c_bf16 ? (uint16_t *)Co + c0 : NULL, rows);
    }
    /* head norm (LayerNorm over each head's DH, scale 1 + w), the learnable skip, the output gate silu(z) */
    for (int t = 0; t < T; t++) {
        const float *z = x_in + (ptrdiff_t)t * 2 * I + I;
        float *out = h_out + (ptrdiff_t)t * I;
        for (int hh = 0; hh < NH; hh++) {
            const float *hv = h + t * I + hh * DH;
            const float mean = sum(hv, DH) / (float)DH, var = sum_sq_dev(hv, mean, DH);
            const float rstd = 1.f / sqrtf(var / (float)DH + 1e-5f);
            const int c0 = hh * DH;
            gated_out(out + c0, hv, mean, rstd, L->outnorm_w + c0, L->skip + c0, xc + t * I + c0, z + c0, DH);
        }
    }
}

/* ---- the sLSTM recurrence: export/cells.py::slstm_cell ----------------------------------------------------- */

/* log(1 + u) for u in [0, 1] (the softplus inside logsigmoid): Cephes' logf on 1 + u without forming 1 + u - 1,
 * so small u keep their precision; branch-free so that it vectorises. */
static inline float vlog1p_unit(float u)
{
    const int big = u > 0.41421356f;                       /* 1 + u > sqrt(2): use (1 + u) / 2 */
    const float x = big ? 0.5f * (u - 1.0f) : u, e = big ? 1.0f : 0.0f, z = x * x;
    float y = 7.0376836292E-2f;
    y = y * x - 1.1514610310E-1f;
    y = y * x + 1.1676998740E-1f;
    y = y * x - 1.2420140846E-1f;
    y = y * x + 1.4249322787E-1f;
    y = y * x - 1.6668057665E-1f;
    y = y * x + 2.0000714765E-1f;
    y = y * x - 2.4999993993E-1f;
    y = y * x + 3.3333331174E-1f;
    y = y * x * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return x + y + 0.693359375f * e;
}

/* y += a * x, the shape of a row of a small matrix product */
__attribute__((noinline)) static void axpy(float *restrict y, float a, const float *restrict x, int n)
{
    for (int c = 0; c < n; c++) y[c] += a * x[c];
}

__attribute__((noinline)) static void add_into(float *restrict y, const float *restrict x, int n)
{
    for (int c = 0; c < n; c++) y[c] += x[c];
}

/* The sLSTM's pointwise update of H units for one token (cells.slstm_pointwise), in place on h, c, n, m;
 * raw holds the (i, f, z, o) pre-activations, H each. */
__attribute__((noinline)) static void slstm_pointwise(const float *restrict raw, float *restrict h, float *restrict c,
                                                      float *restrict n, float *restrict m, int H)
{
    for (int u = 0; u < H; u++) {
        const float i_raw = raw[u], f_raw = raw[H + u], z_raw = raw[2 * H + u], o_raw = raw[3 * H + u];
        const float logsig_f = (f_raw < 0.f ? f_raw : 0.f) - vlog1p_unit(vexpf(-fabsf(f_raw)));
        const float logfm = m[u] + logsig_f;
        const float m_new = n[u] == 0.f ? i_raw : (i_raw > logfm ? i_raw : logfm);
        float ig = vexpf(i_raw - m_new), fg = vexpf(logfm - m_new);
        ig = ig < 1.f ? ig : 1.f;
        fg = fg < 1.f ? fg : 1.f;
        const float ez = vexpf(-2.f * fabsf(z_raw)), tz = (1.f - ez) / (1.f + ez);
        const float c_new = fg * c[u] + ig * (z_raw < 0.f ? -tz : tz);
        const float n_new = fg * n[u] + ig;
        h[u] = c_new / n_new / (1.f + vexpf(-o_raw));
        c[u] = c_new;
        n[u] = n_new;
        m[u] = m_new;
    }
}

/* The sLSTM recurrence for all robots, token by token (export/cells.py::slstm_cell). The recurrent product is
 * a small GEMM per head, h [B, DH] x Rt [DH, 4DH], done row of Rt by row of Rt across the robots, so that each
 * row is read once per token, not once per robot. acc: B x 4DH floats, raw: B x 4H floats. */
static void slstm_cell_all(int B, int T, int NH, int DH, const float *wx, const float *valid, const float *Rt,
                           const float *bias, float *y, float *h, float *c, float *n, float *m, float *acc, float *raw)
{
    const int H = NH * DH, G = 4 * DH;
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) {
            const float *w = wx + ((ptrdiff_t)b * T + t) * 4 * H;
            float *r = raw + (ptrdiff_t)b * 4 * H;
            for (int u = 0; u < 4 * H; u++) r[u] = w[u] + bias[u];
        }
        for (int hd = 0; hd < NH; hd++) {
            memset(acc, 0, sizeof(float) * (size_t)B * G);
            for (int k = 0; k < DH; k++) {
                const float *row = Rt + ((ptrdiff_t)hd * DH + k) * G;  /* (gate, dh) of head hd for input unit k */
                for (int b = 0; b < B; b++) axpy(acc + (ptrdiff_t)b * G, h[(ptrdiff_t)b * H + hd * DH + k], row, G);
            }
            for (int b = 0; b < B; b++)
                for (int g = 0; g < 4; g++)
                    add_into(raw + (ptrdiff_t)b * 4 * H + g * H + hd * DH, acc + (ptrdiff_t)b * G + g * DH, DH);
        }
        for (int b = 0; b < B; b++) {
            const ptrdiff_t s = (ptrdiff_t)b * H;
            if (t > 0 || valid[b] != 0.f)  /* a skipped token 0 leaves the state as it was */
                slstm_pointwise(raw + 4 * s, h + s, c + s, n + s, m + s, H);
            memcpy(y + ((ptrdiff_t)b * T + t) * H, h + s, sizeof(float) * H);
        }
    }
}

static PyObject *slstm_cell(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer wx, valid, h, c, n, m, Rt, bias, y, ho, co, no, mo;
    int B, T, NH, DH;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*w*w*w*w*w*iiii", &wx, &valid, &h, &c, &n, &m, &Rt, &bias, &y, &ho, &co,
                          &no, &mo, &B, &T, &NH, &DH))
        return NULL;
    float *scratch = NULL;
    const int H = NH * DH;
    if (B < 1 || NH < 1 || DH < 1 || T < 1) {
        PyErr_Format(PyExc_ValueError, "sLSTM cell: B=%d T=%d NH=%d DH=%d out of range", B, T, NH, DH);
        goto done;
    }
    const Py_ssize_t f = 4, BH = (Py_ssize_t)B * H * f;
    if (wx.len != (Py_ssize_t)T * 4 * BH || y.len != (Py_ssize_t)T * BH || valid.len != B * f || h.len != BH ||
        c.len != BH || n.len != BH || m.len != BH || ho.len != BH || co.len != BH || no.len != BH || mo.len != BH ||
        Rt.len != (Py_ssize_t)H * 4 * DH * f || bias.len != 4 * H * f) {
        PyErr_Format(PyExc_ValueError, "sLSTM cell: a buffer does not match B=%d T=%d NH=%d DH=%d float32", B, T, NH, DH);
        goto done;
    }
    scratch = (float *)malloc(sizeof(float) * ((size_t)B * 4 * DH + (size_t)B * 4 * H));
    if (!scratch) { PyErr_NoMemory(); goto done; }
    /* the new state starts as the old one and is updated in place (the inputs are never written) */
    memcpy(ho.buf, h.buf, BH);
    memcpy(co.buf, c.buf, BH);
    memcpy(no.buf, n.buf, BH);
    memcpy(mo.buf, m.buf, BH);
    Py_BEGIN_ALLOW_THREADS
    slstm_cell_all(B, T, NH, DH, wx.buf, valid.buf, Rt.buf, bias.buf, y.buf, ho.buf, co.buf, no.buf, mo.buf, scratch,
                   scratch + (size_t)B * 4 * DH);
    Py_END_ALLOW_THREADS
done:
    free(scratch);
    Py_buffer *all[] = {&wx, &valid, &h, &c, &n, &m, &Rt, &bias, &y, &ho, &co, &no, &mo};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) PyBuffer_Release(all[i]);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *mlstm_layer(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer x_in, valid, C, n, m, conv, cw, cb, wqk, wv, wif, bif, onw, skip, h, Co, no, mo, convo;
    int B, T, NH, DH, K, NB;
    int c_bf16 = 0;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*y*y*y*y*w*w*w*w*w*iiiiii|p", &x_in, &valid, &C, &n, &m, &conv,
                          &cw, &cb, &wqk, &wv, &wif, &bif, &onw, &skip, &h, &Co, &no, &mo, &convo,
                          &B, &T, &NH, &DH, &K, &NB, &c_bf16))
        return NULL;
    float *scratch = NULL;
    const int I = NH * DH;
    const int d = NB > 0 ? I / NB : 0;
    if (B < 1 || NH < 1 || DH < 1 || K < 1 || NB < 1 || T < 1 || T > TMAX || d * NB != I) {
        PyErr_Format(PyExc_ValueError, "mLSTM layer: B=%d T=%d NH=%d DH=%d K=%d blocks=%d out of range (T at most %d)",
                     B, T, NH, DH, K, NB, TMAX);
        goto done;
    }
    const Py_ssize_t f = 4, BT = (Py_ssize_t)B * T, cf = c_bf16 ? 2 : 4;
    if (x_in.len != BT * 2 * I * f || valid.len != B * f || C.len != (Py_ssize_t)B * NH * DH * DH * cf ||
        Co.len != C.len || n.len != (Py_ssize_t)B * I * f || no.len != n.len || m.len != (Py_ssize_t)B * NH * f ||
        mo.len != m.len || conv.len != (Py_ssize_t)B * K * I * f || convo.len != conv.len || h.len != BT * I * f ||
        cw.len != (Py_ssize_t)K * I * f || cb.len != I * f || wqk.len != (Py_ssize_t)2 * d * d * NB * f ||
        wv.len != (Py_ssize_t)d * d * NB * f || wif.len != (Py_ssize_t)3 * I * 2 * NH * f || bif.len != 2 * NH * f ||
        onw.len != I * f || skip.len != I * f) {
        PyErr_Format(PyExc_ValueError, "mLSTM layer: a buffer does not match B=%d T=%d NH=%d DH=%d K=%d blocks=%d "
                     "(float32; C %s)", B, T, NH, DH, K, NB, c_bf16 ? "bf16" : "float32");
        goto done;
    }
    scratch = (float *)malloc(sizeof(float) * ((size_t)6 * T * I + (size_t)5 * I + (size_t)2 * T * NH + (size_t)T * DH +
                                               (size_t)2 * DH));
    if (!scratch) { PyErr_NoMemory(); goto done; }
    const Layer L = {T, NH, DH, K, I, NB, d, cw.buf, cb.buf, wqk.buf, wv.buf, wif.buf, bif.buf, onw.buf, skip.buf};
    Py_BEGIN_ALLOW_THREADS
    for (int b = 0; b < B; b++) {
        const ptrdiff_t st = (ptrdiff_t)b * NH;
        layer_row(&L, (const float *)x_in.buf + (ptrdiff_t)b * T * 2 * I, ((const float *)valid.buf)[b],
                  (const char *)C.buf + st * DH * DH * cf, (const float *)n.buf + st * DH, (const float *)m.buf + st,
                  (const float *)conv.buf + (ptrdiff_t)b * K * I, (float *)h.buf + (ptrdiff_t)b * T * I,
                  (char *)Co.buf + st * DH * DH * cf, (float *)no.buf + st * DH, (float *)mo.buf + st,
                  (float *)convo.buf + (ptrdiff_t)b * K * I, scratch, c_bf16);
    }
#if defined(__AVX__)
    _mm_sfence();  /* the streaming stores are visible before Python reads C' */
#endif
    Py_END_ALLOW_THREADS
done:
    free(scratch);
    Py_buffer *all[] = {&x_in, &valid, &C, &n, &m, &conv, &cw, &cb, &wqk, &wv, &wif, &bif, &onw, &skip, &h, &Co, &no, &mo, &convo};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) PyBuffer_Release(all[i]);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"mlstm_layer", mlstm_layer, METH_VARARGS, "the native flavour's mLSTM layer core (see runtime/native_xlstm.py)"},
    {"slstm_cell", slstm_cell, METH_VARARGS, "the native flavour's sLSTM recurrence (see runtime/native_xlstm.py)"},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_xlstm_native", NULL, -1, methods};
PyMODINIT_FUNC PyInit__xlstm_native(void) { return PyModule_Create(&mod); }
