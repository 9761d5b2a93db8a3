// Fast CPU kernels (see include/ckernels.h). One portable C implementation of each kernel, plus
// AVX-512 variants chosen at run time with __builtin_cpu_supports, as ggml and numpy do. No
// compiler flags are needed: the AVX-512 functions carry target attributes.
#include "ckernels.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__clang__) || defined(__GNUC__))
#define CK_X86 1
#include <immintrin.h>
// A harness may define these itself: scripts/check-avx512-kernels.sh runs the AVX-512 kernels on
// machines without AVX-512, with SIMDe's emulated intrinsics and nothing compiled for AVX-512.
#ifndef CK_AVX512
#define CK_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma,f16c")))
#define CK_AVX512_VNNI __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,fma,f16c")))
#define CK_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif
#endif

#define CK_INLINE static inline __attribute__((always_inline))

#ifdef CK_X86
CK_INLINE CK_AVX2 float hsum256(__m256 v) {
    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
    return _mm_cvtss_f32(sum);
}
#endif

// MARK: - dispatch

// What the CPU runs, detected on first use (racing threads detect the same); every thread reads it.
static int ck_detected_value = -1;

// The calling thread's cap (tests), -1 for none. Per thread, so a test that checks one
// instruction set never changes what another test's kernels run; the pool's workers (and
// Fast.parallelFor's threads) take on their caller's cap.
static _Thread_local int ck_thread_cap = -1;

int ck_detected_isa(void) {
    int value = __atomic_load_n(&ck_detected_value, __ATOMIC_RELAXED);
    if (value >= 0) return value;
    value = 0;
#ifdef CK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
        value = __builtin_cpu_supports("avx512vnni") ? 3 : 2;
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
        value = 1;
    }
#endif
    __atomic_store_n(&ck_detected_value, value, __ATOMIC_RELAXED);
    return value;
}

int ck_thread_isa_cap(void) { return ck_thread_cap; }

void ck_set_thread_isa_cap(int level) { ck_thread_cap = level; }

int ck_isa(void) {
    const int isa = ck_detected_isa();
    return ck_thread_cap >= 0 && ck_thread_cap < isa ? ck_thread_cap : isa;
}

// MARK: - scalar conversions

CK_INLINE float bf16_to_f32(uint16_t bits) {
    uint32_t widened = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &widened, sizeof value);
    return value;
}

// Round to nearest even; a NaN stays a (quiet) NaN rather than rounding into an infinity.
CK_INLINE uint16_t f32_to_bf16(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if (value != value) return (uint16_t)((bits >> 16) | 0x0040);
    return (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
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

#ifdef CK_X86
static CK_AVX512 float sum_avx512(const float *x, int64_t count) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= count; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < count; i++) sum += x[i];
    return sum;
}
#endif

#ifdef CK_X86
static CK_AVX2 float sum_avx2(const float *x, int64_t count) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= count; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
    }
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < count; i++) sum += x[i];
    return sum;
}
#endif

#ifdef CK_X86
static CK_AVX2 float sum_streams_avx2(const float *x, int64_t per, int32_t streams) {
    __m256 acc[8];
    for (int s = 0; s < 8; s++) acc[s] = _mm256_setzero_ps();
    for (int64_t i = 0; i < per; i += 16)
        for (int s = 0; s < streams; s++)
            acc[s] = _mm256_add_ps(acc[s], _mm256_add_ps(_mm256_loadu_ps(x + s * per + i), _mm256_loadu_ps(x + s * per + i + 8)));
    __m256 total = acc[0];
    for (int s = 1; s < 8; s++) total = _mm256_add_ps(total, acc[s]);
    return hsum256(total);
}
#endif

float ck_sum(const float *x, int64_t count, int32_t streams) {
    if (streams < 1) streams = 1;
    if (streams > 8) streams = 8;
    if (streams > 1) {
        // Each part a multiple of 16 floats; what is left over is summed after.
        const int64_t per = count / streams / 16 * 16;
        float sum = 0;
#ifdef CK_X86
        if (ck_isa() >= 1) sum = sum_streams_avx2(x, per, streams);
        else
#endif
        {
            float partial[8][16] = {{0}};
            for (int64_t i = 0; i < per; i += 16)
                for (int s = 0; s < streams; s++)
                    for (int j = 0; j < 16; j++) partial[s][j] += x[s * per + i + j];
            for (int s = 0; s < streams; s++)
                for (int j = 0; j < 16; j++) sum += partial[s][j];
        }
        for (int64_t i = streams * per; i < count; i++) sum += x[i];
        return sum;
    }
#ifdef CK_X86
    if (ck_isa() >= 2) return sum_avx512(x, count);
    if (ck_isa() == 1) return sum_avx2(x, count);
#endif
    float partial[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= count; i += 8)
        for (int j = 0; j < 8; j++) partial[j] += x[i + j];
    float sum = 0;
    for (int j = 0; j < 8; j++) sum += partial[j];
    for (; i < count; i++) sum += x[i];
    return sum;
}

int64_t ck_fetch_increment(int64_t *counter) { return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED); }

// MARK: - Rows of a matrix-vector product shared out among threads

// Values per block of int8 weights and their fp32 scale (docs: ck_gemv_q8).
enum { CK_Q8_BLOCK = 32 };

// One thread's range of a plan: rows base + u · part + i (u < parts, i < part) read as `parts`
// streams side by side (step i: row i of every part), then rows [base + parts · part, end).
typedef struct {
    uint64_t steps;            // with several threads, the unclaimed steps [lo, hi): lo | hi << 32
    int32_t leftovers_taken;   // 1 once a thread has taken the rows after the parts
    int64_t base, part, end;
} __attribute__((aligned(64))) ck_rows_range;

struct ck_rows_plan {
    int32_t threads, parts;
    int64_t chunk;
    ck_rows_range range[];
};

// A run of a plan's rows for a kernel: steps [i0, i1) of the parts from `base`, `part` apart, or,
// with part 0, rows base + i0 … base + i1 − 1 one at a time.
typedef struct {
    int64_t base, part, i0, i1;
} rows_window;

int64_t ck_rows_plan_size(int32_t threads) {
    return (int64_t)sizeof(ck_rows_plan) + (threads > 0 ? threads : 1) * (int64_t)sizeof(ck_rows_range);
}

// Steps of `parts` rows of k values in `dtype` that make about 128 KB: what a thread claims of
// its range at least, and (int8) what all input rows take their turns at before the next.
static int64_t rows_chunk(int32_t parts, int64_t k, int32_t dtype) {
    const int64_t row_bytes = dtype == CK_Q8 ? k + k / CK_Q8_BLOCK * 4 : k * (dtype == CK_F32 ? 4 : 2);
    const int64_t chunk = ((int64_t)128 << 10) / (parts * (row_bytes > 0 ? row_bytes : 1));
    return chunk > 0 ? chunk : 1;
}

static int32_t rows_plan_init(ck_rows_plan *plan, int64_t j0, int64_t j1, int32_t threads, int32_t parts, int64_t chunk) {
    plan->threads = threads > 0 ? threads : 1;
    plan->parts = parts;
    plan->chunk = chunk;
    for (int32_t t = 0; t < plan->threads; t++) {
        ck_rows_range *r = &plan->range[t];
        r->base = j0 + (j1 - j0) * t / plan->threads;
        r->end = j0 + (j1 - j0) * (t + 1) / plan->threads;
        r->part = (r->end - r->base) / parts;
        if (plan->threads > 1 && r->part > (int64_t)UINT32_MAX) return 0;
        r->steps = plan->threads > 1 ? (uint64_t)r->part << 32 : 0;
        r->leftovers_taken = 0;
    }
    return 1;
}

// The next run for `thread` (*phase 0 on its first call), or 0 when every row is taken. First
// its own steps from the front, a quarter of what is left at a time but at least `chunk` (each
// claim is a locked instruction, which stalls the loads in flight); then the rows after the parts
// of any range, its own first; then, while steps are left anywhere, a quarter of the most a range
// has left (at least `chunk`), from its far end: the owner's streams run on unbroken while a
// thread that finished first takes the rest from behind, in pieces small enough that a range
// whose owner never comes is shared by all the others.
static int rows_next(ck_rows_plan *plan, int32_t thread, int32_t *phase, rows_window *window) {
    if (*phase == 0) {
        ck_rows_range *own = &plan->range[thread];
        if (plan->threads == 1) {
            *phase = 1;
            if (own->part > 0) {
                *window = (rows_window){own->base, own->part, 0, own->part};
                return 1;
            }
        } else {
            uint64_t seen = __atomic_load_n(&own->steps, __ATOMIC_RELAXED);
            for (;;) {
                const uint64_t lo = (uint32_t)seen, hi = seen >> 32;
                if (lo >= hi) break;
                const uint64_t left = hi - lo, quarter = left / 4 > (uint64_t)plan->chunk ? left / 4 : (uint64_t)plan->chunk;
                const uint64_t end = quarter < left ? lo + quarter : hi;
                if (__atomic_compare_exchange_n(&own->steps, &seen, end | hi << 32, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                    *window = (rows_window){own->base, own->part, (int64_t)lo, (int64_t)end};
                    return 1;
                }
            }
            *phase = 1;
        }
    }
    for (int32_t i = 0; i < plan->threads; i++) {
        ck_rows_range *r = &plan->range[(thread + i) % plan->threads];
        const int64_t first = r->base + plan->parts * r->part;
        if (first < r->end && !__atomic_load_n(&r->leftovers_taken, __ATOMIC_RELAXED) &&
            !__atomic_exchange_n(&r->leftovers_taken, 1, __ATOMIC_RELAXED)) {
            *window = (rows_window){first, 0, 0, r->end - first};
            return 1;
        }
    }
    for (;;) {
        int32_t victim = -1;
        uint64_t most = 0, seen = 0;
        for (int32_t t = 0; t < plan->threads; t++) {
            const uint64_t steps = __atomic_load_n(&plan->range[t].steps, __ATOMIC_RELAXED);
            const uint64_t lo = (uint32_t)steps, hi = steps >> 32;
            if (hi > lo && hi - lo > most) {
                most = hi - lo;
                victim = t;
                seen = steps;
            }
        }
        if (victim < 0) return 0;
        const uint64_t lo = (uint32_t)seen, hi = seen >> 32, quarter = most / 4 > (uint64_t)plan->chunk ? most / 4 : (uint64_t)plan->chunk;
        const uint64_t take = quarter < most ? quarter : most;
        if (__atomic_compare_exchange_n(&plan->range[victim].steps, &seen, lo | (hi - take) << 32, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            *window = (rows_window){plan->range[victim].base, plan->range[victim].part, (int64_t)(hi - take), (int64_t)hi};
            return 1;
        }
    }
}

int32_t ck_rows_plan_next(ck_rows_plan *plan, int32_t thread, int32_t *phase, int64_t run[4]) {
    rows_window window;
    if (!rows_next(plan, thread, phase, &window)) return 0;
    run[0] = window.base, run[1] = window.part, run[2] = window.i0, run[3] = window.i1;
    return 1;
}

int32_t ck_rows_plan_parts(const ck_rows_plan *plan) { return plan->parts; }

// A plan for one thread over [j0, j1), on the caller's stack: the single-range kernel calls.
#define CK_ONE_RANGE_PLAN(NAME, J0, J1, PARTS, CHUNK)                                                 \
    _Alignas(64) unsigned char NAME##_bytes[sizeof(ck_rows_plan) + sizeof(ck_rows_range)];           \
    ck_rows_plan *NAME = (ck_rows_plan *)NAME##_bytes;                                                 \
    rows_plan_init(NAME, J0, J1, 1, PARTS, CHUNK)

void ck_widen(const void *src, int32_t dtype, int64_t offset, int64_t count, float *dst) {
    for (int64_t i = 0; i < count; i++) dst[i] = load_scalar(src, dtype, offset + i);
}

// MARK: - linear

// Eight partial sums side by side, so the compiler vectorizes the dot product with whatever
// the baseline offers (SSE2, NEON) without reassociating a single sum.
CK_INLINE float dot_generic(const float *x, const float *w, int64_t k) {
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t c = 0;
    for (; c + 8 <= k; c += 8)
        for (int lane = 0; lane < 8; lane++) part[lane] += x[c + lane] * w[c + lane];
    float sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    for (; c < k; c++) sum += x[c] * w[c];
    return sum;
}

static void linear_generic(const float *x, int64_t ldx, int64_t m, int64_t k, const void *w, int64_t ldw, int32_t dtype,
                           const float *bias, float *y, int64_t ldy, int64_t j0, int64_t j1) {
    enum { SPAN = 1024 };
    float row[SPAN];
    const float *wf = (const float *)w;
    for (int64_t j = j0; j < j1; j++) {
        for (int64_t r = 0; r < m; r++) y[r * ldy + j] = bias ? bias[j] : 0.0f;
        for (int64_t c0 = 0; c0 < k; c0 += SPAN) {
            const int64_t span = k - c0 < SPAN ? k - c0 : SPAN;
            const float *wr = wf + j * ldw + c0;
            if (dtype != CK_F32) {
                ck_widen(w, dtype, j * ldw + c0, span, row);
                wr = row;
            }
            for (int64_t r = 0; r < m; r++) y[r * ldy + j] += dot_generic(x + r * ldx + c0, wr, span);
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
    static CK_AVX512 void NAME(const float *x, int64_t ldx, int64_t m, int64_t k, const void *w, int64_t ldw,          \
                               const float *bias, float *y, int64_t ldy, int64_t j0, int64_t j1) {                                              \
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
                        for (int b = 0; b < 4; b++) wv[b] = LOAD(w, (j + b) * ldw + c);                              \
                        for (int a = 0; a < 4; a++) xv[a] = _mm512_loadu_ps(x + (r + a) * ldx + c);                  \
                        for (int a = 0; a < 4; a++)                                                                \
                            for (int b = 0; b < 4; b++) acc[a][b] = _mm512_fmadd_ps(xv[a], wv[b], acc[a][b]);       \
                    }                                                                                              \
                    for (int a = 0; a < 4; a++)                                                                    \
                        for (int b = 0; b < 4; b++) {                                                              \
                            float sum = _mm512_reduce_add_ps(acc[a][b]);                                           \
                            for (int64_t c = k16; c < k; c++)                                                      \
                                sum += x[(r + a) * ldx + c] * load_scalar(w, DTYPE, (j + b) * ldw + c);                \
                            y[(r + a) * ldy + j + b] = sum + (bias ? bias[j + b] : 0.0f);                          \
                        }                                                                                          \
                }                                                                                                  \
                for (; r < me; r++) {                                                                              \
                    /* The last 1-3 input rows: two sums per weight row, so eight FMA chains hide the latency. */\
                    __m512 acc[4], acc2[4];                                                                        \
                    for (int b = 0; b < 4; b++) acc[b] = acc2[b] = _mm512_setzero_ps();                            \
                    int64_t c = 0;                                                                                 \
                    for (; c + 32 <= k16; c += 32) {                                                               \
                        __m512 xv = _mm512_loadu_ps(x + r * ldx + c), xv2 = _mm512_loadu_ps(x + r * ldx + c + 16); \
                        for (int b = 0; b < 4; b++) {                                                              \
                            acc[b] = _mm512_fmadd_ps(xv, LOAD(w, (j + b) * ldw + c), acc[b]);                      \
                            acc2[b] = _mm512_fmadd_ps(xv2, LOAD(w, (j + b) * ldw + c + 16), acc2[b]);              \
                        }                                                                                          \
                    }                                                                                              \
                    for (; c < k16; c += 16) {                                                                     \
                        __m512 xv = _mm512_loadu_ps(x + r * ldx + c);                                              \
                        for (int b = 0; b < 4; b++) acc[b] = _mm512_fmadd_ps(xv, LOAD(w, (j + b) * ldw + c), acc[b]); \
                    }                                                                                              \
                    for (int b = 0; b < 4; b++) {                                                                  \
                        float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[b], acc2[b]));                          \
                        for (int64_t c = k16; c < k; c++) sum += x[r * ldx + c] * load_scalar(w, DTYPE, (j + b) * ldw + c); \
                        y[r * ldy + j + b] = sum + (bias ? bias[j + b] : 0.0f);                                    \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
            for (; j < j1; j++) {                                                                                  \
                for (int64_t r = mb; r < me; r++) {                                                                \
                    __m512 acc = _mm512_setzero_ps();                                                              \
                    for (int64_t c = 0; c < k16; c += 16)                                                          \
                        acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * ldx + c), LOAD(w, j * ldw + c), acc);            \
                    float sum = _mm512_reduce_add_ps(acc);                                                         \
                    for (int64_t c = k16; c < k; c++) sum += x[r * ldx + c] * load_scalar(w, DTYPE, j * ldw + c);      \
                    y[r * ldy + j] = sum + (bias ? bias[j] : 0.0f);                                                \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

CK_DEFINE_LINEAR(linear_f32_avx512, CK_LOAD_F32, CK_F32)
CK_DEFINE_LINEAR(linear_bf16_avx512, CK_LOAD_BF16, CK_BF16)
CK_DEFINE_LINEAR(linear_f16_avx512, CK_LOAD_F16, CK_F16)

// AVX2 + FMA: 8 lanes, a 4 (input rows) × 2 (weight rows) block to stay within 16 registers.
#define CK_LOAD8_F32(w, index) _mm256_loadu_ps((const float *)(w) + (index))
#define CK_LOAD8_BF16(w, index) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)(w) + (index)))), 16))
#define CK_LOAD8_F16(w, index) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)(w) + (index))))

// One input row times one weight row (from element `offset` of w): the leftover rows of the
// kernels below.
#define CK_DEFINE_DOT_AVX2(NAME, LOAD, DTYPE)                                                                      \
    CK_INLINE CK_AVX2 float NAME(const float *x, int64_t k, const void *w, int64_t offset) {                      \
        const int64_t k8 = k & ~(int64_t)7;                                                                        \
        __m256 acc = _mm256_setzero_ps();                                                                          \
        for (int64_t c = 0; c < k8; c += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + c), LOAD(w, offset + c), acc); \
        float sum = hsum256(acc);                                                                                  \
        for (int64_t c = k8; c < k; c++) sum += x[c] * load_scalar(w, DTYPE, offset + c);                          \
        return sum;                                                                                                \
    }

CK_DEFINE_DOT_AVX2(dot_f32_avx2, CK_LOAD8_F32, CK_F32)
CK_DEFINE_DOT_AVX2(dot_bf16_avx2, CK_LOAD8_BF16, CK_BF16)
CK_DEFINE_DOT_AVX2(dot_f16_avx2, CK_LOAD8_F16, CK_F16)

#define CK_DEFINE_LINEAR_AVX2(NAME, LOAD, DOT, DTYPE)                                                                   \
    static CK_AVX2 void NAME(const float *x, int64_t ldx, int64_t m, int64_t k, const void *w, int64_t ldw,            \
                             const float *bias, float *y, int64_t ldy, int64_t j0, int64_t j1) {                                                \
        const int64_t k8 = k & ~(int64_t)7;                                                                        \
        const int64_t block = 64;                                                                                  \
        for (int64_t mb = 0; mb < m; mb += block) {                                                                \
            const int64_t me = mb + block < m ? mb + block : m;                                                    \
            int64_t j = j0;                                                                                        \
            for (; j + 2 <= j1; j += 2) {                                                                          \
                int64_t r = mb;                                                                                    \
                for (; r + 4 <= me; r += 4) {                                                                      \
                    __m256 acc[4][2];                                                                              \
                    for (int a = 0; a < 4; a++) acc[a][0] = acc[a][1] = _mm256_setzero_ps();                       \
                    for (int64_t c = 0; c < k8; c += 8) {                                                          \
                        const __m256 w0 = LOAD(w, j * ldw + c), w1 = LOAD(w, (j + 1) * ldw + c);                      \
                        for (int a = 0; a < 4; a++) {                                                              \
                            const __m256 xv = _mm256_loadu_ps(x + (r + a) * ldx + c);                                \
                            acc[a][0] = _mm256_fmadd_ps(xv, w0, acc[a][0]);                                        \
                            acc[a][1] = _mm256_fmadd_ps(xv, w1, acc[a][1]);                                        \
                        }                                                                                          \
                    }                                                                                              \
                    for (int a = 0; a < 4; a++)                                                                    \
                        for (int b = 0; b < 2; b++) {                                                              \
                            float sum = hsum256(acc[a][b]);                                                        \
                            for (int64_t c = k8; c < k; c++)                                                       \
                                sum += x[(r + a) * ldx + c] * load_scalar(w, DTYPE, (j + b) * ldw + c);                \
                            y[(r + a) * ldy + j + b] = sum + (bias ? bias[j + b] : 0.0f);                          \
                        }                                                                                          \
                }                                                                                                  \
                for (; r < me; r++) {                                                                              \
                    /* The last 1-3 input rows: four sums per weight row, so eight FMA chains hide the latency. */\
                    __m256 acc0[4], acc1[4];                                                                       \
                    for (int u = 0; u < 4; u++) acc0[u] = acc1[u] = _mm256_setzero_ps();                           \
                    int64_t c = 0;                                                                                 \
                    for (; c + 32 <= k8; c += 32)                                                                  \
                        for (int u = 0; u < 4; u++) {                                                              \
                            const __m256 xv = _mm256_loadu_ps(x + r * ldx + c + 8 * u);                            \
                            acc0[u] = _mm256_fmadd_ps(xv, LOAD(w, j * ldw + c + 8 * u), acc0[u]);                  \
                            acc1[u] = _mm256_fmadd_ps(xv, LOAD(w, (j + 1) * ldw + c + 8 * u), acc1[u]);            \
                        }                                                                                          \
                    for (; c < k8; c += 8) {                                                                       \
                        const __m256 xv = _mm256_loadu_ps(x + r * ldx + c);                                        \
                        acc0[0] = _mm256_fmadd_ps(xv, LOAD(w, j * ldw + c), acc0[0]);                              \
                        acc1[0] = _mm256_fmadd_ps(xv, LOAD(w, (j + 1) * ldw + c), acc1[0]);                        \
                    }                                                                                              \
                    float s0 = hsum256(_mm256_add_ps(_mm256_add_ps(acc0[0], acc0[1]), _mm256_add_ps(acc0[2], acc0[3]))); \
                    float s1 = hsum256(_mm256_add_ps(_mm256_add_ps(acc1[0], acc1[1]), _mm256_add_ps(acc1[2], acc1[3]))); \
                    for (int64_t c = k8; c < k; c++) {                                                             \
                        s0 += x[r * ldx + c] * load_scalar(w, DTYPE, j * ldw + c);                                     \
                        s1 += x[r * ldx + c] * load_scalar(w, DTYPE, (j + 1) * ldw + c);                               \
                    }                                                                                              \
                    y[r * ldy + j] = s0 + (bias ? bias[j] : 0.0f);                                                 \
                    y[r * ldy + j + 1] = s1 + (bias ? bias[j + 1] : 0.0f);                                         \
                }                                                                                                  \
            }                                                                                                      \
            for (; j < j1; j++)                                                                                    \
                for (int64_t r = mb; r < me; r++) y[r * ldy + j] = DOT(x + r * ldx, k, w, j * ldw) + (bias ? bias[j] : 0.0f); \
        }                                                                                                          \
    }

CK_DEFINE_LINEAR_AVX2(linear_f32_avx2, CK_LOAD8_F32, dot_f32_avx2, CK_F32)
CK_DEFINE_LINEAR_AVX2(linear_bf16_avx2, CK_LOAD8_BF16, dot_bf16_avx2, CK_BF16)
CK_DEFINE_LINEAR_AVX2(linear_f16_avx2, CK_LOAD8_F16, dot_f16_avx2, CK_F16)

// Matrix-vector products (decoding). Four weight rows at a time, as in the product above, but
// one from each quarter of a plan's range of rows rather than four neighbours: each core then
// streams four long runs of memory instead of hopping between rows only 1.5–16 KB long, which
// this machine's memory system serves markedly faster (768-wide bf16 rows in a C harness: 26–30 GB/s
// against 17–20; docs/benchmarks.md). Each row's sum is computed alone, as before. Step i of a
// window: row i of each of its `parts` parts.
CK_INLINE void gemv_part_rows(const rows_window *win, int64_t i, int parts, int64_t *rows) {
    for (int u = 0; u < parts; u++) rows[u] = win->base + u * win->part + i;
}

// fp32 and fp16 weights, ROWS rows at a time (one from each ROWS-th part of a plan's range) on
// W-bit vectors of LANES floats (LOAD widens them), two sums per row: 2 · ROWS FMA chains hide
// the latency. A row after the parts goes alone through the same sums, so its bits do not
// depend on which rows the plan puts after the parts.
#define CK_DEFINE_GEMV(NAME, TARGET, W, ROWS, HSUM, LOAD, DTYPE)                                                   \
    static TARGET void NAME(const float *x, int64_t k, const void *w, int64_t ldw, const float *bias, float *y,    \
                            ck_rows_plan *plan, int32_t thread) {                                                  \
        enum { LANES = (W) / 32 };                                                                                 \
        const int64_t kv = k & ~(int64_t)(2 * LANES - 1);                                                          \
        rows_window win;                                                                                           \
        for (int32_t phase = 0; rows_next(plan, thread, &phase, &win);) {                                          \
            for (int64_t i = win.i0; win.part && i < win.i1; i++) {                                                \
                int64_t rows[ROWS];                                                                                \
                gemv_part_rows(&win, i, ROWS, rows);                                                               \
                __m##W acc0[ROWS], acc1[ROWS];                                                                     \
                for (int u = 0; u < (ROWS); u++) acc0[u] = acc1[u] = _mm##W##_setzero_ps();                        \
                for (int64_t c = 0; c < kv; c += 2 * LANES) {                                                      \
                    const __m##W x0 = _mm##W##_loadu_ps(x + c), x1 = _mm##W##_loadu_ps(x + c + LANES);             \
                    for (int u = 0; u < (ROWS); u++) {                                                             \
                        acc0[u] = _mm##W##_fmadd_ps(x0, LOAD(w, rows[u] * ldw + c), acc0[u]);                      \
                        acc1[u] = _mm##W##_fmadd_ps(x1, LOAD(w, rows[u] * ldw + c + LANES), acc1[u]);              \
                    }                                                                                              \
                }                                                                                                  \
                for (int u = 0; u < (ROWS); u++) {                                                                 \
                    float sum = HSUM(_mm##W##_add_ps(acc0[u], acc1[u]));                                           \
                    for (int64_t c = kv; c < k; c++) sum += x[c] * load_scalar(w, DTYPE, rows[u] * ldw + c);       \
                    y[rows[u]] = sum + (bias ? bias[rows[u]] : 0.0f);                                              \
                }                                                                                                  \
            }                                                                                                      \
            for (int64_t j = win.base + win.i0; !win.part && j < win.base + win.i1; j++) {                         \
                __m##W acc0 = _mm##W##_setzero_ps(), acc1 = _mm##W##_setzero_ps();                                 \
                for (int64_t c = 0; c < kv; c += 2 * LANES) {                                                      \
                    acc0 = _mm##W##_fmadd_ps(_mm##W##_loadu_ps(x + c), LOAD(w, j * ldw + c), acc0);                \
                    acc1 = _mm##W##_fmadd_ps(_mm##W##_loadu_ps(x + c + LANES), LOAD(w, j * ldw + c + LANES), acc1); \
                }                                                                                                  \
                float sum = HSUM(_mm##W##_add_ps(acc0, acc1));                                                     \
                for (int64_t c = kv; c < k; c++) sum += x[c] * load_scalar(w, DTYPE, j * ldw + c);                 \
                y[j] = sum + (bias ? bias[j] : 0.0f);                                                              \
            }                                                                                                      \
        }                                                                                                          \
    }

CK_DEFINE_GEMV(gemv_f32_avx2, CK_AVX2, 256, 4, hsum256, CK_LOAD8_F32, CK_F32)
CK_DEFINE_GEMV(gemv_f16_avx2, CK_AVX2, 256, 4, hsum256, CK_LOAD8_F16, CK_F16)

// Batched decoding (2 to CK_GEMV_BATCH input rows): the same four quarter rows, each weight
// loaded once for up to three input rows at a time (12 accumulators, the most AVX2's 16
// registers hold beside the inputs: 7 loads per 12 FMAs). The first pass over the four rows reads
// them from memory, the later ones find them in L1/L2 and keep the cores busy with arithmetic,
// during which the hardware prefetcher, seeing no misses, fetches nothing: so the second pass
// asks for the next four rows (row j + 1 follows row j in memory) into L2. At batch 8 this product is
// bound by arithmetic as much as by memory (C harness, 130m shape: 20–21 → 17–19 ms a step).
//
// R (2 to RMAX) input rows from x (stride ldx) times the four weight rows at `rows`, into y, on
// vectors of LANES floats (VEC, with its zero, load, fused multiply-add and sum); when
// `prefetch`, each line of the next four rows (rows[u] + 1, ESIZE-byte weights) is prefetched
// into L2 as the same line of these rows is read.
#define CK_DEFINE_GEMV_BLOCK(NAME, TARGET, VEC, LANES, RMAX, ZERO, LOADU, FMADD, HSUM, LOAD, DTYPE, ESIZE)             \
    CK_INLINE TARGET void NAME(const float *x, int64_t ldx, int R, int64_t k, const void *w, int64_t ldw,           \
                               const int64_t rows[4], int prefetch, const float *bias, float *y, int64_t ldy) {    \
        const int64_t kv = k & ~(int64_t)((LANES) - 1), line = 64 / (ESIZE);                                       \
        const char *row[4], *next[4];                                                                              \
        for (int u = 0; u < 4; u++) {                                                                              \
            row[u] = (const char *)w + rows[u] * ldw * (ESIZE);                                                    \
            next[u] = row[u] + ldw * (ESIZE);                                                                      \
        }                                                                                                          \
        VEC acc[RMAX][4];                                                                                          \
        for (int t = 0; t < R; t++)                                                                                \
            for (int u = 0; u < 4; u++) acc[t][u] = ZERO();                                                        \
        for (int64_t c = 0; c < kv; c += (LANES)) {                                                                \
            if (prefetch && c % line == 0)                                                                         \
                for (int u = 0; u < 4; u++) _mm_prefetch(next[u] + c * (ESIZE), _MM_HINT_T1);                      \
            VEC xv[RMAX];                                                                                          \
            for (int t = 0; t < R; t++) xv[t] = LOADU(x + t * ldx + c);                                            \
            for (int u = 0; u < 4; u++) {                                                                          \
                const VEC wv = LOAD(row[u], c);                                                                    \
                for (int t = 0; t < R; t++) acc[t][u] = FMADD(xv[t], wv, acc[t][u]);                               \
            }                                                                                                      \
        }                                                                                                          \
        for (int u = 0; u < 4; u++) {                                                                              \
            const float b = bias ? bias[rows[u]] : 0.0f;                                                           \
            for (int t = 0; t < R; t++) {                                                                          \
                float sum = HSUM(acc[t][u]);                                                                       \
                for (int64_t c = kv; c < k; c++) sum += x[t * ldx + c] * load_scalar(w, DTYPE, rows[u] * ldw + c); \
                y[t * ldy + rows[u]] = sum + b;                                                                    \
            }                                                                                                      \
        }                                                                                                          \
    }

#define CK_DEFINE_GEMV_BLOCK_AVX2(NAME, LOAD, DTYPE, ESIZE)                                                             \
    CK_DEFINE_GEMV_BLOCK(NAME, CK_AVX2, __m256, 8, 3, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps, hsum256,    \
                         LOAD, DTYPE, ESIZE)

// The batched product on a plan's rows: for each step's four quarter rows, PASSES (below) takes
// the input rows through BLOCK; the rows after the parts one at a time through DOT.
#define CK_DEFINE_GEMV_BATCH(NAME, TARGET, BLOCK, DOT, PASSES)                                                     \
    static TARGET void NAME(const float *x, int64_t ldx, int64_t m, int64_t k, const void *w, int64_t ldw,         \
                            const float *bias, float *y, int64_t ldy, ck_rows_plan *plan, int32_t thread) {        \
        rows_window win;                                                                                           \
        for (int32_t phase = 0; rows_next(plan, thread, &phase, &win);) {                                          \
            for (int64_t i = win.i0; win.part && i < win.i1; i++) {                                                \
                int64_t rows[4];                                                                                   \
                gemv_part_rows(&win, i, 4, rows);                                                                  \
                PASSES(BLOCK)                                                                                      \
            }                                                                                                      \
            for (int64_t j = win.base + win.i0; !win.part && j < win.base + win.i1; j++)                           \
                for (int64_t r = 0; r < m; r++) y[r * ldy + j] = DOT(x + r * ldx, k, w, j * ldw) + (bias ? bias[j] : 0.0f); \
        }                                                                                                          \
    }

// Passes of three rows, and of two when two or four are left (so never a lone row, which would
// load four weights for four FMAs; m ≥ 2); the second pass prefetches.
#define CK_GEMV_BATCH_PASSES_AVX2(BLOCK)                                                                           \
    for (int64_t r = 0, pass = 0; r < m; pass++) {                                                                 \
        const int two = m - r == 2 || m - r == 4, fetch = pass == 1 && i + 1 < win.i1;                             \
        if (two && fetch) BLOCK(x + r * ldx, ldx, 2, k, w, ldw, rows, 1, bias, y + r * ldy, ldy);                  \
        else if (two) BLOCK(x + r * ldx, ldx, 2, k, w, ldw, rows, 0, bias, y + r * ldy, ldy);                      \
        else if (fetch) BLOCK(x + r * ldx, ldx, 3, k, w, ldw, rows, 1, bias, y + r * ldy, ldy);                    \
        else BLOCK(x + r * ldx, ldx, 3, k, w, ldw, rows, 0, bias, y + r * ldy, ldy);                               \
        r += two ? 2 : 3;                                                                                          \
    }

#define CK_DEFINE_GEMV_BATCH_AVX2(NAME, BLOCK, LOAD, DOT, DTYPE, ESIZE)                                            \
    CK_DEFINE_GEMV_BLOCK_AVX2(BLOCK, LOAD, DTYPE, ESIZE)                                                           \
    CK_DEFINE_GEMV_BATCH(NAME, CK_AVX2, BLOCK, DOT, CK_GEMV_BATCH_PASSES_AVX2)

CK_DEFINE_GEMV_BATCH_AVX2(gemv_batch_f32_avx2, gemv_block_f32_avx2, CK_LOAD8_F32, dot_f32_avx2, CK_F32, 4)
CK_DEFINE_GEMV_BATCH_AVX2(gemv_batch_bf16_avx2, gemv_block_bf16_avx2, CK_LOAD8_BF16, dot_bf16_avx2, CK_BF16, 2)
CK_DEFINE_GEMV_BATCH_AVX2(gemv_batch_f16_avx2, gemv_block_f16_avx2, CK_LOAD8_F16, dot_f16_avx2, CK_F16, 2)

// The batched product with 512-bit vectors and AVX-512's 32 registers: passes of up to six input
// rows against the four quarter rows (24 accumulators; 10 loads per 24 FMAs), so a batch of 8
// reads the four rows twice instead of three times.
#define CK_DEFINE_GEMV_BLOCK_AVX512(NAME, LOAD, DTYPE, ESIZE)                                                           \
    CK_DEFINE_GEMV_BLOCK(NAME, CK_AVX512, __m512, 16, 6, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_fmadd_ps,          \
                         _mm512_reduce_add_ps, LOAD, DTYPE, ESIZE)

// Passes of equal size, at most six rows each (m ≥ 2: never a lone row). The second prefetches
// the next rows, or the only one when there is one (C harness, 130m shape, fp32 at batch 4:
// 1.09× the AVX2 kernel's time without, 0.92× with). Each size is a constant at its call, so the
// accumulators stay in registers.
#define CK_GEMV_BATCH_PASSES_AVX512(BLOCK)                                                                         \
    for (int64_t passes = (m + 5) / 6, pass = 0, r = 0; pass < passes; pass++) {                                   \
        const int R = (int)((m - r) / (passes - pass)), fetch = pass == (passes > 1 ? 1 : 0) && i + 1 < win.i1;    \
        const float *xr = x + r * ldx;                                                                             \
        float *yr = y + r * ldy;                                                                                   \
        switch (R) {                                                                                               \
        case 2: BLOCK(xr, ldx, 2, k, w, ldw, rows, fetch, bias, yr, ldy); break;                                   \
        case 3: BLOCK(xr, ldx, 3, k, w, ldw, rows, fetch, bias, yr, ldy); break;                                   \
        case 4: BLOCK(xr, ldx, 4, k, w, ldw, rows, fetch, bias, yr, ldy); break;                                   \
        case 5: BLOCK(xr, ldx, 5, k, w, ldw, rows, fetch, bias, yr, ldy); break;                                   \
        default: BLOCK(xr, ldx, 6, k, w, ldw, rows, fetch, bias, yr, ldy); break;                                  \
        }                                                                                                          \
        r += R;                                                                                                    \
    }

#define CK_DEFINE_GEMV_BATCH_AVX512(NAME, BLOCK, LOAD, DOT, DTYPE, ESIZE)                                          \
    CK_DEFINE_GEMV_BLOCK_AVX512(BLOCK, LOAD, DTYPE, ESIZE)                                                         \
    CK_DEFINE_GEMV_BATCH(NAME, CK_AVX512, BLOCK, DOT, CK_GEMV_BATCH_PASSES_AVX512)

CK_DEFINE_GEMV_BATCH_AVX512(gemv_batch_f32_avx512, gemv_block_f32_avx512, CK_LOAD_F32, dot_f32_avx2, CK_F32, 4)
CK_DEFINE_GEMV_BATCH_AVX512(gemv_batch_bf16_avx512, gemv_block_bf16_avx512, CK_LOAD_BF16, dot_bf16_avx2, CK_BF16, 2)
CK_DEFINE_GEMV_BATCH_AVX512(gemv_batch_f16_avx512, gemv_block_f16_avx512, CK_LOAD_F16, dot_f16_avx2, CK_F16, 2)

// bf16: a W-bit load holds W / 16 weights; shifting each 32-bit lane left by 16 gives the even
// ones as fp32, masking the low half gives the odd ones, so x is split into its even and odd
// elements (in runs of W / 16) once per row instead of widening every weight with a shuffle.
// ROWS weight rows at a time, one from each ROWS-th part of a plan's range (see gemv_part_rows).
// With AVX-512, eight rows: on the Xeon (C harness, the 7B shape's projections from memory on
// two threads, rounds alternating) the AVX2 kernel's four quarter rows 1.0, four with 512-bit
// vectors 1.04×, eight 1.15×. The Xeon's memory serves eight streams per core better than four
// (a plain read of 16 MB slices: 0.91× with four), and 512-bit vectors read rows in L2 at 1.5×
// the AVX2 kernel's rate on one core, which with 256-bit vectors was barely twice what one
// core gets from memory.
#define CK_DEFINE_GEMV_BF16(NAME, TARGET, W, ROWS, HSUM, FALLBACK)                                                 \
    static TARGET void NAME(const float *x, int64_t k, const void *w, int64_t ldw, const float *bias, float *y,    \
                            ck_rows_plan *plan, int32_t thread) {                                                  \
        enum { LANES = (W) / 32 };                                                                                 \
        const int64_t kv = k & ~(int64_t)(2 * LANES - 1);                                                          \
        const uint16_t *wb = (const uint16_t *)w;                                                                  \
        const __m##W##i high = _mm##W##_set1_epi32((int)0xFFFF0000u);                                              \
        /* x split into even and odd elements: on the stack for every real width (no allocation                    \
           per decoded token), on the heap beyond. */                                                              \
        float stack[8192];                                                                                         \
        float *split = kv <= 8192 ? stack : (float *)malloc((size_t)kv * sizeof(float));                           \
        if (!split) {                                                                                              \
            rows_window win;                                                                                       \
            for (int32_t phase = 0; rows_next(plan, thread, &phase, &win);)                                        \
                for (int32_t u = 0; u < (win.part ? plan->parts : 1); u++)                                         \
                    FALLBACK(x, k, 1, k, w, ldw, bias, y, 0, win.base + u * win.part + win.i0, win.base + u * win.part + win.i1); \
            return;                                                                                                \
        }                                                                                                          \
        for (int64_t c = 0; c < kv; c += 2 * LANES)                                                                \
            for (int i = 0; i < LANES; i++) {                                                                      \
                split[c + i] = x[c + 2 * i];                                                                       \
                split[c + LANES + i] = x[c + 2 * i + 1];                                                           \
            }                                                                                                      \
        rows_window win;                                                                                           \
        for (int32_t phase = 0; rows_next(plan, thread, &phase, &win);) {                                          \
            for (int64_t i = win.i0; win.part && i < win.i1; i++) {                                                \
                int64_t rows[ROWS];                                                                                \
                gemv_part_rows(&win, i, ROWS, rows);                                                               \
                __m##W even[ROWS], odd[ROWS];                                                                      \
                for (int u = 0; u < (ROWS); u++) even[u] = odd[u] = _mm##W##_setzero_ps();                         \
                for (int64_t c = 0; c < kv; c += 2 * LANES) {                                                      \
                    const __m##W xe = _mm##W##_loadu_ps(split + c), xo = _mm##W##_loadu_ps(split + c + LANES);     \
                    for (int u = 0; u < (ROWS); u++) {                                                             \
                        const __m##W##i v = _mm##W##_loadu_si##W((const void *)(wb + rows[u] * ldw + c));          \
                        even[u] = _mm##W##_fmadd_ps(_mm##W##_castsi##W##_ps(_mm##W##_slli_epi32(v, 16)), xe, even[u]); \
                        odd[u] = _mm##W##_fmadd_ps(_mm##W##_castsi##W##_ps(_mm##W##_and_si##W(v, high)), xo, odd[u]); \
                    }                                                                                              \
                }                                                                                                  \
                for (int u = 0; u < (ROWS); u++) {                                                                 \
                    float sum = HSUM(_mm##W##_add_ps(even[u], odd[u]));                                            \
                    for (int64_t c = kv; c < k; c++) sum += x[c] * bf16_to_f32(wb[rows[u] * ldw + c]);             \
                    y[rows[u]] = sum + (bias ? bias[rows[u]] : 0.0f);                                              \
                }                                                                                                  \
            }                                                                                                      \
            for (int64_t j = win.base + win.i0; !win.part && j < win.base + win.i1; j++) {                         \
                __m##W e = _mm##W##_setzero_ps(), o = _mm##W##_setzero_ps();                                       \
                for (int64_t c = 0; c < kv; c += 2 * LANES) {                                                      \
                    const __m##W##i v = _mm##W##_loadu_si##W((const void *)(wb + j * ldw + c));                    \
                    e = _mm##W##_fmadd_ps(_mm##W##_castsi##W##_ps(_mm##W##_slli_epi32(v, 16)), _mm##W##_loadu_ps(split + c), e); \
                    o = _mm##W##_fmadd_ps(_mm##W##_castsi##W##_ps(_mm##W##_and_si##W(v, high)),                    \
                                          _mm##W##_loadu_ps(split + c + LANES), o);                                \
                }                                                                                                  \
                float sum = HSUM(_mm##W##_add_ps(e, o));                                                           \
                for (int64_t c = kv; c < k; c++) sum += x[c] * bf16_to_f32(wb[j * ldw + c]);                       \
                y[j] = sum + (bias ? bias[j] : 0.0f);                                                              \
            }                                                                                                      \
        }                                                                                                          \
        if (split != stack) free(split);                                                                           \
    }

CK_DEFINE_GEMV_BF16(gemv_bf16_avx2, CK_AVX2, 256, 4, hsum256, linear_bf16_avx2)
CK_DEFINE_GEMV_BF16(gemv_bf16_avx512, CK_AVX512, 512, 8, _mm512_reduce_add_ps, linear_bf16_avx512)

// The same eight eighth rows for fp32 and fp16 weights with 512-bit vectors.
CK_DEFINE_GEMV(gemv_f32_avx512, CK_AVX512, 512, 8, _mm512_reduce_add_ps, CK_LOAD_F32, CK_F32)
CK_DEFINE_GEMV(gemv_f16_avx512, CK_AVX512, 512, 8, _mm512_reduce_add_ps, CK_LOAD_F16, CK_F16)

#endif

// How many streams side by side the matrix-vector kernel for m input rows and `dtype` reads on
// this thread's instruction set: a plan's `parts`.
static int32_t gemv_parts(int64_t m, int32_t dtype) {
    if (m == 1 && ck_isa() >= (dtype == CK_Q8 ? 3 : 2)) return 8;
    return ck_isa() >= 1 ? 4 : 1;
}

// m input rows (up to CK_GEMV_BATCH) against the rows of a plan: the kernel that reads the
// plan's parts on this thread's instruction set, or the portable product, run by run.
static void gemv_rows(const float *x, int64_t ldx, int64_t m, int64_t k, const void *w, int64_t ldw, int32_t dtype,
                      const float *bias, float *y, int64_t ldy, ck_rows_plan *plan, int32_t thread) {
#ifdef CK_X86
    if (m == 1 && plan->parts == 8 && ck_isa() >= 2) {
        switch (dtype) {
        case CK_BF16: gemv_bf16_avx512(x, k, w, ldw, bias, y, plan, thread); return;
        case CK_F16: gemv_f16_avx512(x, k, w, ldw, bias, y, plan, thread); return;
        default: gemv_f32_avx512(x, k, w, ldw, bias, y, plan, thread); return;
        }
    }
    if (m == 1 && plan->parts == 4 && ck_isa() >= 1) {
        switch (dtype) {
        case CK_BF16: gemv_bf16_avx2(x, k, w, ldw, bias, y, plan, thread); return;
        case CK_F16: gemv_f16_avx2(x, k, w, ldw, bias, y, plan, thread); return;
        default: gemv_f32_avx2(x, k, w, ldw, bias, y, plan, thread); return;
        }
    }
    if (m > 1 && m <= CK_GEMV_BATCH && plan->parts == 4 && ck_isa() >= 2) {
        switch (dtype) {
        case CK_BF16: gemv_batch_bf16_avx512(x, ldx, m, k, w, ldw, bias, y, ldy, plan, thread); return;
        case CK_F16: gemv_batch_f16_avx512(x, ldx, m, k, w, ldw, bias, y, ldy, plan, thread); return;
        default: gemv_batch_f32_avx512(x, ldx, m, k, w, ldw, bias, y, ldy, plan, thread); return;
        }
    }
    if (m > 1 && m <= CK_GEMV_BATCH && plan->parts == 4 && ck_isa() >= 1) {
        switch (dtype) {
        case CK_BF16: gemv_batch_bf16_avx2(x, ldx, m, k, w, ldw, bias, y, ldy, plan, thread); return;
        case CK_F16: gemv_batch_f16_avx2(x, ldx, m, k, w, ldw, bias, y, ldy, plan, thread); return;
        default: gemv_batch_f32_avx2(x, ldx, m, k, w, ldw, bias, y, ldy, plan, thread); return;
        }
    }
#endif
    rows_window win;
    for (int32_t phase = 0; rows_next(plan, thread, &phase, &win);)
        for (int32_t u = 0; u < (win.part ? plan->parts : 1); u++)
            linear_generic(x, ldx, m, k, w, ldw, dtype, bias, y, ldy, win.base + u * win.part + win.i0,
                           win.base + u * win.part + win.i1);
}

void ck_gemv_rows(const float *x, int64_t m, int64_t k, const void *w, int32_t dtype, const float *bias, float *y,
                  int64_t ldy, ck_rows_plan *plan, int32_t thread) {
    gemv_rows(x, k, m, k, w, k, dtype, bias, y, ldy, plan, thread);
}

/// y[r, j] = Σ_c x[r, c] · w[j, c] (+ bias[j]) with row strides: the one matrix product every
/// other kernel (projections, the SSD's four products) is built on.
static void gemm_nt(const float *x, int64_t ldx, int64_t m, int64_t k, const void *w, int64_t ldw, int32_t dtype,
                    const float *bias, float *y, int64_t ldy, int64_t j0, int64_t j1) {
#ifdef CK_X86
    // Decoding (one input row, or a batch of a few): one row is bound by memory (on AVX-512,
    // eight streams per core), a batch by memory and arithmetic (on AVX-512, passes of up to six
    // rows). More rows (prefill) go through the block kernels, which keep each weight in
    // registers for four input rows.
    if (ck_isa() >= 1 && m <= CK_GEMV_BATCH) {
        const int32_t parts = gemv_parts(m, dtype);
        CK_ONE_RANGE_PLAN(plan, j0, j1, parts, rows_chunk(parts, k, dtype));
        gemv_rows(x, ldx, m, k, w, ldw, dtype, bias, y, ldy, plan, 0);
        return;
    }
    if (ck_isa() >= 2) {
        switch (dtype) {
        case CK_BF16: linear_bf16_avx512(x, ldx, m, k, w, ldw, bias, y, ldy, j0, j1); return;
        case CK_F16: linear_f16_avx512(x, ldx, m, k, w, ldw, bias, y, ldy, j0, j1); return;
        default: linear_f32_avx512(x, ldx, m, k, w, ldw, bias, y, ldy, j0, j1); return;
        }
    }
    if (ck_isa() == 1) {
        switch (dtype) {
        case CK_BF16: linear_bf16_avx2(x, ldx, m, k, w, ldw, bias, y, ldy, j0, j1); return;
        case CK_F16: linear_f16_avx2(x, ldx, m, k, w, ldw, bias, y, ldy, j0, j1); return;
        default: linear_f32_avx2(x, ldx, m, k, w, ldw, bias, y, ldy, j0, j1); return;
        }
    }
#endif
    linear_generic(x, ldx, m, k, w, ldw, dtype, bias, y, ldy, j0, j1);
}

void ck_linear(const float *x, int64_t m, int64_t k, const void *w, int32_t dtype, const float *bias, float *y,
               int64_t ldy, int64_t j0, int64_t j1) {
    gemm_nt(x, k, m, k, w, k, dtype, bias, y, ldy, j0, j1);
}

// MARK: - int8 weights

// One block of 32 activations quantized as the weights are: scale = max |x| / 127 (NaN ignored;
// below the smallest normal float it counts as 0), q = round-half-even(x · (1 / scale)) clamped
// to ±127, NaN to 127: the operations of Swift's WeightView.quantizeBlock, one by one. rintf
// (not a fused multiply-add, which some targets would form from x · inverse + c) rounds the
// rounded product, as Swift does.
CK_INLINE float q8_quantize_block(const float *x, int8_t *q) {
    float largest = 0.0f;
    for (int i = 0; i < CK_Q8_BLOCK; i++) {
        const float magnitude = fabsf(x[i]);
        if (magnitude > largest) largest = magnitude;
    }
    const float scale = largest / 127.0f;
    const float inverse = scale >= FLT_MIN ? 1.0f / scale : 0.0f;
    for (int i = 0; i < CK_Q8_BLOCK; i++) {
        const float product = x[i] * inverse;
        float v = rintf(product);
        v = v > 127.0f ? 127.0f : v;
        v = v < -127.0f ? -127.0f : v;
        q[i] = v == v ? (int8_t)v : 127;
    }
    return scale;
}

#ifdef CK_X86
// The same, 8 lanes at a time (every step is the scalar one's, so the results are identical).
static CK_AVX2 float q8_quantize_block_avx2(const float *x, int8_t *q) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 largest = _mm256_setzero_ps();
    // max(|x|, largest) returns largest when |x| is NaN.
    for (int i = 0; i < CK_Q8_BLOCK; i += 8) largest = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), largest);
    __m128 half = _mm_max_ps(_mm256_castps256_ps128(largest), _mm256_extractf128_ps(largest, 1));
    half = _mm_max_ps(half, _mm_movehl_ps(half, half));
    half = _mm_max_ss(half, _mm_shuffle_ps(half, half, 1));
    const float scale = _mm_cvtss_f32(half) / 127.0f;
    const __m256 inverse = _mm256_set1_ps(scale >= FLT_MIN ? 1.0f / scale : 0.0f);
    __m256i lanes[4];
    for (int i = 0; i < 4; i++) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(v, _mm256_set1_ps(127.0f));  // NaN → 127 (the second operand)
        v = _mm256_max_ps(v, _mm256_set1_ps(-127.0f));
        lanes[i] = _mm256_cvtps_epi32(v);
    }
    const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(lanes[0], lanes[1]), _mm256_packs_epi32(lanes[2], lanes[3]));
    _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return scale;
}
#endif

// One block on the best instruction set (both give identical results).
static float q8_quantize(const float *x, int8_t *q) {
#ifdef CK_X86
    if (ck_isa() >= 1) return q8_quantize_block_avx2(x, q);
#endif
    return q8_quantize_block(x, q);
}

int64_t ck_q8_offset(int64_t c, int64_t k) {
    const int64_t run = c / (4 * CK_Q8_BLOCK);
    if (run >= k / (4 * CK_Q8_BLOCK)) return c;  // one of the last blocks % 4, in order
    const int64_t b = c / CK_Q8_BLOCK % 4, e = c % CK_Q8_BLOCK;
    return run * 4 * CK_Q8_BLOCK + 16 * (e / 4) + 4 * b + e % 4;
}

// Block b of a row of k values (its 32 values in order in `block`) put where the stored order
// keeps it: eight 4-byte pieces 16 bytes apart inside a run, or as they are among the last
// blocks % 4.
CK_INLINE void q8_place_block(int8_t *row, int64_t k, int64_t b, const int8_t *block) {
    if (b / 4 >= k / (4 * CK_Q8_BLOCK)) {
        memcpy(row + b * CK_Q8_BLOCK, block, CK_Q8_BLOCK);
        return;
    }
    int8_t *run = row + (b - b % 4) * CK_Q8_BLOCK + 4 * (b % 4);
    for (int piece = 0; piece < CK_Q8_BLOCK / 4; piece++) memcpy(run + 16 * piece, block + 4 * piece, 4);
}

void ck_q8_interleave_rows(int8_t *rows, int64_t count, int64_t k) {
    int8_t run[4 * CK_Q8_BLOCK];
    for (int64_t r = 0; r < count; r++)
        for (int64_t start = 0; start + 4 * CK_Q8_BLOCK <= k; start += 4 * CK_Q8_BLOCK) {
            memcpy(run, rows + r * k + start, sizeof run);
            for (int64_t b = 0; b < 4; b++) q8_place_block(rows + r * k, k, start / CK_Q8_BLOCK + b, run + b * CK_Q8_BLOCK);
        }
}

int32_t ck_q8_with_quantized_rows(const float *x, int64_t rows, int64_t k, ck_q8_body body, void *context) {
    // Decoding quantizes before every product: on the stack up to a 32 KB row set, so the hot
    // path allocates nothing.
    enum { STACK = 4 * 8192 };
    int8_t stack_values[STACK];
    float stack_scales[STACK / CK_Q8_BLOCK];
    const int64_t blocks = k / CK_Q8_BLOCK;
    const int on_stack = rows * k <= STACK;
    int8_t *xq = on_stack ? stack_values : (int8_t *)malloc((size_t)(rows * k));
    float *xs = on_stack ? stack_scales : (float *)malloc((size_t)(rows * blocks) * sizeof(float));
    if (!xq || !xs) {
        if (!on_stack) {
            free(xq);
            free(xs);
        }
        return 0;
    }
    int8_t block[CK_Q8_BLOCK];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < blocks; b++) {
            xs[r * blocks + b] = q8_quantize(x + r * k + b * CK_Q8_BLOCK, block);
            q8_place_block(xq + r * k, k, b, block);
        }
    body(context, xq, xs);
    if (!on_stack) {
        free(xq);
        free(xs);
    }
    return 1;
}

// Σ_b scale_w[b] · scale_x[b] · Σ_i q_w[i] · q_x[i] for one weight row (exact integer block
// sums), both rows in stored order: a run's byte p belongs to its block p / 4 % 4.
static float q8_dot_generic(const int8_t *w, const float *ws, const int8_t *x, const float *xs, int64_t blocks) {
    float sum = 0.0f;
    int64_t b = 0;
    for (; b + 4 <= blocks; b += 4) {
        int32_t block[4] = {0, 0, 0, 0};
        for (int p = 0; p < 4 * CK_Q8_BLOCK; p++) block[p / 4 % 4] += (int32_t)w[b * CK_Q8_BLOCK + p] * (int32_t)x[b * CK_Q8_BLOCK + p];
        for (int i = 0; i < 4; i++) sum += (float)block[i] * (ws[b + i] * xs[b + i]);
    }
    for (; b < blocks; b++) {
        int32_t block = 0;
        for (int i = 0; i < CK_Q8_BLOCK; i++) block += (int32_t)w[b * CK_Q8_BLOCK + i] * (int32_t)x[b * CK_Q8_BLOCK + i];
        sum += (float)block * (ws[b] * xs[b]);
    }
    return sum;
}

#ifdef CK_X86
// 8 lanes of a block's 32 products: |w| (unsigned, up to 128: a stored −128 included) times x
// with w's sign, in pairs to 16 bits (at most 2 · 128 · 127, no saturation), then to 32 bits.
CK_INLINE CK_AVX2 __m256i q8_block_with_abs_avx2(__m256i wq, __m256i wabs, __m256i xq) {
    const __m256i pairs = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(xq, wq));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

CK_INLINE CK_AVX2 __m256i q8_block_avx2(const int8_t *w, __m256i xq) {
    const __m256i wq = _mm256_loadu_si256((const __m256i *)w);
    return q8_block_with_abs_avx2(wq, _mm256_abs_epi8(wq), xq);
}

// A run of four blocks (stored interleaved, see ck_q8_offset) in one vector of exact 32-bit
// sums: lane i holds block i % 4's products of values e with e / 4 % 2 == i / 4. Without VNNI,
// converting and scaling each block's 8 lanes cost as much as the integer work; this converts
// and scales four blocks at once.
CK_INLINE CK_AVX2 __m256i q8_four_blocks_avx2(const int8_t *w, const __m256i x[4]) {
    const __m256i low = _mm256_add_epi32(q8_block_avx2(w, x[0]), q8_block_avx2(w + CK_Q8_BLOCK, x[1]));
    const __m256i high = _mm256_add_epi32(q8_block_avx2(w + 2 * CK_Q8_BLOCK, x[2]), q8_block_avx2(w + 3 * CK_Q8_BLOCK, x[3]));
    return _mm256_add_epi32(low, high);
}

// The last blocks % 4 of a row (stored in order), from block b on, one at a time into acc[u].
CK_INLINE CK_AVX2 void q8_leftover_blocks_avx2(const int8_t *xr, const float *sr, int64_t k, const int8_t *q,
                                               const float *scales, const int64_t *rows, int count, int64_t b, __m256 *acc) {
    const int64_t blocks = k / CK_Q8_BLOCK;
    for (; b < blocks; b++) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(xr + b * CK_Q8_BLOCK));
        for (int u = 0; u < count; u++)
            acc[u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_block_avx2(q + rows[u] * k + b * CK_Q8_BLOCK, x)),
                                     _mm256_set1_ps(scales[rows[u] * blocks + b] * sr[b]), acc[u]);
    }
}

// Σ over blocks of (w scale · x scale) · (block sum) for up to 4 weight rows at once (row
// rows[u] of q [n, k] and of scales [n, blocks]), the activation blocks loaded once for all.
CK_INLINE CK_AVX2 void q8_rows_avx2(const int8_t *xr, const float *sr, int64_t k, const int8_t *q, const float *scales,
                                    const int64_t *rows, int count, float *sums) {
    const int64_t blocks = k / CK_Q8_BLOCK;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t b = 0;
    for (; b + 4 <= blocks; b += 4) {
        __m256i x[4];
        for (int i = 0; i < 4; i++) x[i] = _mm256_loadu_si256((const __m256i *)(xr + (b + i) * CK_Q8_BLOCK));
        // [s_b … s_b+3 | s_b … s_b+3]: the four blocks' x scales in both halves.
        const __m256 xs = _mm256_broadcast_ps((const __m128 *)(sr + b));
        for (int u = 0; u < count; u++) {
            const __m256 scale = _mm256_mul_ps(_mm256_broadcast_ps((const __m128 *)(scales + rows[u] * blocks + b)), xs);
            acc[u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_four_blocks_avx2(q + rows[u] * k + b * CK_Q8_BLOCK, x)), scale, acc[u]);
        }
    }
    q8_leftover_blocks_avx2(xr, sr, k, q, scales, rows, count, b, acc);
    for (int u = 0; u < count; u++) sums[u] = hsum256(acc[u]);
}

typedef void (*q8_four_inputs)(const int8_t *xq, const float *xs, int64_t k, const int8_t *q, const float *scales,
                               int64_t row, float sums[4]);

// One weight row (q row `row`, its scales) against four input rows at once (batches and
// prompts, where the products are bound by arithmetic): each run of four blocks is loaded and its
// |w| (`vpabsb`, one of the four integer instructions per block) taken once for the four rows
// instead of once per row (C harness, 7B's input projection: 4 rows 1.06–1.10×, 16 rows
// 1.07–1.09×; 7B batch-4 decode 1.12–1.18×). The same operations per row as q8_rows_avx2, in the
// same order, so the sums are bit-identical.
CK_INLINE CK_AVX2 void q8_row_four_inputs_avx2(const int8_t *xq, const float *xs, int64_t k, const int8_t *q,
                                               const float *scales, int64_t row, float sums[4]) {
    const int64_t blocks = k / CK_Q8_BLOCK;
    const int8_t *w = q + row * k;
    const float *ws = scales + row * blocks;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t b = 0;
    for (; b + 4 <= blocks; b += 4) {
        __m256i wq[4], wabs[4];
        for (int i = 0; i < 4; i++) {
            wq[i] = _mm256_loadu_si256((const __m256i *)(w + (b + i) * CK_Q8_BLOCK));
            wabs[i] = _mm256_abs_epi8(wq[i]);
        }
        const __m256 wscale = _mm256_broadcast_ps((const __m128 *)(ws + b));
        for (int r = 0; r < 4; r++) {
            const int8_t *xr = xq + r * k + b * CK_Q8_BLOCK;
            __m256i x[4];
            for (int i = 0; i < 4; i++) x[i] = _mm256_loadu_si256((const __m256i *)(xr + i * CK_Q8_BLOCK));
            const __m256i low = _mm256_add_epi32(q8_block_with_abs_avx2(wq[0], wabs[0], x[0]), q8_block_with_abs_avx2(wq[1], wabs[1], x[1]));
            const __m256i high = _mm256_add_epi32(q8_block_with_abs_avx2(wq[2], wabs[2], x[2]), q8_block_with_abs_avx2(wq[3], wabs[3], x[3]));
            const __m256 scale = _mm256_mul_ps(wscale, _mm256_broadcast_ps((const __m128 *)(xs + r * blocks + b)));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(low, high)), scale, acc[r]);
        }
    }
    for (int r = 0; r < 4; r++) {
        q8_leftover_blocks_avx2(xq + r * k, xs + r * blocks, k, q, scales, &row, 1, b, &acc[r]);
        sums[r] = hsum256(acc[r]);
    }
}

// AVX-512 VNNI: a run of four blocks is two 64-byte loads, each holding 16 values of every
// block, so 32-bit lane i of the sums belongs to block i % 4 as in the AVX2 kernel (lanes i, i + 4,
// i + 8, i + 12 alike). vpdpbusd multiplies unsigned bytes by signed ones and adds each four
// products into a lane. The weights are made unsigned by flipping their sign bits (w + 128, a
// stored −128 included), and each lane starts from −128 times the sum of its eight x values (four
// in each 64-byte half), once per run for all the rows: Σ (w + 128) · x − 128 · Σ x = Σ w · x, exact (at most
// 8 · 255 · 127 + 8 · 128 · 127 a lane over a run). Two vector instructions per 64 weights
// (the flip, vpdpbusd) where taking |w| and moving w's sign onto x took four (C harness, rows
// in L2: 44–50 → 79–86 GB/s on one core of a Xeon with VNNI; the same sums).
CK_INLINE CK_AVX512_VNNI __m512i q8_dot64_vnni(__m512i acc, const int8_t *w, __m512i xq) {
    const __m512i offset = _mm512_xor_si512(_mm512_loadu_si512((const void *)w), _mm512_set1_epi8((char)0x80));
    return _mm512_dpbusd_epi32(acc, offset, xq);
}

// q8_rows_avx2 for up to eight weight rows with 512-bit runs; the last blocks % 4 (in order) on
// the same AVX2 path.
CK_INLINE CK_AVX512_VNNI void q8_rows_vnni(const int8_t *xr, const float *sr, int64_t k, const int8_t *q, const float *scales,
                                           const int64_t *rows, int count, float *sums) {
    const int64_t blocks = k / CK_Q8_BLOCK;
    const __m512i bias128 = _mm512_set1_epi8((char)0x80);
    __m512 acc[8];
    for (int u = 0; u < 8; u++) acc[u] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= blocks; b += 4) {
        const __m512i x0 = _mm512_loadu_si512((const void *)(xr + b * CK_Q8_BLOCK));
        const __m512i x1 = _mm512_loadu_si512((const void *)(xr + b * CK_Q8_BLOCK + 64));
        // −128 · Σ x per lane: what the rows' offset weights add.
        const __m512i start = _mm512_sub_epi32(
            _mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), bias128, x0), bias128, x1));
        // [s_b … s_b+3] four times: the four blocks' x scales in every 128-bit lane.
        const __m512 xs = _mm512_broadcast_f32x4(_mm_loadu_ps(sr + b));
        for (int u = 0; u < count; u++) {
            const int8_t *w = q + rows[u] * k + b * CK_Q8_BLOCK;
            const __m512i sum = q8_dot64_vnni(q8_dot64_vnni(start, w, x0), w + 64, x1);
            const __m512 scale = _mm512_mul_ps(_mm512_broadcast_f32x4(_mm_loadu_ps(scales + rows[u] * blocks + b)), xs);
            acc[u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[u]);
        }
    }
    __m256 tail[8];
    for (int u = 0; u < 8; u++) tail[u] = _mm256_setzero_ps();
    q8_leftover_blocks_avx2(xr, sr, k, q, scales, rows, count, b, tail);
    for (int u = 0; u < count; u++) sums[u] = _mm512_reduce_add_ps(acc[u]) + hsum256(tail[u]);
}

// Rows of activations against int8 weights, PARTS weight rows at a time, one from each PARTS-th
// part of a plan's range as in the float kernels, so each core streams PARTS long runs of memory:
// four, or eight for one input row with VNNI, which the Xeon's memory serves better (the 7B
// decode 1.035×; batches and prompts gained nothing from eight: docs/benchmarks.md). Every
// input row takes its turn at a run of the plan's `chunk` steps (about 128 KB of weights) before
// the next run, CK_GEMV_BATCH rows at a time, so the weights are read from memory once (the
// later turns find them in L2) while each group's activations stay in cache. Each input row goes
// through ROWS (q8_rows_avx2 or q8_rows_vnni: the PARTS weight rows at once, PARTS independent
// FMA chains, the activation blocks loaded once for all), except that with FOUR_INPUTS
// (q8_row_four_inputs_avx2; NULL for VNNI, not measured: there each row costs one vpdpbusd per 64
// weights beside the load and flip, so little is left to share) and rows of
// CK_Q8_FOUR_INPUTS_MIN_K values or more, each four input rows of a run take the PARTS weight
// rows one after another, together; the last rows % 4 of a run still go through ROWS. Shorter
// rows keep ROWS for all: read from memory one at a time they lost (C harness, 768 values:
// 0.94–0.95× at 4 and 8 input rows; the 130m model's batch-4 and batch-8 decode 0.94× and
// 1.0×), 1,024 values gained 0–3%, 2,048 values 4–7%.
enum { CK_Q8_FOUR_INPUTS_MIN_K = 2048 };
#define CK_DEFINE_GEMV_Q8(NAME, TARGET, PARTS, ROWS, FOUR_INPUTS)                                                  \
    static TARGET void NAME(const int8_t *xq, const float *xs, int64_t m, int64_t k, const int8_t *q,              \
                            const float *scales, const float *bias, float *y, int64_t ldy,                         \
                            ck_rows_plan *plan, int32_t thread) {                                                  \
        const int64_t blocks = k / CK_Q8_BLOCK;                                                                    \
        const q8_four_inputs four_inputs = FOUR_INPUTS;                                                            \
        rows_window win;                                                                                           \
        for (int32_t phase = 0; rows_next(plan, thread, &phase, &win);)                                            \
            for (int64_t s = win.i0, e; s < win.i1; s = e) {                                                       \
                e = win.i1 - s > plan->chunk ? s + plan->chunk : win.i1;                                           \
                for (int64_t r0 = 0; r0 < m; r0 += CK_GEMV_BATCH) {                                                \
                    const int64_t r1 = m - r0 < CK_GEMV_BATCH ? m : r0 + CK_GEMV_BATCH;                            \
                    const int64_t grouped = four_inputs && k >= CK_Q8_FOUR_INPUTS_MIN_K ? r0 + (r1 - r0) / 4 * 4 : r0; \
                    for (int64_t i = s; win.part && i < e; i++) {                                                  \
                        int64_t rows[PARTS];                                                                       \
                        gemv_part_rows(&win, i, PARTS, rows);                                                      \
                        for (int64_t r = r0; r < grouped; r += 4)                                                  \
                            for (int u = 0; u < PARTS; u++) {                                                      \
                                float sums[4];                                                                     \
                                four_inputs(xq + r * k, xs + r * blocks, k, q, scales, rows[u], sums);             \
                                for (int v = 0; v < 4; v++) y[(r + v) * ldy + rows[u]] = sums[v] + (bias ? bias[rows[u]] : 0.0f); \
                            }                                                                                      \
                        for (int64_t r = grouped; r < r1; r++) {                                                   \
                            float sums[PARTS];                                                                     \
                            ROWS(xq + r * k, xs + r * blocks, k, q, scales, rows, PARTS, sums);                    \
                            for (int u = 0; u < PARTS; u++) y[r * ldy + rows[u]] = sums[u] + (bias ? bias[rows[u]] : 0.0f); \
                        }                                                                                          \
                    }                                                                                              \
                    for (int64_t j = win.base + s; !win.part && j < win.base + e; j++)                             \
                        for (int64_t r = r0; r < r1; r++) {                                                        \
                            float sum;                                                                             \
                            ROWS(xq + r * k, xs + r * blocks, k, q, scales, &j, 1, &sum);                          \
                            y[r * ldy + j] = sum + (bias ? bias[j] : 0.0f);                                        \
                        }                                                                                          \
                }                                                                                                  \
            }                                                                                                      \
    }

CK_DEFINE_GEMV_Q8(gemv_q8_avx2, CK_AVX2, 4, q8_rows_avx2, q8_row_four_inputs_avx2)
CK_DEFINE_GEMV_Q8(gemv_q8_vnni, CK_AVX512_VNNI, 4, q8_rows_vnni, NULL)
CK_DEFINE_GEMV_Q8(gemv_q8_vnni_eighths, CK_AVX512_VNNI, 8, q8_rows_vnni, NULL)
#endif

int32_t ck_rows_plan_init(ck_rows_plan *plan, int64_t m, int64_t n, int64_t k, int32_t dtype, int32_t threads) {
    const int32_t parts = gemv_parts(m, dtype);
    return rows_plan_init(plan, 0, n, threads, parts, rows_chunk(parts, k, dtype));
}

void ck_gemv_q8_rows(const int8_t *xq, const float *xs, int64_t m, int64_t k, const int8_t *q, const float *scales,
                     const float *bias, float *y, int64_t ldy, ck_rows_plan *plan, int32_t thread) {
#ifdef CK_X86
    if (plan->parts == 8 && ck_isa() >= 3) {
        gemv_q8_vnni_eighths(xq, xs, m, k, q, scales, bias, y, ldy, plan, thread);
        return;
    }
    if (plan->parts == 4 && ck_isa() >= 3) {
        gemv_q8_vnni(xq, xs, m, k, q, scales, bias, y, ldy, plan, thread);
        return;
    }
    if (plan->parts == 4 && ck_isa() >= 1) {
        gemv_q8_avx2(xq, xs, m, k, q, scales, bias, y, ldy, plan, thread);
        return;
    }
#endif
    const int64_t blocks = k / CK_Q8_BLOCK;
    rows_window win;
    for (int32_t phase = 0; rows_next(plan, thread, &phase, &win);)
        for (int32_t u = 0; u < (win.part ? plan->parts : 1); u++)
            for (int64_t j = win.base + u * win.part + win.i0; j < win.base + u * win.part + win.i1; j++)
                for (int64_t r = 0; r < m; r++)
                    y[r * ldy + j] = q8_dot_generic(q + j * k, scales + j * blocks, xq + r * k, xs + r * blocks, blocks) +
                                     (bias ? bias[j] : 0.0f);
}

void ck_gemv_q8(const int8_t *xq, const float *xs, int64_t m, int64_t k, const int8_t *q, const float *scales,
                const float *bias, float *y, int64_t ldy, int64_t j0, int64_t j1) {
    const int32_t parts = gemv_parts(m, CK_Q8);
    CK_ONE_RANGE_PLAN(plan, j0, j1, parts, rows_chunk(parts, k, CK_Q8));
    ck_gemv_q8_rows(xq, xs, m, k, q, scales, bias, y, ldy, plan, 0);
}

// MARK: - exp, SiLU

// x · sigmoid(x) for one value: the portable SiLU and every vector kernel's tail.
CK_INLINE float silu1(float x) { return x / (1.0f + expf(-x)); }

#ifdef CK_X86
// e^x to about 1 ulp (Cephes expf polynomial), 2^n applied with scalef (no overflow handling needed).
CK_INLINE CK_AVX512 __m512 exp512(__m512 x) {
    // Operands ordered so a NaN x passes through (min/max return their second operand on NaN).
    x = _mm512_max_ps(_mm512_set1_ps(-103.97208f), _mm512_min_ps(_mm512_set1_ps(88.72283935546875f), x));
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

CK_INLINE CK_AVX2 __m256 exp256(__m256 x) {
    // Operands ordered so a NaN x passes through (min/max return their second operand on NaN).
    x = _mm256_max_ps(_mm256_set1_ps(-87.3365478515625f), _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n through the exponent field; n is within [-126, 127] after the clamp.
    __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

static CK_AVX2 void exp_row_avx2(float *v, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(v + i, exp256(_mm256_loadu_ps(v + i)));
    for (; i < count; i++) v[i] = expf(v[i]);
}

CK_INLINE CK_AVX2 __m256 silu256(__m256 v) {
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp256(_mm256_sub_ps(_mm256_setzero_ps(), v))));
}

static CK_AVX2 void silu_avx2(float *x, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(x + i, silu256(_mm256_loadu_ps(x + i)));
    for (; i < count; i++) x[i] = silu1(x[i]);
}

static CK_AVX512 void silu_avx512(float *x, int64_t count) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(x + i, _mm512_div_ps(v, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), v)))));
    }
    for (; i < count; i++) x[i] = silu1(x[i]);
}

// One row of ck_rmsnorm: y · silu(z) (or x alone) and its sum of squares in one pass per
// group, the scaling in a second, where the portable code makes four or five.
static CK_AVX2 void rmsnorm_row_avx2(const float *x, const float *z, const float *w, float eps, int64_t d, int64_t group,
                                     float *y) {
    for (int64_t g0 = 0; g0 < d; g0 += group) {
        const int64_t g1 = g0 + group;
        __m256 squares = _mm256_setzero_ps();
        int64_t i = g0;
        for (; i + 8 <= g1; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            if (z) v = _mm256_mul_ps(silu256(_mm256_loadu_ps(z + i)), v);
            _mm256_storeu_ps(y + i, v);
            squares = _mm256_fmadd_ps(v, v, squares);
        }
        float sum = hsum256(squares);
        for (; i < g1; i++) {
            y[i] = z ? silu1(z[i]) * x[i] : x[i];
            sum += y[i] * y[i];
        }
        const float scale = 1.0f / sqrtf(sum / (float)group + eps);
        const __m256 vscale = _mm256_set1_ps(scale);
        for (i = g0; i + 8 <= g1; i += 8)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(y + i), vscale), _mm256_loadu_ps(w + i)));
        for (; i < g1; i++) y[i] = y[i] * scale * w[i];
    }
}

// The decode conv (one token, taps w [k, c]): each channel's k − 1 stored inputs and x in one
// pass that also shifts the state by one and applies SiLU, where the portable code makes a pass
// per tap and per state row. Channels [c0, c1) in whole vectors; returns the first channel left
// (fewer than 8) for the portable code.
static CK_AVX2 int64_t conv_step_silu_avx2(const float *x, const float *w, const float *bias, int64_t k, float *state,
                                           float *y, int64_t c0, int64_t c1, int64_t c) {
    const int64_t keep = k - 1;
    int64_t ch = c0;
    for (; ch + 8 <= c1; ch += 8) {
        __m256 acc = bias ? _mm256_loadu_ps(bias + ch) : _mm256_setzero_ps();
        for (int64_t j = 0; j < k; j++) {
            // Tap j reads state row j, the last one x; row j − 1 takes what tap j read.
            const __m256 input = _mm256_loadu_ps(j < keep ? state + j * c + ch : x + ch);
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + j * c + ch), input, acc);
            if (j > 0) _mm256_storeu_ps(state + (j - 1) * c + ch, input);
        }
        _mm256_storeu_ps(y + ch, silu256(acc));
    }
    return ch;
}
#endif

static void exp_row_generic(float *v, int64_t count) {
    for (int64_t i = 0; i < count; i++) v[i] = expf(v[i]);
}

typedef void (*exp_row_fn)(float *, int64_t);

void ck_silu(float *x, int64_t count) {
#ifdef CK_X86
    if (ck_isa() >= 2) { silu_avx512(x, count); return; }
    if (ck_isa() == 1) { silu_avx2(x, count); return; }
#endif
    for (int64_t i = 0; i < count; i++) x[i] = silu1(x[i]);
}

// MARK: - RMSNorm

void ck_rmsnorm(const float *x, const float *z, const float *w, float eps, int64_t rows, int64_t d, int64_t group,
                float *y) {
#ifdef CK_X86
    if (ck_isa() >= 1) {
        for (int64_t r = 0; r < rows; r++) rmsnorm_row_avx2(x + r * d, z ? z + r * d : NULL, w, eps, d, group, y + r * d);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        if (z) {
            const float *zr = z + r * d;
            for (int64_t i = 0; i < d; i++) yr[i] = silu1(zr[i]) * xr[i];
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
#ifdef CK_X86
    // Decoding: the whole vectors here, the last channels below.
    if (l == 1 && ck_isa() >= 1) c0 = conv_step_silu_avx2(x, w, bias, k, state, y, c0, c1, c);
#endif
    conv_silu_impl(x, l, ldx, w, bias, k, state, y, ldy, c0, c1, c);
    for (int64_t t = 0; t < l; t++) ck_silu(y + t * ldy + c0, c1 - c0);
}

// MARK: - SSD

int64_t ck_ssd_workspace(int64_t q, int64_t p, int64_t n) { return q * q + 3 * p * q + n * q + p * n + 3 * q + 1; }

// The chunked SSD with its four products done by gemm_nt (so they run on the same register-
// blocked micro-kernels as the projections), in the steps of transformers' torch_forward.
CK_INLINE void ssd_impl(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B, const float *C,
                        int64_t ldbc, int64_t l, int64_t p, int64_t n, int64_t q, float A, float D, float *state,
                        float *y, int64_t ldy, float *work, exp_row_fn exp_row_f) {
    float *G = work;             // [q, q]  C·Bᵀ of the chunk, then M
    float *Xt = G + q * q;       // [p, q]  x of the chunk, transposed
    float *Xw = Xt + p * q;      // [p, q]  the same, weighted by exp(cum_last − cum_s)·dt_s
    float *Yoff = Xw + p * q;    // [q, p]  C·Sᵀ
    float *Bt = Yoff + q * p;    // [n, q]  B of the chunk, transposed
    float *Sc = Bt + n * q;      // [p, n]  the chunk's own contribution to the state
    float *a = Sc + p * n;       // [q]     A·dt
    float *cum = a + q;          // [q]     cumulative sum of a within the chunk
    float *L = cum + q;          // [q + 1] exp(segsum) of one row; the chunk's decays
    for (int64_t c0 = 0; c0 < l; c0 += q) {
        const int64_t len = l - c0 < q ? l - c0 : q;
        const float *Cc = C + c0 * ldbc, *Bc = B + c0 * ldbc, *xc = x + c0 * ldx;
        float running = 0;
        for (int64_t s = 0; s < len; s++) {
            a[s] = A * dt[(c0 + s) * lddt];
            running += a[s];
            cum[s] = running;
        }
        for (int64_t s = 0; s < len; s++) {
            for (int64_t i = 0; i < p; i++) Xt[i * q + s] = xc[s * ldx + i];
            for (int64_t j = 0; j < n; j++) Bt[j * q + s] = Bc[s * ldbc + j];
        }

        // 1. Diagonal blocks: M = (C·Bᵀ) ⊙ exp(segsum(a)) ⊙ dt, lower-triangular; Y_diag = M·x.
        gemm_nt(Cc, ldbc, len, n, Bc, ldbc, CK_F32, NULL, G, q, 0, len);
        for (int64_t t = 0; t < len; t++) {
            float seg = 0;
            L[t] = 0;
            for (int64_t s = t - 1; s >= 0; s--) {
                seg += a[s + 1];
                L[s] = seg;
            }
            exp_row_f(L, t + 1);
            float *Gt = G + t * q;
            for (int64_t s = 0; s <= t; s++) Gt[s] *= L[s] * dt[(c0 + s) * lddt];
            for (int64_t s = t + 1; s < len; s++) Gt[s] = 0;
        }
        gemm_nt(G, q, len, len, Xt, q, CK_F32, NULL, y + c0 * ldy, ldy, 0, p);

        // 4. Off-diagonal: Y_off = exp(cum_t) · C_t · S (the state entering the chunk); plus D·x.
        gemm_nt(Cc, ldbc, len, n, state, n, CK_F32, NULL, Yoff, p, 0, p);
        for (int64_t t = 0; t < len; t++) L[t] = cum[t];
        exp_row_f(L, len);
        for (int64_t t = 0; t < len; t++) {
            float *yt = y + (c0 + t) * ldy;
            const float *xt = xc + t * ldx;
            const float decay = L[t];
            for (int64_t i = 0; i < p; i++) yt[i] += decay * Yoff[t * p + i] + D * xt[i];
        }

        // 2–3. The state after the chunk: exp(cum_last) · S + Σ_s exp(cum_last − cum_s) · dt_s · x_s ⊗ B_s.
        for (int64_t s = 0; s < len; s++) L[s] = cum[len - 1] - cum[s];
        L[len] = cum[len - 1];
        exp_row_f(L, len + 1);
        for (int64_t s = 0; s < len; s++) L[s] *= dt[(c0 + s) * lddt];
        for (int64_t i = 0; i < p; i++)
            for (int64_t s = 0; s < len; s++) Xw[i * q + s] = Xt[i * q + s] * L[s];
        gemm_nt(Xw, q, p, len, Bt, q, CK_F32, NULL, Sc, n, 0, n);
        const float total = L[len];
        for (int64_t e = 0; e < p * n; e++) state[e] = state[e] * total + Sc[e];
    }
}

static void ssd_generic(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B, const float *C,
                        int64_t ldbc, int64_t l, int64_t p, int64_t n, int64_t q, float A, float D, float *state,
                        float *y, int64_t ldy, float *work) {
    ssd_impl(x, ldx, dt, lddt, B, C, ldbc, l, p, n, q, A, D, state, y, ldy, work, exp_row_generic);
}

#ifdef CK_X86
static CK_AVX2 void ssd_avx2(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B,
                             const float *C, int64_t ldbc, int64_t l, int64_t p, int64_t n, int64_t q, float A,
                             float D, float *state, float *y, int64_t ldy, float *work) {
    ssd_impl(x, ldx, dt, lddt, B, C, ldbc, l, p, n, q, A, D, state, y, ldy, work, exp_row_avx2);
}

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
    if (ck_isa() >= 2) { ssd_avx512(x, ldx, dt, lddt, B, C, ldbc, l, p, n, q, A, D, state, y, ldy, work); return; }
    if (ck_isa() == 1) { ssd_avx2(x, ldx, dt, lddt, B, C, ldbc, l, p, n, q, A, D, state, y, ldy, work); return; }
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

#ifdef CK_X86
CK_INLINE CK_AVX2 __m256 bf16x8_load_avx2(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

// fp32 → bf16 bits (in the low half of each lane), rounded to nearest even. A NaN is not kept:
// bf16x8_store_avx2 mends it per lane, the bf16 step per row.
CK_INLINE CK_AVX2 __m256i bf16_round_bits_avx2(__m256 v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    return _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
}

// f32_to_bf16 on 8 lanes.
CK_INLINE CK_AVX2 void bf16x8_store_avx2(uint16_t *p, __m256 v) {
    const __m256i high = _mm256_srli_epi32(_mm256_castps_si256(v), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m256i lanes = _mm256_blendv_epi8(bf16_round_bits_avx2(v), _mm256_or_si256(high, _mm256_set1_epi32(0x40)), nan);
    // Pack the 32-bit lanes (each below 2^16) to 16 bits: [0–3 0–3 | 4–7 4–7] → 0–7.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lanes, lanes), 0x08);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(packed));
}
#endif

CK_INLINE float f32_load(float value) { return value; }
CK_INLINE float f32_store(float value) { return value; }

// One recurrent step of one head with its state stored as T: each element read with LOAD,
// updated in fp32, stored with STORE, and its fp32 value used for y.
#define CK_DEFINE_SSM_STEP_GENERIC(name, T, LOAD, STORE)                                                     \
    static void name(const float *x, float dt, float A, float D, const float *B, const float *C, int64_t p,  \
                     int64_t n, T *state, float *y) {                                                        \
        const float dA = expf(dt * A);                                                                       \
        for (int64_t i = 0; i < p; i++) {                                                                    \
            T *si = state + i * n;                                                                           \
            float out = 0;                                                                                   \
            for (int64_t j = 0; j < n; j++) {                                                                \
                const float s = LOAD(si[j]) * dA + dt * x[i] * B[j];                                         \
                si[j] = STORE(s);                                                                            \
                out += s * C[j];                                                                             \
            }                                                                                                \
            y[i] = out + D * x[i];                                                                           \
        }                                                                                                    \
    }

#ifdef CK_X86
static CK_AVX2 void ssm_step_avx2(const float *x, float dt, float A, float D, const float *B, const float *C, int64_t p,
                                  int64_t n, float *state, float *y) {
    const float dA = expf(dt * A);
    const int64_t n8 = n & ~(int64_t)7;
    const __m256 vdA = _mm256_set1_ps(dA);
    for (int64_t i = 0; i < p; i++) {
        float *si = state + i * n;
        const __m256 dtx = _mm256_set1_ps(dt * x[i]);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t j = 0; j < n8; j += 8) {
            const __m256 s = _mm256_fmadd_ps(_mm256_loadu_ps(si + j), vdA, _mm256_mul_ps(dtx, _mm256_loadu_ps(B + j)));
            _mm256_storeu_ps(si + j, s);
            acc = _mm256_fmadd_ps(s, _mm256_loadu_ps(C + j), acc);
        }
        float out = hsum256(acc);
        for (int64_t j = n8; j < n; j++) {
            const float s = si[j] * dA + dt * x[i] * B[j];
            si[j] = s;
            out += s * C[j];
        }
        y[i] = out + D * x[i];
    }
}

// The bf16 step reads 16 state values with one load and widens them with two unpacks, which
// leave them in "unpack order": the low vector holds values 0–3 and 8–11, the high one 4–7 and
// 12–15. B and C are put in that order once per head; one pack then stores the 16 rounded
// values back in place. The value at position e of a 16 in unpack order (self-inverse).
CK_INLINE int64_t unpack_order(int64_t e) { return e < 4 || e >= 12 ? e : e < 8 ? e + 4 : e - 4; }

// The widest state rows the AVX2 bf16 step takes (its buffers are on the stack).
enum { CK_BF16_STEP_MAX_N = 256 };

static CK_AVX2 void ssm_step_bf16_avx2(const float *x, float dt, float A, float D, const float *B, const float *C,
                                       int64_t p, int64_t n, uint16_t *state, float *y) {
    const float dA = expf(dt * A);
    const int64_t n16 = n & ~(int64_t)15;
    const __m256 vdA = _mm256_set1_ps(dA);
    const __m256i zero = _mm256_setzero_si256();
    // [n16] each: B and C in unpack order; one row's new values (fp32, unpack order).
    float Bu[CK_BF16_STEP_MAX_N], Cu[CK_BF16_STEP_MAX_N], row[CK_BF16_STEP_MAX_N];
    for (int64_t j = 0; j < n16; j++) {
        Bu[j] = B[j - j % 16 + unpack_order(j % 16)];
        Cu[j] = C[j - j % 16 + unpack_order(j % 16)];
    }
    for (int64_t i = 0; i < p; i++) {
        uint16_t *si = state + i * n;
        const __m256 dtx = _mm256_set1_ps(dt * x[i]);
        __m256 acc_low = _mm256_setzero_ps(), acc_high = _mm256_setzero_ps();
        for (int64_t j = 0; j < n16; j += 16) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(si + j));
            const __m256 low = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, raw)), vdA,
                                               _mm256_mul_ps(dtx, _mm256_loadu_ps(Bu + j)));
            const __m256 high = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, raw)), vdA,
                                                _mm256_mul_ps(dtx, _mm256_loadu_ps(Bu + j + 8)));
            _mm256_storeu_ps(row + j, low);
            _mm256_storeu_ps(row + j + 8, high);
            acc_low = _mm256_fmadd_ps(low, _mm256_loadu_ps(Cu + j), acc_low);
            acc_high = _mm256_fmadd_ps(high, _mm256_loadu_ps(Cu + j + 8), acc_high);
            _mm256_storeu_si256((__m256i *)(si + j), _mm256_packus_epi32(bf16_round_bits_avx2(low), bf16_round_bits_avx2(high)));
        }
        float out = hsum256(_mm256_add_ps(acc_low, acc_high));
        for (int64_t j = n16; j < n; j++) {
            const float s = bf16_to_f32(si[j]) * dA + dt * x[i] * B[j];
            si[j] = f32_to_bf16(s);
            out += s * C[j];
        }
        // A NaN among the row's values makes `out` NaN (NaN times anything is NaN): only then
        // are they stored again, each NaN kept a quiet NaN as f32_to_bf16 keeps it. (An
        // infinite or NaN C can also make `out` NaN; the row is then stored again unchanged.)
        if (out != out)
            for (int64_t j = 0; j < n16; j++) si[j - j % 16 + unpack_order(j % 16)] = f32_to_bf16(row[j]);
        y[i] = out + D * x[i];
    }
}
#endif

CK_DEFINE_SSM_STEP_GENERIC(ssm_step_generic, float, f32_load, f32_store)
CK_DEFINE_SSM_STEP_GENERIC(ssm_step_bf16_generic, uint16_t, bf16_to_f32, f32_to_bf16)
#ifdef CK_X86
static CK_AVX2 void bf16_widen_avx2(const uint16_t *src, int64_t count, float *dst) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, bf16x8_load_avx2(src + i));
    for (; i < count; i++) dst[i] = bf16_to_f32(src[i]);
}

static CK_AVX2 void bf16_round_avx2(const float *src, int64_t count, uint16_t *dst) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) bf16x8_store_avx2(dst + i, _mm256_loadu_ps(src + i));
    for (; i < count; i++) dst[i] = f32_to_bf16(src[i]);
}
#endif

void ck_ssm_step(const float *x, float dt, float A, float D, const float *B, const float *C, int64_t p, int64_t n,
                 float *state, float *y) {
#ifdef CK_X86
    if (ck_isa() >= 2) { ssm_step_avx512(x, dt, A, D, B, C, p, n, state, y); return; }
    if (ck_isa() == 1) { ssm_step_avx2(x, dt, A, D, B, C, p, n, state, y); return; }
#endif
    ssm_step_generic(x, dt, A, D, B, C, p, n, state, y);
}

void ck_ssm_step_bf16(const float *x, float dt, float A, float D, const float *B, const float *C, int64_t p, int64_t n,
                      uint16_t *state, float *y) {
#ifdef CK_X86
    // Published Mamba-2 models have states of 128; wider rows take the portable step.
    if (ck_isa() >= 1 && n <= CK_BF16_STEP_MAX_N) { ssm_step_bf16_avx2(x, dt, A, D, B, C, p, n, state, y); return; }
#endif
    ssm_step_bf16_generic(x, dt, A, D, B, C, p, n, state, y);
}

void ck_bf16_widen(const uint16_t *src, int64_t count, float *dst) {
#ifdef CK_X86
    if (ck_isa() >= 1) { bf16_widen_avx2(src, count, dst); return; }
#endif
    for (int64_t i = 0; i < count; i++) dst[i] = bf16_to_f32(src[i]);
}

void ck_bf16_round(const float *src, int64_t count, uint16_t *dst) {
#ifdef CK_X86
    if (ck_isa() >= 1) { bf16_round_avx2(src, count, dst); return; }
#endif
    for (int64_t i = 0; i < count; i++) dst[i] = f32_to_bf16(src[i]);
}

// Several tokens of one head through the recurrence (prefill): the step above, four tokens at a
// time, so each 8-wide piece of the state is loaded and stored once per four tokens instead of
// once per token. Every element sees the same operations in the same order as four calls of
// ssm_step_avx2.
static CK_AVX2 void ssm_scan_avx2(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B,
                                  const float *C, int64_t ldbc, int64_t l, float A, float D, int64_t p, int64_t n,
                                  float *state, float *y, int64_t ldy) {
    enum { T = 4 };
    const int64_t n8 = n & ~(int64_t)7;
    int64_t t0 = 0;
    for (; t0 + T <= l; t0 += T) {
        float dA[T];
        __m256 vdA[T];
        const float *Bt[T], *Ct[T];
        for (int t = 0; t < T; t++) {
            dA[t] = expf(dt[(t0 + t) * lddt] * A);
            vdA[t] = _mm256_set1_ps(dA[t]);
            Bt[t] = B + (t0 + t) * ldbc;
            Ct[t] = C + (t0 + t) * ldbc;
        }
        for (int64_t i = 0; i < p; i++) {
            float *si = state + i * n;
            float xt[T];
            __m256 dtx[T], acc[T];
            for (int t = 0; t < T; t++) {
                xt[t] = x[(t0 + t) * ldx + i];
                dtx[t] = _mm256_set1_ps(dt[(t0 + t) * lddt] * xt[t]);
                acc[t] = _mm256_setzero_ps();
            }
            for (int64_t j = 0; j < n8; j += 8) {
                __m256 s = _mm256_loadu_ps(si + j);
                for (int t = 0; t < T; t++) {
                    s = _mm256_fmadd_ps(s, vdA[t], _mm256_mul_ps(dtx[t], _mm256_loadu_ps(Bt[t] + j)));
                    acc[t] = _mm256_fmadd_ps(s, _mm256_loadu_ps(Ct[t] + j), acc[t]);
                }
                _mm256_storeu_ps(si + j, s);
            }
            float out[T];
            for (int t = 0; t < T; t++) out[t] = hsum256(acc[t]);
            for (int64_t j = n8; j < n; j++) {
                float v = si[j];
                for (int t = 0; t < T; t++) {
                    v = v * dA[t] + dt[(t0 + t) * lddt] * xt[t] * Bt[t][j];
                    out[t] += v * Ct[t][j];
                }
                si[j] = v;
            }
            for (int t = 0; t < T; t++) y[(t0 + t) * ldy + i] = out[t] + D * xt[t];
        }
    }
    for (; t0 < l; t0++)
        ssm_step_avx2(x + t0 * ldx, dt[t0 * lddt], A, D, B + t0 * ldbc, C + t0 * ldbc, p, n, state, y + t0 * ldy);
}

void ck_ssm_scan(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B, const float *C,
                 int64_t ldbc, int64_t l, float A, float D, int64_t p, int64_t n, float *state, float *y, int64_t ldy) {
#ifdef CK_X86
    if (ck_isa() == 1) {
        ssm_scan_avx2(x, ldx, dt, lddt, B, C, ldbc, l, A, D, p, n, state, y, ldy);
        return;
    }
#endif
    // Elsewhere (AVX-512 and portable C included) one step per token.
    for (int64_t t = 0; t < l; t++)
        ck_ssm_step(x + t * ldx, dt[t * lddt], A, D, B + t * ldbc, C + t * ldbc, p, n, state, y + t * ldy);
}

// The heads of one mixer step as a pool job: each participant takes the next run of `chunk`
// heads until none is left (a worker may join late or not at all; the caller then does the
// rest). Runs of neighbouring heads keep each thread's reads of the state sequential over more
// than one head's few pages (7B's bf16 state on two threads: 14.3 → 12.1 ms a token in a C
// harness).
typedef struct {
    const float *raw_dt, *dt_bias, *xbc, *A, *D;
    float dt_min, dt_max;
    int64_t e, h, p, n, groups;
    void *ssm_state;
    int32_t ssm_dtype;
    float *y;
    int64_t chunk, next;
} mixer_heads_job;

static void mixer_heads(void *context, int32_t participant) {
    (void)participant;
    mixer_heads_job *job = context;
    const int64_t per_group = job->h / job->groups;
    for (int64_t run; (run = ck_fetch_increment(&job->next)) * job->chunk < job->h;) {
        const int64_t first = run * job->chunk, end = first + job->chunk < job->h ? first + job->chunk : job->h;
        for (int64_t head = first; head < end; head++) {
            // dt = clamp(softplus(dt + dt_bias)) (torch's threshold 20).
            const float raw = job->raw_dt[head] + job->dt_bias[head];
            float dt = raw > 20.0f ? raw : log1pf(expf(raw));
            dt = dt < job->dt_min ? job->dt_min : dt;
            dt = dt > job->dt_max ? job->dt_max : dt;
            const int64_t group = head / per_group;
            const float *B = job->xbc + job->e + group * job->n, *C = job->xbc + job->e + job->groups * job->n + group * job->n;
            if (job->ssm_dtype == CK_BF16)
                ck_ssm_step_bf16(job->xbc + head * job->p, dt, job->A[head], job->D[head], B, C, job->p, job->n,
                                 (uint16_t *)job->ssm_state + head * job->p * job->n, job->y + head * job->p);
            else
                ck_ssm_step(job->xbc + head * job->p, dt, job->A[head], job->D[head], B, C, job->p, job->n,
                            (float *)job->ssm_state + head * job->p * job->n, job->y + head * job->p);
        }
    }
}

void ck_mixer_step(const float *zxbcdt, int64_t e, int64_t conv_dim, int64_t h, int64_t p, int64_t n, int64_t groups,
                   const float *taps, const float *conv_bias, int64_t k, float *conv_state, const float *dt_bias,
                   const float *A, const float *D, float dt_min, float dt_max, void *ssm_state, int32_t ssm_dtype,
                   const float *norm_weight, float eps, int64_t norm_group, float *xbc, float *y, float *out, int32_t threads) {
    // 2. conv + SiLU over [x, B, C], the conv state shifted by one.
    ck_conv_silu(zxbcdt + e, 1, conv_dim, taps, conv_bias, k, conv_dim, conv_state, xbc, conv_dim, 0, conv_dim);
    // 3. Each head's dt and recurrent step, on the pool's threads; it is busy when this step is
    // itself one of several run in parallel: then on this one.
    const int32_t participants = threads > h ? (int32_t)h : threads;
    // h / (8 · participants) heads per run when that is 2 or more (8–12 runs per thread, so a
    // thread that joins late still finds work), else one.
    const int64_t chunk = participants > 1 && h / (8 * participants) > 1 ? h / (8 * participants) : 1;
    mixer_heads_job job = {zxbcdt + e + conv_dim, dt_bias, xbc, A, D, dt_min, dt_max, e, h, p, n, groups, ssm_state, ssm_dtype, y, chunk, 0};
    if (participants < 2 || !ck_pool_run(participants, mixer_heads, &job)) mixer_heads(&job, 0);
    // Gated RMSNorm: norm(y · silu(z)) per group.
    ck_rmsnorm(y, zxbcdt, norm_weight, eps, 1, e, norm_group, out);
}
