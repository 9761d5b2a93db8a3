// Fast CPU kernels (see include/ckernels.h). One portable C implementation of each kernel, plus
// AVX-512 variants chosen at run time with __builtin_cpu_supports, as ggml and numpy do. No
// compiler flags are needed: the AVX-512 functions carry target attributes.
#include "ckernels.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__clang__) || defined(__GNUC__))
#define CK_X86 1
#include <immintrin.h>
#define CK_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma,f16c")))
#endif

#define CK_INLINE static inline __attribute__((always_inline))

// MARK: - dispatch

static int ck_isa_value = -1;

void ck_restrict_to_portable(int restrict_to_portable) {
    ck_isa_value = -1;
    if (restrict_to_portable) ck_isa_value = 0;
}

int ck_isa(void) {
    if (ck_isa_value < 0) {
        int isa = 0;
#ifdef CK_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
            isa = 2;
        }
#endif
        ck_isa_value = isa;
    }
    return ck_isa_value;
}

// MARK: - scalar conversions

CK_INLINE float bf16_to_f32(uint16_t bits) {
    uint32_t widened = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &widened, sizeof value);
    return value;
}

CK_INLINE float f16_to_f32(uint16_t bits) {
    uint32_t sign = (uint32_t)(bits & 0x8000) << 16;
    int32_t exponent = (bits >> 10) & 0x1F;
    uint32_t mantissa = bits & 0x3FF;
    uint32_t out;
    if (exponent == 0x1F) {
        out = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent == 0) {
        float magnitude = (float)mantissa * 5.9604644775390625e-8f;  // 2^-24
        return sign ? -magnitude : magnitude;
    } else {
        out = sign | ((uint32_t)(exponent - 15 + 127) << 23) | (mantissa << 13);
    }
    float value;
    memcpy(&value, &out, sizeof value);
    return value;
}

CK_INLINE float load_scalar(const void *w, int32_t dtype, int64_t index) {
    switch (dtype) {
    case CK_BF16: return bf16_to_f32(((const uint16_t *)w)[index]);
    case CK_F16: return f16_to_f32(((const uint16_t *)w)[index]);
    default: return ((const float *)w)[index];
    }
}

void ck_widen(const void *src, int32_t dtype, int64_t offset, int64_t count, float *dst) {
    for (int64_t i = 0; i < count; i++) dst[i] = load_scalar(src, dtype, offset + i);
}

// MARK: - linear

static void linear_generic(const float *x, int64_t m, int64_t k, const void *w, int32_t dtype, const float *bias,
                           float *y, int64_t ldy, int64_t j0, int64_t j1) {
    float row[512];
    for (int64_t j = j0; j < j1; j++) {
        float acc_rows[8];
        for (int64_t r0 = 0; r0 < m; r0 += 8) {
            int64_t rows = m - r0 < 8 ? m - r0 : 8;
            for (int64_t r = 0; r < rows; r++) acc_rows[r] = 0;
            for (int64_t c0 = 0; c0 < k; c0 += 512) {
                int64_t span = k - c0 < 512 ? k - c0 : 512;
                ck_widen(w, dtype, j * k + c0, span, row);
                for (int64_t r = 0; r < rows; r++) {
                    const float *xr = x + (r0 + r) * k + c0;
                    float acc = 0;
                    for (int64_t c = 0; c < span; c++) acc += xr[c] * row[c];
                    acc_rows[r] += acc;
                }
            }
            for (int64_t r = 0; r < rows; r++) y[(r0 + r) * ldy + j] = acc_rows[r] + (bias ? bias[j] : 0.0f);
        }
    }
}

#ifdef CK_X86
// 16 weights from element `index`, widened to fp32.
#define CK_LOAD_F32(w, index) _mm512_loadu_ps((const float *)(w) + (index))
#define CK_LOAD_BF16(w, index) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)(w) + (index)))), 16))
#define CK_LOAD_F16(w, index) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)(w) + (index))))

// A 4 (input rows) × 4 (weight rows) block, 1 × 4, 4 × 1 and 1 × 1, for one weight dtype. The
// sums over k run 16 lanes wide; a k not divisible by 16 finishes in scalar code.
#define CK_DEFINE_LINEAR(NAME, LOAD, DTYPE)                                                                        \
    static CK_AVX512 void NAME(const float *x, int64_t m, int64_t k, const void *w, const float *bias, float *y,    \
                               int64_t ldy, int64_t j0, int64_t j1) {                                              \
        const int64_t k16 = k & ~(int64_t)15;                                                                      \
        const int64_t block = 64;                                                                                  \
        for (int64_t mb = 0; mb < m; mb += block) {                                                                \
            const int64_t me = mb + block < m ? mb + block : m;                                                    \
            int64_t j = j0;                                                                                        \
            for (; j + 4 <= j1; j += 4) {                                                                          \
                int64_t r = mb;                                                                                    \
                for (; r + 4 <= me; r += 4) {                                                                      \
                    __m512 acc[4][4];                                                                              \
                    for (int a = 0; a < 4; a++)                                                                    \
                        for (int b = 0; b < 4; b++) acc[a][b] = _mm512_setzero_ps();                               \
                    for (int64_t c = 0; c < k16; c += 16) {                                                        \
                        __m512 wv[4], xv[4];                                                                       \
                        for (int b = 0; b < 4; b++) wv[b] = LOAD(w, (j + b) * k + c);                              \
                        for (int a = 0; a < 4; a++) xv[a] = _mm512_loadu_ps(x + (r + a) * k + c);                  \
                        for (int a = 0; a < 4; a++)                                                                \
                            for (int b = 0; b < 4; b++) acc[a][b] = _mm512_fmadd_ps(xv[a], wv[b], acc[a][b]);       \
                    }                                                                                              \
                    for (int a = 0; a < 4; a++)                                                                    \
                        for (int b = 0; b < 4; b++) {                                                              \
                            float sum = _mm512_reduce_add_ps(acc[a][b]);                                           \
                            for (int64_t c = k16; c < k; c++)                                                      \
                                sum += x[(r + a) * k + c] * load_scalar(w, DTYPE, (j + b) * k + c);                \
                            y[(r + a) * ldy + j + b] = sum + (bias ? bias[j + b] : 0.0f);                          \
                        }                                                                                          \
                }                                                                                                  \
                for (; r < me; r++) {                                                                              \
                    __m512 acc[4];                                                                                 \
                    for (int b = 0; b < 4; b++) acc[b] = _mm512_setzero_ps();                                      \
                    for (int64_t c = 0; c < k16; c += 16) {                                                        \
                        __m512 xv = _mm512_loadu_ps(x + r * k + c);                                                \
                        for (int b = 0; b < 4; b++) acc[b] = _mm512_fmadd_ps(xv, LOAD(w, (j + b) * k + c), acc[b]); \
                    }                                                                                              \
                    for (int b = 0; b < 4; b++) {                                                                  \
                        float sum = _mm512_reduce_add_ps(acc[b]);                                                  \
                        for (int64_t c = k16; c < k; c++) sum += x[r * k + c] * load_scalar(w, DTYPE, (j + b) * k + c); \
                        y[r * ldy + j + b] = sum + (bias ? bias[j + b] : 0.0f);                                    \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
            for (; j < j1; j++) {                                                                                  \
                for (int64_t r = mb; r < me; r++) {                                                                \
                    __m512 acc = _mm512_setzero_ps();                                                              \
                    for (int64_t c = 0; c < k16; c += 16)                                                          \
                        acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * k + c), LOAD(w, j * k + c), acc);            \
                    float sum = _mm512_reduce_add_ps(acc);                                                         \
                    for (int64_t c = k16; c < k; c++) sum += x[r * k + c] * load_scalar(w, DTYPE, j * k + c);      \
                    y[r * ldy + j] = sum + (bias ? bias[j] : 0.0f);                                                \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

CK_DEFINE_LINEAR(linear_f32_avx512, CK_LOAD_F32, CK_F32)
CK_DEFINE_LINEAR(linear_bf16_avx512, CK_LOAD_BF16, CK_BF16)
CK_DEFINE_LINEAR(linear_f16_avx512, CK_LOAD_F16, CK_F16)
#endif

void ck_linear(const float *x, int64_t m, int64_t k, const void *w, int32_t dtype, const float *bias, float *y,
               int64_t ldy, int64_t j0, int64_t j1) {
#ifdef CK_X86
    if (ck_isa() == 2) {
        switch (dtype) {
        case CK_BF16: linear_bf16_avx512(x, m, k, w, bias, y, ldy, j0, j1); return;
        case CK_F16: linear_f16_avx512(x, m, k, w, bias, y, ldy, j0, j1); return;
        default: linear_f32_avx512(x, m, k, w, bias, y, ldy, j0, j1); return;
        }
    }
#endif
    linear_generic(x, m, k, w, dtype, bias, y, ldy, j0, j1);
}

// MARK: - exp, SiLU

#ifdef CK_X86
// e^x to about 1 ulp (Cephes expf polynomial), 2^n applied with scalef (no overflow handling needed).
CK_INLINE CK_AVX512 __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.72283935546875f)), _mm512_set1_ps(-103.97208f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static CK_AVX512 void exp_row_avx512(float *v, int64_t count) {
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) _mm512_storeu_ps(v + i, exp512(_mm512_loadu_ps(v + i)));
    if (i < count) {
        __mmask16 mask = (__mmask16)((1u << (count - i)) - 1);
        _mm512_mask_storeu_ps(v + i, mask, exp512(_mm512_maskz_loadu_ps(mask, v + i)));
    }
}

static CK_AVX512 void silu_avx512(float *x, int64_t count) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(x + i, _mm512_div_ps(v, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), v)))));
    }
    for (; i < count; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}
#endif

static void exp_row_generic(float *v, int64_t count) {
    for (int64_t i = 0; i < count; i++) v[i] = expf(v[i]);
}

typedef void (*exp_row_fn)(float *, int64_t);

static exp_row_fn exp_row(void) {
#ifdef CK_X86
    if (ck_isa() == 2) return exp_row_avx512;
#endif
    return exp_row_generic;
}

void ck_silu(float *x, int64_t count) {
#ifdef CK_X86
    if (ck_isa() == 2) { silu_avx512(x, count); return; }
#endif
    for (int64_t i = 0; i < count; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

// MARK: - RMSNorm

void ck_rmsnorm(const float *x, const float *z, const float *w, float eps, int64_t rows, int64_t d, int64_t group,
                float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        if (z) {
            const float *zr = z + r * d;
            for (int64_t i = 0; i < d; i++) yr[i] = zr[i];
            ck_silu(yr, d);
            for (int64_t i = 0; i < d; i++) yr[i] *= xr[i];
        } else if (yr != xr) {
            memcpy(yr, xr, (size_t)d * sizeof(float));
        }
        for (int64_t g0 = 0; g0 < d; g0 += group) {
            float sum = 0;
            for (int64_t i = g0; i < g0 + group; i++) sum += yr[i] * yr[i];
            const float scale = 1.0f / sqrtf(sum / (float)group + eps);
            for (int64_t i = g0; i < g0 + group; i++) yr[i] = yr[i] * scale * w[i];
        }
    }
}

// MARK: - causal conv

CK_INLINE void conv_silu_impl(const float *x, int64_t l, int64_t ldx, const float *w, const float *bias, int64_t k,
                              float *state, float *y, int64_t ldy, int64_t c0, int64_t c1, int64_t c) {
    // w is [k, c] (tap-major) so every inner loop runs over contiguous channels.
    for (int64_t t = 0; t < l; t++) {
        float *yt = y + t * ldy;
        for (int64_t ch = c0; ch < c1; ch++) yt[ch] = bias ? bias[ch] : 0.0f;
        for (int64_t j = 0; j < k; j++) {
            // Tap j sees input t + j - (k - 1): from the state while negative.
            const int64_t source = t + j - (k - 1);
            const float *row = source < 0 ? state + (k - 1 + source) * c : x + source * ldx;
            const float *wj = w + j * c;
            for (int64_t ch = c0; ch < c1; ch++) yt[ch] += wj[ch] * row[ch];
        }
    }
    // The new state: the last k - 1 inputs of state ++ x.
    const int64_t keep = k - 1;
    for (int64_t i = 0; i < keep; i++) {
        const int64_t source = l - keep + i;  // index into x; negative reaches into the old state
        if (source >= 0) {
            memcpy(state + i * c + c0, x + source * ldx + c0, (size_t)(c1 - c0) * sizeof(float));
        } else {
            memmove(state + i * c + c0, state + (keep + source) * c + c0, (size_t)(c1 - c0) * sizeof(float));
        }
    }
}

void ck_conv_silu(const float *x, int64_t l, int64_t ldx, const float *w, const float *bias, int64_t k, int64_t c,
                  float *state, float *y, int64_t ldy, int64_t c0, int64_t c1) {
    conv_silu_impl(x, l, ldx, w, bias, k, state, y, ldy, c0, c1, c);
    for (int64_t t = 0; t < l; t++) ck_silu(y + t * ldy + c0, c1 - c0);
}

// MARK: - SSD

int64_t ck_ssd_workspace(int64_t q, int64_t p, int64_t n) { return n * q + 4 * q + 1 + n * p; }

CK_INLINE void ssd_impl(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B, const float *C,
                        int64_t ldbc, int64_t l, int64_t p, int64_t n, int64_t q, float A, float D, float *state,
                        float *y, int64_t ldy, float *work, exp_row_fn exp_row_f) {
    float *Bt = work;            // [n, q]  B of the chunk, transposed
    float *a = Bt + n * q;       // [q]     A·dt
    float *cum = a + q;          // [q]     cumulative sum of a within the chunk
    float *row = cum + q;        // [q]     one row of G, then of M
    float *L = row + q;          // [q + 1] exp(segsum) of one row; the chunk's decays
    float *St = L + q + 1;       // [n, p]  the state entering the chunk, transposed
    for (int64_t c0 = 0; c0 < l; c0 += q) {
        const int64_t len = l - c0 < q ? l - c0 : q;
        float running = 0;
        for (int64_t s = 0; s < len; s++) {
            a[s] = A * dt[(c0 + s) * lddt];
            running += a[s];
            cum[s] = running;
        }
        for (int64_t s = 0; s < len; s++)
            for (int64_t j = 0; j < n; j++) Bt[j * q + s] = B[(c0 + s) * ldbc + j];
        for (int64_t i = 0; i < p; i++)
            for (int64_t j = 0; j < n; j++) St[j * p + i] = state[i * n + j];

        for (int64_t t = 0; t < len; t++) {
            const float *Ct = C + (c0 + t) * ldbc;
            float *yt = y + (c0 + t) * ldy;
            // 1. Diagonal block: M[t, s] = (C_t · B_s) · exp(Σ_{r=s+1..t} a_r) · dt_s, s ≤ t.
            for (int64_t s = 0; s <= t; s++) row[s] = 0;
            for (int64_t j = 0; j < n; j++) {
                const float cj = Ct[j];
                const float *bj = Bt + j * q;
                for (int64_t s = 0; s <= t; s++) row[s] += cj * bj[s];
            }
            float seg = 0;
            L[t] = 0;
            for (int64_t s = t - 1; s >= 0; s--) {
                seg += a[s + 1];
                L[s] = seg;
            }
            exp_row_f(L, t + 1);
            for (int64_t s = 0; s <= t; s++) row[s] *= L[s] * dt[(c0 + s) * lddt];
            // Y_diag = Σ_s M[t, s] · x_s, then 4. Y_off = exp(cum_t) · C_t · S_start, and D · x_t.
            for (int64_t i = 0; i < p; i++) yt[i] = D * x[(c0 + t) * ldx + i];
            for (int64_t s = 0; s <= t; s++) {
                const float m = row[s];
                const float *xs = x + (c0 + s) * ldx;
                for (int64_t i = 0; i < p; i++) yt[i] += m * xs[i];
            }
            L[0] = cum[t];
            exp_row_f(L, 1);
            const float decay = L[0];
            for (int64_t j = 0; j < n; j++) {
                const float cj = Ct[j] * decay;
                const float *sj = St + j * p;
                for (int64_t i = 0; i < p; i++) yt[i] += cj * sj[i];
            }
        }
        // 2–3. The state after the chunk: exp(cum_last) · S + Σ_s exp(cum_last − cum_s) · dt_s · x_s ⊗ B_s.
        for (int64_t s = 0; s < len; s++) L[s] = cum[len - 1] - cum[s];
        L[len] = cum[len - 1];
        exp_row_f(L, len + 1);
        const float total = L[len];
        for (int64_t e = 0; e < p * n; e++) state[e] *= total;
        for (int64_t s = 0; s < len; s++) {
            const float weight = L[s] * dt[(c0 + s) * lddt];
            const float *xs = x + (c0 + s) * ldx;
            const float *bs = B + (c0 + s) * ldbc;
            for (int64_t i = 0; i < p; i++) {
                const float coefficient = xs[i] * weight;
                float *si = state + i * n;
                for (int64_t j = 0; j < n; j++) si[j] += coefficient * bs[j];
            }
        }
    }
}

static void ssd_generic(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B, const float *C,
                        int64_t ldbc, int64_t l, int64_t p, int64_t n, int64_t q, float A, float D, float *state,
                        float *y, int64_t ldy, float *work) {
    ssd_impl(x, ldx, dt, lddt, B, C, ldbc, l, p, n, q, A, D, state, y, ldy, work, exp_row_generic);
}

#ifdef CK_X86
static CK_AVX512 void ssd_avx512(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B,
                                 const float *C, int64_t ldbc, int64_t l, int64_t p, int64_t n, int64_t q, float A,
                                 float D, float *state, float *y, int64_t ldy, float *work) {
    ssd_impl(x, ldx, dt, lddt, B, C, ldbc, l, p, n, q, A, D, state, y, ldy, work, exp_row_avx512);
}
#endif

void ck_ssd_chunked(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B, const float *C,
                    int64_t ldbc, int64_t l, int64_t p, int64_t n, int64_t q, float A, float D, float *state, float *y,
                    int64_t ldy, float *work) {
#ifdef CK_X86
    if (ck_isa() == 2) { ssd_avx512(x, ldx, dt, lddt, B, C, ldbc, l, p, n, q, A, D, state, y, ldy, work); return; }
#endif
    ssd_generic(x, ldx, dt, lddt, B, C, ldbc, l, p, n, q, A, D, state, y, ldy, work);
}

// MARK: - recurrent step

#ifdef CK_X86
static CK_AVX512 void ssm_step_avx512(const float *x, float dt, float A, float D, const float *B, const float *C,
                                      int64_t p, int64_t n, float *state, float *y) {
    const float dA = expf(dt * A);
    const int64_t n16 = n & ~(int64_t)15;
    const __m512 vdA = _mm512_set1_ps(dA);
    for (int64_t i = 0; i < p; i++) {
        float *si = state + i * n;
        const __m512 dtx = _mm512_set1_ps(dt * x[i]);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t j = 0; j < n16; j += 16) {
            __m512 s = _mm512_fmadd_ps(_mm512_loadu_ps(si + j), vdA, _mm512_mul_ps(dtx, _mm512_loadu_ps(B + j)));
            _mm512_storeu_ps(si + j, s);
            acc = _mm512_fmadd_ps(s, _mm512_loadu_ps(C + j), acc);
        }
        float out = _mm512_reduce_add_ps(acc);
        for (int64_t j = n16; j < n; j++) {
            const float s = si[j] * dA + dt * x[i] * B[j];
            si[j] = s;
            out += s * C[j];
        }
        y[i] = out + D * x[i];
    }
}
#endif

void ck_ssm_step(const float *x, float dt, float A, float D, const float *B, const float *C, int64_t p, int64_t n,
                 float *state, float *y) {
#ifdef CK_X86
    if (ck_isa() == 2) { ssm_step_avx512(x, dt, A, D, B, C, p, n, state, y); return; }
#endif
    const float dA = expf(dt * A);
    for (int64_t i = 0; i < p; i++) {
        float *si = state + i * n;
        float out = 0;
        for (int64_t j = 0; j < n; j++) {
            const float s = si[j] * dA + dt * x[i] * B[j];
            si[j] = s;
            out += s * C[j];
        }
        y[i] = out + D * x[i];
    }
}
