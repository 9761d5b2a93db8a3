// Fast CPU kernels for swift-mamba2: plain C with per-function target attributes and runtime
// CPU-feature dispatch (AVX-512 on x86-64 where the CPU has it; portable C elsewhere). Each has a
// reference twin in Swift (Sources/Tensors/Reference) with the same math.
//
// Shapes are row-major, outermost first. Sizes are element counts.
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Weight dtypes; CK_Q8 (block-quantized int8, ck_gemv_q8) only where a function says so.
enum { CK_F32 = 0, CK_BF16 = 1, CK_F16 = 2, CK_Q8 = 3 };

/// The instruction set the calling thread's kernels dispatch to: 3 = AVX-512 with VNNI (the int8
/// products' vpdpbusd), 2 = AVX-512, 1 = AVX2 + FMA, 0 = portable C. The CPU's best
/// (ck_detected_isa), or the thread's cap if that is lower.
int ck_isa(void);

/// The best instruction set this CPU runs, whatever the cap.
int ck_detected_isa(void);

/// The calling thread's cap on dispatch (0 portable, 1 AVX2, 2 AVX-512, 3 AVX-512 VNNI; -1
/// none), so tests can check every implementation the machine can run without touching other
/// threads.
int ck_thread_isa_cap(void);
void ck_set_thread_isa_cap(int level);

/// y[r, j] = Σ_c x[r, c] · w[j, c] (+ bias[j]) for rows r < m and columns j in [j0, j1).
/// x: [m, k] (row stride k); w: [n, k] in `dtype`; bias: [n] fp32 or NULL; y: row stride ldy.
void ck_linear(const float *x, int64_t m, int64_t k, const void *w, int32_t dtype,
               const float *bias, float *y, int64_t ldy, int64_t j0, int64_t j1);

/// Block-quantized int8 rows are stored with each run of four whole blocks (128 values; the last
/// `blocks % 4` blocks of a row stay in order) interleaved in 4-byte pieces: value e of the run's
/// block b is at byte 16 · (e / 4) + 4 · b + e % 4 of the run. Each 32-byte load then holds 8
/// values of all four blocks, so the decode kernel's 32-bit sums fall into per-block lanes with
/// plain additions (without VNNI, merging them with horizontal adds cost a sixth of its time).
/// The byte of a row's value c.
int64_t ck_q8_offset(int64_t c, int64_t k);

/// Rows of int8 values (rows: [count, k], k a multiple of 32) from value order to the stored
/// order above, in place.
void ck_q8_interleave_rows(int8_t *rows, int64_t count, int64_t k);

/// The same product for block-quantized int8 weights, w[j, c] = q[j, c] · scales[j, c / 32], with
/// the activations quantized the same way (W8A8, llama.cpp's Q8_0 × Q8_0): every block of 32
/// contributes scale_w · scale_x · Σ q_w · q_x. k must be a multiple of 32; q's rows (and xq's)
/// are in the stored order above. The blocks are summed in integers, from activations quantized
/// once per product by `ck_q8_with_quantized_rows` (xq: [m, k], xs: [m, k / 32]); the AVX2 and
/// VNNI kernels take 16 input rows at a time against each weight row, and every input row takes
/// its turn at a run of about 128 KB of weights before the next, so the weights are read from
/// memory once (the portable one takes the rows one after another).
void ck_gemv_q8(const int8_t *xq, const float *xs, int64_t m, int64_t k, const int8_t *q, const float *scales,
                const float *bias, float *y, int64_t ldy, int64_t j0, int64_t j1);

/// The rows of a matrix-vector product shared out among threads: each owns an equal range and
/// reads it as the kernels do, a few streams side by side, claiming a quarter of what is left at
/// a time (at least about 128 KB); a thread whose range is done takes the rows left after the
/// ranges' parts, then a quarter of what is left of the fullest range from its far end, so the
/// owner's streams run on unbroken and the threads finish together however unevenly the memory
/// serves them. A row's bits do not depend on which threads come; with one input row (and with
/// int8 weights) not on how many either.
typedef struct ck_rows_plan ck_rows_plan;

/// Bytes a plan for `threads` threads takes (to be 64-byte aligned).
int64_t ck_rows_plan_size(int32_t threads);

/// The most input rows the matrix-vector kernels take (decoding a batch); ck_linear gives more
/// to the block kernels (prefill), ck_gemv_q8 takes them in runs of this many.
enum { CK_GEMV_BATCH = 16 };

/// A plan for rows [0, n) of a product of m input rows with rows of k values in `dtype` (CK_Q8
/// included), for `threads` callers of ck_gemv_rows or ck_gemv_q8_rows (on this thread's
/// instruction set). Returns 0 when a thread's range holds 2³² steps or more, which the plan
/// cannot count.
int32_t ck_rows_plan_init(ck_rows_plan *plan, int64_t m, int64_t n, int64_t k, int32_t dtype, int32_t threads);

/// ck_linear's product for m ≤ CK_GEMV_BATCH input rows (x: [m, k]; y: row stride ldy), on
/// thread `thread` (0 ..< the plan's threads) of a plan made for the same m: returns when no
/// rows are left. Each thread calls it at most once (a thread that never comes leaves its rows
/// to the others). w: [n, k] in `dtype` (not CK_Q8); bias: [n] or NULL.
void ck_gemv_rows(const float *x, int64_t m, int64_t k, const void *w, int32_t dtype, const float *bias, float *y,
                  int64_t ldy, ck_rows_plan *plan, int32_t thread);

/// ck_gemv_q8 for the rows of a plan (made with CK_Q8), on thread `thread`, as ck_gemv_rows.
void ck_gemv_q8_rows(const int8_t *xq, const float *xs, int64_t m, int64_t k, const int8_t *q, const float *scales,
                     const float *bias, float *y, int64_t ldy, ck_rows_plan *plan, int32_t thread);

/// The next run of a plan's rows for `thread` (*phase 0 before its first call), as the kernels
/// take them: returns 0 when every row is taken, else 1 with run[0..3] = base, part, i0, i1,
/// meaning rows base + u · part + i for every part u and i in [i0, i1), or, with part 0, rows
/// base + i0 ..< base + i1. For tests of the sharing itself.
int32_t ck_rows_plan_next(ck_rows_plan *plan, int32_t thread, int32_t *phase, int64_t run[4]);

/// The number of parts (streams side by side) of a plan.
int32_t ck_rows_plan_parts(const ck_rows_plan *plan);

typedef void (*ck_q8_body)(void *context, const int8_t *xq, const float *xs);

/// Calls body(context, xq, xs) with x's rows quantized block by block exactly as the weights are,
/// and stored in their order (x: [rows, k]; xq: [rows, k]; xs: [rows, k / 32]), in a buffer on
/// this thread's stack (the heap beyond 32 KB). Returns 0, not calling body, when the heap
/// buffer cannot be had.
int32_t ck_q8_with_quantized_rows(const float *x, int64_t rows, int64_t k, ck_q8_body body, void *context);

/// Atomically adds 1 to *counter and returns its previous value (work sharing between threads).
int64_t ck_fetch_increment(int64_t *counter);

/// A job for ck_pool_run, called once on each participating thread with its index.
typedef void (*ck_job)(void *context, int32_t participant);

/// Runs job(context, i) for i in 0..<participants: 0 on the calling thread, the others on
/// persistent worker threads that spin for a short while after each job before they sleep, so
/// back-to-back parallel products do not each pay a thread wake-up. Returns 1 when the job ran;
/// 0, having run nothing, when another caller holds the pool (or the platform has no pthreads),
/// and the caller then runs the job some other way. The workers run it under the caller's
/// instruction-set cap (ck_thread_isa_cap).
int32_t ck_pool_run(int32_t participants, ck_job job, void *context);

/// How many jobs ck_pool_run has run (so tests can see that the pool is used).
int64_t ck_pool_jobs(void);

/// Sums `count` floats (a memory-bandwidth probe: reads every byte once), as one sequential run
/// or as `streams` (1–8) equal parts read side by side, the access pattern of the matrix-vector
/// kernels.
float ck_sum(const float *x, int64_t count, int32_t streams);

/// Widens `count` elements of `src` (dtype) from element `offset` into dst.
void ck_widen(const void *src, int32_t dtype, int64_t offset, int64_t count, float *dst);

/// x[i] = x[i] · sigmoid(x[i]).
void ck_silu(float *x, int64_t count);

/// y[r, :] = x[r, :] / sqrt(mean over each group of x² + eps) · w, groups of `group` channels.
/// x, y: [rows, d]; w: [d]. If z is not NULL, x is first multiplied by silu(z) ([rows, d]).
void ck_rmsnorm(const float *x, const float *z, const float *w, float eps, int64_t rows, int64_t d,
                int64_t group, float *y);

/// Depthwise causal conv + SiLU over one sequence, continuing from `state`.
/// x: [l, c] (row stride ldx); w: [k, c] (tap-major); bias: [c] or NULL; state: [k-1, c]
/// (updated); y: [l, c] (row stride ldy). Channels [c0, c1) only.
void ck_conv_silu(const float *x, int64_t l, int64_t ldx, const float *w, const float *bias, int64_t k, int64_t c,
                  float *state, float *y, int64_t ldy, int64_t c0, int64_t c1);

/// The chunked SSD for one (sequence, head), from `state` [p, n] (updated to the final state).
/// x: [l, p] (row stride ldx); dt: [l] (stride lddt); B, C: [l, n] (row stride ldbc);
/// y: [l, p] (row stride ldy), including D·x. A is the head's −exp(A_log).
/// work: at least ck_ssd_workspace(q, p, n) floats.
void ck_ssd_chunked(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B, const float *C,
                    int64_t ldbc, int64_t l, int64_t p, int64_t n, int64_t q, float A, float D, float *state,
                    float *y, int64_t ldy, float *work);
int64_t ck_ssd_workspace(int64_t q, int64_t p, int64_t n);

/// One recurrent step for one head: S ← exp(dt·A)·S + dt·x ⊗ B; y = S·C + D·x.
/// x: [p]; B, C: [n]; state: [p, n]; y: [p].
void ck_ssm_step(const float *x, float dt, float A, float D, const float *B, const float *C, int64_t p,
                 int64_t n, float *state, float *y);

/// ck_ssm_step with the state stored in bf16 (as transformers' Mamba2Cache and mamba_ssm keep it
/// for half-precision models): each element widened, updated and used for y in fp32, then
/// stored rounded to nearest even, as mamba_ssm's selective_state_update does.
void ck_ssm_step_bf16(const float *x, float dt, float A, float D, const float *B, const float *C, int64_t p,
                      int64_t n, uint16_t *state, float *y);

/// bf16 → fp32 (exact) and fp32 → bf16 (round to nearest even, NaN kept a quiet NaN), as
/// `HalfConversion` does one value at a time.
void ck_bf16_widen(const uint16_t *src, int64_t count, float *dst);
void ck_bf16_round(const float *src, int64_t count, uint16_t *dst);

/// ck_ssm_step for l tokens in order (x, dt, B, C, y with row strides ldx, lddt, ldbc, ldy):
/// the recurrence over a whole prompt for one head.
void ck_ssm_scan(const float *x, int64_t ldx, const float *dt, int64_t lddt, const float *B, const float *C,
                 int64_t ldbc, int64_t l, float A, float D, int64_t p, int64_t n, float *state, float *y, int64_t ldy);

/// A single-token step of one sequence's mixer after its input projection, in one call: conv +
/// SiLU (state shifted), dt = clamp(softplus(dt + dt_bias), dt_min, dt_max), every head's
/// recurrent step (state updated), and the gated RMSNorm. zxbcdt: [e + conv_dim + h] (the
/// projection, split [z, xBC, dt]); taps: [k, conv_dim]; conv_state: [k-1, conv_dim];
/// ssm_state: [h, p, n] in `ssm_dtype` (CK_F32, or CK_BF16: ck_ssm_step_bf16); scratch xbc:
/// [conv_dim], y: [e]; out: [e]. The heads are split over `threads` threads of the pool (one
/// thread when it is busy).
void ck_mixer_step(const float *zxbcdt, int64_t e, int64_t conv_dim, int64_t h, int64_t p, int64_t n, int64_t groups,
                   const float *taps, const float *conv_bias, int64_t k, float *conv_state, const float *dt_bias,
                   const float *A, const float *D, float dt_min, float dt_max, void *ssm_state, int32_t ssm_dtype,
                   const float *norm_weight, float eps, int64_t norm_group, float *xbc, float *y, float *out, int32_t threads);

#ifdef __cplusplus
}
#endif

#endif
