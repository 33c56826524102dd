/* The thread pool of tb_threads.h. Not a kernel: emitted only into projects whose plan has parallel steps.
 *
 * Hand-offs spin briefly, then sleep. A parallel step of a small network takes tens of microseconds and waking a
 * thread asleep on a condition variable costs several (a futex wake, the scheduler): a worker that polls the step
 * counter for TB_SPIN_US after its part starts the next step within a poll, and the caller that polls the count of
 * running workers returns as soon as the last one is done; every 64 polls a poller yields its CPU (a thread it waits
 * for may need it when the machine is oversubscribed). Past TB_SPIN_US either side sleeps on its condition
 * variable as before, so an idle pool costs no CPU. A run that holds the pool (tb_workers_hold: the emitted
 * program, around one inference) keeps its workers polling for TB_HOLD_US instead: a plan's one-thread steps between
 * two parallel ones often take longer than TB_SPIN_US, and a worker asleep then costs the next parallel step a futex
 * wake and a reschedule before its part starts. Released, the pool is idle within TB_SPIN_US. The sleeping side
 * announces itself (sleepers, waiting) before it checks the shared counter for the last time, and the other side
 * reads the announcement after it changed the counter; both are sequentially consistent atomics, so at least one of
 * them sees the other's write and no wake-up is lost. */
#if defined(__unix__) || defined(__APPLE__)
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include <sched.h>
#include <time.h>
#include "tb_threads.h"

#ifndef TB_SPIN_US
#define TB_SPIN_US 200 /* how long a hand-off polls before it sleeps; 0: sleep at once (condition variables only) */
#endif

#ifndef TB_HOLD_US
/* How long a worker of a held pool polls before it sleeps (a cap: a run releases it); 0: holding changes nothing. */
#define TB_HOLD_US 20000
#endif

#define TB_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define TB_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

static void tb_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || (defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static long tb_micros(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000L + (long)(t.tv_nsec / 1000);
}

/* Poll until *counter differs from `seen` (or *stop is set), for at most TB_SPIN_US, or TB_HOLD_US while *holds
 * is not 0: 1 if it did. */
static int tb_spin_until_changed(const unsigned long *counter, unsigned long seen, const int *stop, const int *holds)
{
    long start = -1;
    int polls;
    for (polls = 0;; ++polls) {
        if (TB_LOAD(counter) != seen || TB_LOAD(stop)) return 1;
        if ((polls & 63) == 63) {  /* every 64 polls (a poll is a few ns, these some hundreds): */
            long t = tb_micros();
            if (start < 0) start = t;
            else if (t - start >= (TB_HOLD_US > TB_SPIN_US && TB_LOAD(holds) > 0 ? TB_HOLD_US : TB_SPIN_US)) return 0;
            sched_yield();  /* a thread we wait for may be waiting for this CPU: on an idle one this returns at once */
        }
        tb_relax();
    }
}

/* Poll until *count is 0, for at most TB_SPIN_US: 1 if it is. */
static int tb_spin_until_zero(const int *count)
{
    long start = -1;
    int polls;
    for (polls = 0;; ++polls) {
        if (TB_LOAD(count) == 0) return 1;
        if ((polls & 63) == 63) {
            long t = tb_micros();
            if (start < 0) start = t;
            else if (t - start >= TB_SPIN_US) return 0;
            sched_yield();
        }
        tb_relax();
    }
}

static void *tb_worker_main(void *opaque)
{
    tb_workers *w = (tb_workers *)opaque;
    unsigned long seen;
    int index;
    /* The worker's index is its position in w->workers: found by its own id under the lock the creator holds. */
    pthread_mutex_lock(&w->lock);
    for (index = 0; index < w->threads - 1 && !pthread_equal(w->workers[index], pthread_self()); ++index) {}
    seen = w->first_step;  /* not w->step: a run may have begun a step since this worker was created */
    pthread_mutex_unlock(&w->lock);
    for (;;) {
        tb_part_fn fn;
        void *arena;
        int parts;
        if (TB_SPIN_US == 0 || !tb_spin_until_changed(&w->step, seen, &w->stop, &w->holds)) {
            pthread_mutex_lock(&w->lock);
            TB_STORE(&w->sleepers, TB_LOAD(&w->sleepers) + 1);  /* under the lock: only sleepers change it */
            while (TB_LOAD(&w->step) == seen && !TB_LOAD(&w->stop)) pthread_cond_wait(&w->wake, &w->lock);
            TB_STORE(&w->sleepers, TB_LOAD(&w->sleepers) - 1);
            pthread_mutex_unlock(&w->lock);
        }
        if (TB_LOAD(&w->stop)) break;
        seen = TB_LOAD(&w->step);  /* the caller waits for every worker before the next step: no step is skipped */
        fn = w->fn;  /* written before the step was bumped (seq_cst), read after it was seen */
        arena = w->arena;
        parts = w->parts;
        if (index + 1 < parts) fn(arena, index + 1);
        if (__atomic_sub_fetch(&w->remaining, 1, __ATOMIC_SEQ_CST) == 0 && TB_LOAD(&w->waiting)) {
            pthread_mutex_lock(&w->lock);  /* the caller sleeps (or is about to, holding the lock): wake it */
            pthread_cond_signal(&w->done);
            pthread_mutex_unlock(&w->lock);
        }
    }
    return 0;
}

int tb_workers_init(tb_workers *w, int threads)
{
    static const tb_workers unused = TB_WORKERS_INIT(1);
    *w = unused;
    w->threads = threads;
    if (pthread_mutex_init(&w->lock, 0) != 0 || pthread_mutex_init(&w->busy, 0) != 0 ||
        pthread_cond_init(&w->wake, 0) != 0 || pthread_cond_init(&w->done, 0) != 0) return -1;
    return 0;
}

int tb_workers_start(tb_workers *w)
{
    int k, error = 0;
    if (TB_LOAD(&w->started)) return 0;  /* every step asks: no lock once the workers run */
    pthread_mutex_lock(&w->lock);
    if (!w->started) {
        TB_STORE(&w->stop, 0);
        w->first_step = w->step;
        if (w->threads > TB_MAX_THREADS) w->threads = TB_MAX_THREADS;
        if (w->threads < 1) w->threads = 1;
        for (k = 0; k < w->threads - 1; ++k) {
            error = pthread_create(&w->workers[k], 0, tb_worker_main, w);
            if (error != 0) break;
        }
        if (error != 0) {  /* undo: the ones created stop, the pool stays unstarted */
            TB_STORE(&w->stop, 1);
            pthread_cond_broadcast(&w->wake);
            pthread_mutex_unlock(&w->lock);
            while (k-- > 0) pthread_join(w->workers[k], 0);
            return error;
        }
        TB_STORE(&w->started, 1);
    }
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void tb_workers_run(tb_workers *w, tb_part_fn fn, void *arena, int parts)
{
    int k;
    pthread_mutex_lock(&w->busy);  /* one step at a time: concurrent runs on other arenas take turns */
    if (tb_workers_start(w) != 0) {
        for (k = 0; k < parts; ++k) fn(arena, k);
        pthread_mutex_unlock(&w->busy);
        return;
    }
    w->fn = fn;
    w->arena = arena;
    w->parts = parts;
    TB_STORE(&w->remaining, w->threads - 1);
    __atomic_add_fetch(&w->step, 1, __ATOMIC_SEQ_CST);  /* publishes the step: spinning workers start it now */
    if (TB_LOAD(&w->sleepers) > 0) {  /* some sleep: wake them */
        pthread_mutex_lock(&w->lock);
        pthread_cond_broadcast(&w->wake);
        pthread_mutex_unlock(&w->lock);
    }
    fn(arena, 0);
    if (TB_SPIN_US == 0 || !tb_spin_until_zero(&w->remaining)) {
        pthread_mutex_lock(&w->lock);
        TB_STORE(&w->waiting, 1);
        while (TB_LOAD(&w->remaining) > 0) pthread_cond_wait(&w->done, &w->lock);
        TB_STORE(&w->waiting, 0);
        pthread_mutex_unlock(&w->lock);
    }
    pthread_mutex_unlock(&w->busy);
}

void tb_workers_hold(tb_workers *w, int on)
{
    __atomic_add_fetch(&w->holds, on ? 1 : -1, __ATOMIC_SEQ_CST);  /* a count: concurrent runs hold it each */
}

int tb_workers_stop(tb_workers *w)
{
    int k;
    pthread_mutex_lock(&w->busy);
    pthread_mutex_lock(&w->lock);
    if (!w->started) {
        pthread_mutex_unlock(&w->lock);
        pthread_mutex_unlock(&w->busy);
        return 0;
    }
    TB_STORE(&w->stop, 1);
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    for (k = 0; k < w->threads - 1; ++k) pthread_join(w->workers[k], 0);
    TB_STORE(&w->started, 0);
    pthread_mutex_unlock(&w->busy);
    return 0;
}
#else
typedef int tb_threads_unsupported; /* no POSIX threads here (bare metal): plans stay single-threaded */
#endif
