// lram fused recurrent step kernels: launch contract.
//
// One launch advances the recurrent state of ONE block of the xLSTM stack by T tokens (T = 3 per
// environment step: r_{t-1}, s_t, R_t). All tensors are dense, row-major (C order), fp32, batch first.
// State is read once and written once per launch. state_out must NOT alias state_in (ping-pong the buffers):
// several thread blocks read the same n/m/h vectors while one of them writes the new ones.
// Kernel argument order is  inputs..., int32 scalars..., outputs...  (the order TensorRT's AOT
// Python plugins use), so the same entry points serve TensorRT, CuPy/NVRTC and the driver API.
// valid[b, t] != 0 marks a real token; for valid[b, t] == 0 the state passes through unchanged
// (i~ = -inf, log f = 0) and the output of that token is computed from the unchanged state.
#pragma once

#define LRAM_MLSTM_TILE 32      // columns of C per thread block (= blockDim.x)
#define LRAM_MLSTM_MAX_ROWS 32  // rows of C per thread (DH <= 32 * blockDim.y, blockDim.y <= 32)
#define LRAM_MLSTM_MAX_THREADS 640  // __launch_bounds__: keeps the 32-float C tile in registers (no spills)
#define LRAM_MLSTM_MAX_DH 640       // all presets: 16M 256, 48M 384, 110M 512, 206M 640

// ---------------------------------------------------------------------------------------------
// lram_mlstm_step_f32
//   q, k, v   [B, T, NH, DH]   (q, k not scaled; the kernel scales k by 1/sqrt(DH))
//   igate     [B, T, NH]       input-gate pre-activation i~
//   fgate     [B, T, NH]       forget-gate pre-activation f~ (log f = -softplus(-f~), exact)
//   valid     [B, T]           float, 0 = invalid token
//   C_in      [B, NH, DH, DH]  C[i, j]: i indexes k, j indexes v
//   n_in      [B, NH, DH, 1]
//   m_in      [B, NH, 1, 1]
//   -> h [B, T, NH, DH], C_out, n_out, m_out (shapes as the inputs)
// launch: grid  = (ceil(DH / 32), B * NH, 1)
//         block = (32, ceil(DH / 32), 1)              (DH <= LRAM_MLSTM_MAX_DH = 640)
//         dynamic shared memory = LRAM_MLSTM_SMEM_BYTES(DH)
// ---------------------------------------------------------------------------------------------
#define LRAM_MLSTM_NY(DH) (((DH) + 31) / 32)
#define LRAM_MLSTM_SMEM_BYTES(DH) ((3 * (DH) + 32 * LRAM_MLSTM_NY(DH) + 32 + 8) * 4)

// ---------------------------------------------------------------------------------------------
// lram_slstm_step_f32
//   wx     [B, T, 4 * H]    input part of the gate pre-activations, gate-major: (gate i,f,z,o; head; dh)
//   valid  [B, T]           float, 0 = invalid token
//   h_in, c_in, n_in, m_in  [B, H] each            (H = NH * DH)
//   R      [NH, 4 * DH, DH] recurrent kernel in the vanilla backend's layout: rows g*DH..(g+1)*DH of
//                           head k are gate g, Ry[b, g, k, :] = R[k, g*DH:(g+1)*DH, :] @ h[b, k, :]
//   bias   [4 * H]          (gate, head, dh) order
//   -> y [B, T, H] (the new h of each token), h_out, c_out, n_out, m_out [B, H]
// launch: grid  = (B * NH, 1, 1)
//         block = (LRAM_SLSTM_THREADS, 1, 1)  (any multiple of 32 works; 256 is the default)
//         dynamic shared memory = LRAM_SLSTM_SMEM_BYTES(DH)
// ---------------------------------------------------------------------------------------------
#define LRAM_SLSTM_THREADS 256
#define LRAM_SLSTM_SMEM_BYTES(DH) (8 * (DH) * 4)

#ifdef __CUDACC__
extern "C" __global__ void lram_mlstm_step_f32(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ igate, const float* __restrict__ fgate, const float* __restrict__ valid,
    const float* __restrict__ C_in, const float* __restrict__ n_in, const float* __restrict__ m_in,
    int B, int T, int NH, int DH,
    float* __restrict__ h, float* __restrict__ C_out, float* __restrict__ n_out, float* __restrict__ m_out);

extern "C" __global__ void lram_slstm_step_f32(
    const float* __restrict__ wx, const float* __restrict__ valid,
    const float* __restrict__ h_in, const float* __restrict__ c_in, const float* __restrict__ n_in,
    const float* __restrict__ m_in, const float* __restrict__ R, const float* __restrict__ bias,
    int B, int T, int NH, int DH,
    float* __restrict__ y, float* __restrict__ h_out, float* __restrict__ c_out, float* __restrict__ n_out,
    float* __restrict__ m_out);

// exact log(sigmoid(x)) = -softplus(-x), no -inf for large negative x
__device__ __forceinline__ float lram_logsigmoid(float x) {
    return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}
#endif
