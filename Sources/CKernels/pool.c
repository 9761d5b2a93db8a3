// A pool of persistent worker threads for ck_pool_run (see include/ckernels.h).
//
// A decode step is about fifty short parallel products back to back. Handing each to a thread
// that sleeps costs a wake-up (~25 µs measured here with Dispatch), during which one core is not
// reading memory; workers that spin for a while after each job take the next one in well under
// a microsecond. After CK_POOL_SPIN_NS without work they sleep on a condition variable.
#include "ckernels.h"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CK_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CK_RELAX() __asm__ __volatile__("yield")
#else
#define CK_RELAX() ((void)0)
#endif

enum { CK_POOL_MAX = 255 };
static const int64_t CK_POOL_SPIN_NS = 2000000;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_int busy;              // 1 while a caller owns the pool
    atomic_uint_fast64_t state;   // generation · 2, + 1 while the current job is open to workers
    atomic_int active;            // workers inside the current job
    atomic_int sleepers;          // workers waiting on `wake`
    atomic_llong jobs;            // jobs run (for tests)
    int workers;                  // threads started (only the owner touches it)
    int needed;                   // workers that may join the current job
    ck_job job;
    void *context;
    int isa_cap;                  // the caller's instruction-set cap, taken on by the workers
    uint_fast64_t start[CK_POOL_MAX + 1];  // the generation each worker was started at
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static int64_t monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static void *pool_worker(void *argument) {
    const int index = (int)(intptr_t)argument;
    uint_fast64_t seen = pool.start[index];
    for (;;) {
        uint_fast64_t state = atomic_load_explicit(&pool.state, memory_order_acquire);
        const int64_t deadline = monotonic_ns() + CK_POOL_SPIN_NS;
        for (int spins = 1; state >> 1 == seen; spins++) {
            CK_RELAX();
            if (spins % 256 == 0 && monotonic_ns() > deadline) {
                // Idle: sleep until the next job. `sleepers` and `state` are sequentially
                // consistent, so a caller either sees this sleeper or this check sees its job.
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.sleepers, 1);
                while ((state = atomic_load(&pool.state)) >> 1 == seen) pthread_cond_wait(&pool.wake, &pool.lock);
                atomic_fetch_sub(&pool.sleepers, 1);
                pthread_mutex_unlock(&pool.lock);
                break;
            }
            state = atomic_load_explicit(&pool.state, memory_order_acquire);
        }
        seen = state >> 1;
        if (!(state & 1)) continue;
        // Join only a job still open after announcing ourselves: the caller closes it, then
        // waits for `active` to fall to 0 (both sequentially consistent), so either it waits
        // for us or we see it closed and leave it alone (and read none of its fields).
        atomic_fetch_add(&pool.active, 1);
        if (atomic_load(&pool.state) == state && index <= pool.needed) {
            const int saved = ck_thread_isa_cap();
            ck_set_thread_isa_cap(pool.isa_cap);
            pool.job(pool.context, index);
            ck_set_thread_isa_cap(saved);
        }
        atomic_fetch_sub_explicit(&pool.active, 1, memory_order_release);
    }
    return NULL;
}

int32_t ck_pool_run(int32_t participants, ck_job job, void *context) {
    if (participants < 2 || participants - 1 > CK_POOL_MAX) return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&pool.busy, &expected, 1)) return 0;
    while (pool.workers < participants - 1) {
        const int index = pool.workers + 1;
        pool.start[index] = atomic_load(&pool.state) >> 1;
        pthread_attr_t attributes;
        pthread_t thread;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&thread, &attributes, pool_worker, (void *)(intptr_t)index);
        pthread_attr_destroy(&attributes);
        if (failed) {
            atomic_store(&pool.busy, 0);
            return 0;
        }
        pool.workers++;
    }
    pool.job = job;
    pool.context = context;
    pool.isa_cap = ck_thread_isa_cap();
    pool.needed = participants - 1;
    const uint_fast64_t open = ((atomic_load(&pool.state) >> 1) + 1) * 2 + 1;
    atomic_store(&pool.state, open);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    // The caller works too, and a job too small for a worker to join in time is simply done
    // here: a worker never has to arrive, only to finish what it joined.
    job(context, 0);
    atomic_store(&pool.state, open - 1);
    for (int spins = 1; atomic_load(&pool.active) > 0; spins++) {
        if (spins < 4096) CK_RELAX();
        else sched_yield();
    }
    atomic_fetch_add_explicit(&pool.jobs, 1, memory_order_relaxed);
    atomic_store_explicit(&pool.busy, 0, memory_order_release);
    return 1;
}

int64_t ck_pool_jobs(void) { return atomic_load(&pool.jobs); }

#else

int32_t ck_pool_run(int32_t participants, ck_job job, void *context) {
    (void)participants, (void)job, (void)context;
    return 0;
}

int64_t ck_pool_jobs(void) { return 0; }

#endif
