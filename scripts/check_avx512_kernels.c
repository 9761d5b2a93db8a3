// Runs the AVX-512 kernels of Sources/CKernels on any x86-64 machine with AVX2, against the
// portable C ones, through SIMDe's emulated AVX-512 intrinsics (Debian: libsimde-dev), for
// machines without AVX-512 (as the AMD machine this project was first developed on), where the
// tests cannot reach those kernels; on machines with AVX-512 the tests run them natively. scripts/check-avx512-kernels.sh builds and
// runs it; it prints each check and exits 1 if any differs beyond its tolerance.
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <stdio.h>

// The few intrinsics the kernels use that SIMDe 0.7.4 lacks, lane by lane.
typedef union { __m512 v; float f[16]; } f32x16;
typedef union { __m512i v; int32_t i[16]; } i32x16;
typedef union { __m256i v; uint16_t u[16]; } u16x16;

static inline __m512 shim_cvtepi32_ps(__m512i a) {
    i32x16 in = {.v = a};
    f32x16 out;
    for (int i = 0; i < 16; i++) out.f[i] = (float)in.i[i];
    return out.v;
}

static inline __m512i shim_cvtepu16_epi32(__m256i a) {
    u16x16 in = {.v = a};
    i32x16 out;
    for (int i = 0; i < 16; i++) out.i[i] = in.u[i];
    return out.v;
}

static inline __m512 shim_cvtph_ps(__m256i a) {
    f32x16 out;
    _mm256_storeu_ps(out.f, _mm256_cvtph_ps(_mm256_castsi256_si128(a)));
    _mm256_storeu_ps(out.f + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(a, 1)));
    return out.v;
}

// Pairwise, as the hardware reduction is compiled: halves, then quarters, …
static inline float shim_reduce_add_ps(__m512 a) {
    f32x16 v = {.v = a};
    for (int width = 8; width >= 1; width /= 2)
        for (int i = 0; i < width; i++) v.f[i] += v.f[i + width];
    return v.f[0];
}

static inline __m512 shim_maskz_loadu_ps(__mmask16 mask, const float *p) {
    f32x16 out;
    for (int i = 0; i < 16; i++) out.f[i] = mask >> i & 1 ? p[i] : 0.0f;
    return out.v;
}

static inline void shim_mask_storeu_ps(float *p, __mmask16 mask, __m512 a) {
    f32x16 in = {.v = a};
    for (int i = 0; i < 16; i++)
        if (mask >> i & 1) p[i] = in.f[i];
}

#define _mm512_cvtepi32_ps shim_cvtepi32_ps
#define _mm512_cvtepu16_epi32 shim_cvtepu16_epi32
#define _mm512_cvtph_ps shim_cvtph_ps
#define _mm512_reduce_add_ps shim_reduce_add_ps
#define _mm512_maskz_loadu_ps shim_maskz_loadu_ps
#define _mm512_mask_storeu_ps shim_mask_storeu_ps

// Nothing compiled for AVX-512: the kernels' AVX-512 code is SIMDe's, in AVX2.
#define CK_AVX512
#define CK_AVX512_VNNI
#define CK_AVX2
#include "ckernels.c"

static int failures = 0;
static uint64_t seed = 0x9E3779B97F4A7C15u;

// Uniform in [-1, 1).
static float uniform(void) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return (float)(seed >> 40) / (float)(1 << 23) - 1.0f;
}

static float *randoms(int64_t count, float low, float high) {
    float *v = malloc((size_t)count * sizeof(float));
    for (int64_t i = 0; i < count; i++) v[i] = low + (uniform() + 1.0f) / 2.0f * (high - low);
    return v;
}

// got against want: the largest difference within `tolerance` times want's largest magnitude.
static void expect_close(const char *what, const float *got, const float *want, int64_t count, float tolerance) {
    float largest = 0, difference = 0;
    for (int64_t i = 0; i < count; i++) {
        largest = fabsf(want[i]) > largest ? fabsf(want[i]) : largest;
        const float d = fabsf(got[i] - want[i]);
        difference = d > difference || d != d ? d : difference;
    }
    const int ok = difference <= tolerance * largest;
    failures += !ok;
    printf("%-4s %s: largest difference %.3g of %.3g\n", ok ? "ok" : "FAIL", what, difference, largest);
}

typedef struct {
    int64_t m, k, j0, j1;
    const int8_t *q;
    const float *scales, *bias;
    float *y;
    int direct;  // the VNNI kernel itself (eighths for one input row) rather than through the dispatch
} q8_case;

static void q8_product(void *context, const int8_t *xq, const float *xs) {
    const q8_case *c = context;
    if (c->direct) {
        const int32_t parts = gemv_parts(c->m, CK_Q8);  // run at level 3: eighths for one input row
        CK_ONE_RANGE_PLAN(plan, c->j0, c->j1, parts, rows_chunk(parts, c->k, CK_Q8));
        if (parts == 8) gemv_q8_vnni_eighths(xq, xs, c->m, c->k, c->q, c->scales, c->bias, c->y, c->j1, plan, 0);
        else gemv_q8_vnni(xq, xs, c->m, c->k, c->q, c->scales, c->bias, c->y, c->j1, plan, 0);
    } else {
        ck_gemv_q8(xq, xs, c->m, c->k, c->q, c->scales, c->bias, c->y, c->j1, c->j0, c->j1);
    }
}

// A three-thread plan's participants one after another, the second first: it takes the other
// two's rows, runs of steps from their far ends and the rows after their parts.
enum { PLAN_THREADS = 3 };
typedef struct {
    _Alignas(64) unsigned char bytes[sizeof(ck_rows_plan) + PLAN_THREADS * sizeof(ck_rows_range)];
} plan_storage;

typedef struct {
    int64_t m, k, n;
    const int8_t *q;
    const float *scales;
    float *y;
} q8_plan_case;

static void q8_plan_product(void *context, const int8_t *xq, const float *xs) {
    const q8_plan_case *c = context;
    plan_storage storage;
    ck_rows_plan *plan = (ck_rows_plan *)storage.bytes;
    ck_rows_plan_init(plan, c->m, c->n, c->k, CK_Q8, PLAN_THREADS);
    for (int t = 1; t <= PLAN_THREADS; t++) ck_gemv_q8_rows(xq, xs, c->m, c->k, c->q, c->scales, NULL, c->y, c->n, plan, t % PLAN_THREADS);
}

// int8 products of 1 and 19 input rows through such a plan, 203 rows (each thread's range in
// quarters, eighths for one input row at level 3, and a few rows after them), at `level`
// against portable C.
static void check_q8_plans(int level) {
    const int64_t n = 203, ks[] = {64, 224};
    char what[96];
    for (int64_t m = 1; m <= 19; m += 18)
        for (int ki = 0; ki < 2; ki++) {
            const int64_t k = ks[ki];
            int8_t *q = malloc((size_t)(n * k));
            for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)(int)(uniform() * 128.0f);
            float *scales = randoms(n * k / 32, 0.001f, 0.02f), *x = randoms(m * k, -3, 3), *y[2];
            for (int i = 0; i < 2; i++) {
                y[i] = malloc((size_t)(m * n) * sizeof(float));
                for (int64_t j = 0; j < m * n; j++) y[i][j] = NAN;
                ck_set_thread_isa_cap(i ? level : 0);  // level 2: the AVX2 int8 kernel; 3: VNNI
                q8_plan_case c = {m, k, n, q, scales, y[i]};
                ck_q8_with_quantized_rows(x, m, k, q8_plan_product, &c);
            }
            snprintf(what, sizeof what, "level %d, int8 product through a plan, %lld × %lld", level, (long long)m, (long long)k);
            expect_close(what, y[1], y[0], m * n, 1e-5f);
            free(y[0]), free(y[1]), free(q), free(scales), free(x);
        }
}

// Rows against int8 weights: VNNI (level 3) against AVX2 and portable C; 1, 3 and 19 input rows
// (19: a run of 16 and a run of 3; at k ≥ 2048 the AVX2 kernel takes the run of 16 four input
// rows at a time), k covers runs of four blocks with 0–3 blocks left over, and
// the columns [2, 21) four quarters of 4 rows and a 3-row tail (one input row on VNNI: eight
// eighths of 2 rows). Stored −128 weights (which our quantizer never writes but a file may hold)
// sit in a part's row, in the tail's last row and in a last leftover block.
static void check_q8(void) {
    const int64_t n = 23, j0 = 2, j1 = 21, ks[] = {32, 64, 96, 128, 160, 224, 4096, 4192}, ms[] = {1, 3, 19};
    for (int ki = 0; ki < (int)(sizeof ks / sizeof *ks); ki++)
        for (int mi = 0; mi < (int)(sizeof ms / sizeof *ms); mi++) {
            const int64_t k = ks[ki], m = ms[mi];
            int8_t *q = malloc((size_t)(n * k));
            for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)(int)(uniform() * 128.0f);
            q[2 * k + 3] = -128;
            q[3 * k + 5] = -128;
            q[20 * k + k - 1] = -128;
            float *scales = randoms(n * k / 32, 0.001f, 0.02f), *bias = randoms(n, -1, 1), *x = randoms(m * k, -3, 3);
            // y[0–3]: the dispatch at each level; y[4]: the VNNI kernel called directly.
            float *y[5];
            for (int level = 0; level <= 4; level++) {
                y[level] = calloc((size_t)(m * j1), sizeof(float));
                q8_case c = {m, k, j0, j1, q, scales, bias, y[level], level == 4};
                ck_set_thread_isa_cap(level == 4 ? 3 : level);
                ck_q8_with_quantized_rows(x, m, k, q8_product, &c);
            }
            char what[96];
            const int dispatched = memcmp(y[3], y[4], (size_t)(m * j1) * sizeof(float)) == 0;
            failures += !dispatched;
            printf("%-4s int8 product, level 3 dispatches to the VNNI kernel, %lld × %lld\n", dispatched ? "ok" : "FAIL", (long long)m, (long long)k);
            snprintf(what, sizeof what, "int8 product, VNNI against portable, %lld × %lld", (long long)m, (long long)k);
            expect_close(what, y[3], y[0], m * j1, 1e-5f);
            snprintf(what, sizeof what, "int8 product, VNNI against AVX2, %lld × %lld", (long long)m, (long long)k);
            expect_close(what, y[3], y[1], m * j1, 1e-5f);
            for (int level = 0; level <= 4; level++) free(y[level]);
            free(q), free(scales), free(bias), free(x);
        }
}

// The one-row products (decoding: eight rows from eighths, then the rest one by one), the
// batched ones (passes of up to six rows: 5 in one, 11 in two) and the block products (prefill:
// more than CK_GEMV_BATCH rows) in each weight dtype, at `level` (2 or 3) against portable C;
// the first two also through a three-thread plan (203 rows: each thread's range in parts and a
// few rows after them).
static void check_linear(int level) {
    const int64_t n = 203, ms[] = {1, 5, 11, 17, 70}, ks[] = {37, 64, 200};
    const char *names[] = {"fp32", "bf16", "fp16"};
    for (int32_t dtype = CK_F32; dtype <= CK_F16; dtype++)
        for (int mi = 0; mi < 5; mi++)
            for (int ki = 0; ki < 3; ki++) {
                const int64_t m = ms[mi], k = ks[ki];
                float *x = randoms(m * k, -1, 1), *wf = randoms(n * k, -1, 1), *bias = randoms(n, -1, 1);
                uint16_t *wh = malloc((size_t)(n * k) * sizeof(uint16_t));
                for (int64_t i = 0; i < n * k; i++) wh[i] = dtype == CK_BF16 ? f32_to_bf16(wf[i]) : (uint16_t)_cvtss_sh(wf[i], 0);
                const void *w = dtype == CK_F32 ? (const void *)wf : (const void *)wh;
                float *y[2];  // portable, level
                for (int i = 0; i < 2; i++) {
                    y[i] = calloc((size_t)(m * n), sizeof(float));
                    ck_set_thread_isa_cap(i ? level : 0);
                    ck_linear(x, m, k, w, dtype, bias, y[i], n, 0, n);
                }
                char what[96];
                snprintf(what, sizeof what, "level %d, %s product, %lld × %lld", level, names[dtype], (long long)m, (long long)k);
                expect_close(what, y[1], y[0], m * n, 1e-5f);
                if (m <= CK_GEMV_BATCH) {
                    for (int64_t j = 0; j < m * n; j++) y[1][j] = NAN;
                    ck_set_thread_isa_cap(level);
                    plan_storage storage;
                    ck_rows_plan *plan = (ck_rows_plan *)storage.bytes;
                    ck_rows_plan_init(plan, m, n, k, dtype, PLAN_THREADS);
                    for (int t = 1; t <= PLAN_THREADS; t++) ck_gemv_rows(x, m, k, w, dtype, bias, y[1], n, plan, t % PLAN_THREADS);
                    snprintf(what, sizeof what, "level %d, %s product through a plan, %lld × %lld", level, names[dtype], (long long)m, (long long)k);
                    expect_close(what, y[1], y[0], m * n, 1e-5f);
                }
                free(y[0]), free(y[1]), free(x), free(wf), free(wh), free(bias);
            }
}

// The sum (bandwidth probe), SiLU, the recurrent step and scan, and the chunked SSD (its exp), at
// `level` against portable C.
static void check_rest(int level) {
    char what[96];
    const int64_t count = 1000 + 13;
    float *v = randoms(count, -8, 8);
    float sums[2], *silu[2];  // portable, level
    for (int i = 0; i < 2; i++) {
        ck_set_thread_isa_cap(i ? level : 0);
        sums[i] = ck_sum(v, count, 1);
        silu[i] = malloc((size_t)count * sizeof(float));
        memcpy(silu[i], v, (size_t)count * sizeof(float));
        ck_silu(silu[i], count);
    }
    // Against the sum of magnitudes: the signed sum cancels, so its own size says nothing of
    // the rounding in a different order.
    float magnitude = 0;
    for (int64_t i = 0; i < count; i++) magnitude += fabsf(v[i]);
    const float sum_difference = fabsf(sums[1] - sums[0]);
    failures += !(sum_difference <= 1e-6f * magnitude);
    printf("%-4s level %d, sum: difference %.3g, the values' magnitudes summing to %.3g\n",
           sum_difference <= 1e-6f * magnitude ? "ok" : "FAIL", level, sum_difference, magnitude);
    snprintf(what, sizeof what, "level %d, SiLU", level);
    expect_close(what, silu[1], silu[0], count, 1e-6f);
    free(silu[0]), free(silu[1]), free(v);

    // One head: p 5, n 37 (a 16-lane remainder), 45 tokens (chunks of 16 and a partial one).
    const int64_t p = 5, n = 37, l = 45, q = 16;
    float *x = randoms(l * p, -1, 1), *dt = randoms(l, 0.01f, 0.3f), *B = randoms(l * n, -1, 1), *C = randoms(l * n, -1, 1);
    const float A = -1.7f, D = 0.6f;
    float *work = malloc((size_t)ck_ssd_workspace(q, p, n) * sizeof(float));
    const char *names[] = {"recurrent step", "scan", "chunked SSD"};
    for (int kind = 0; kind < 3; kind++) {
        float *state[2] = {randoms(p * n, -1, 1), malloc((size_t)(p * n) * sizeof(float))}, *y[2];
        memcpy(state[1], state[0], (size_t)(p * n) * sizeof(float));  // the same start for both
        for (int i = 0; i < 2; i++) {
            y[i] = calloc((size_t)(l * p), sizeof(float));
            ck_set_thread_isa_cap(i ? level : 0);
            if (kind == 0) ck_ssm_step(x, dt[0], A, D, B, C, p, n, state[i], y[i]);
            if (kind == 1) ck_ssm_scan(x, p, dt, 1, B, C, n, l, A, D, p, n, state[i], y[i], p);
            if (kind == 2) ck_ssd_chunked(x, p, dt, 1, B, C, n, l, p, n, q, A, D, state[i], y[i], p, work);
        }
        snprintf(what, sizeof what, "level %d, %s, outputs", level, names[kind]);
        expect_close(what, y[1], y[0], kind == 0 ? p : l * p, 1e-5f);
        snprintf(what, sizeof what, "level %d, %s, state", level, names[kind]);
        expect_close(what, state[1], state[0], p * n, 1e-5f);
        for (int i = 0; i < 2; i++) free(state[i]), free(y[i]);
    }
    free(x), free(dt), free(B), free(C), free(work);
}

int main(void) {
    // This machine's own best instruction set is beside the point: SIMDe runs every level.
    ck_detected_value = 3;
    check_q8();
    for (int level = 2; level <= 3; level++) {
        check_linear(level);
        check_q8_plans(level);
        check_rest(level);
    }
    printf("%s\n", failures ? "AVX-512 kernels differ from the portable ones" : "all AVX-512 kernels agree");
    return failures ? 1 : 0;
}
