/* The thread pool of tb_threads.h. Not a kernel: emitted only into projects whose plan has parallel steps. */
#if defined(__unix__) || defined(__APPLE__)
#include "tb_threads.h"

static void *tb_worker_main(void *opaque)
{
    tb_workers *w = (tb_workers *)opaque;
    unsigned long seen;
    int index;
    /* The worker's index is its position in w->workers: found by its own id under the lock the creator holds. */
    pthread_mutex_lock(&w->lock);
    for (index = 0; index < w->threads - 1 && !pthread_equal(w->workers[index], pthread_self()); ++index) {}
    seen = w->first_step;  /* not w->step: a run may have begun a step since this worker was created */
    for (;;) {
        tb_part_fn fn;
        void *arena;
        int parts;
        while (w->step == seen && !w->stop) pthread_cond_wait(&w->wake, &w->lock);
        if (w->stop) break;
        seen = w->step;
        fn = w->fn;
        arena = w->arena;
        parts = w->parts;
        pthread_mutex_unlock(&w->lock);
        if (index + 1 < parts) fn(arena, index + 1);
        pthread_mutex_lock(&w->lock);
        if (--w->remaining == 0) pthread_cond_signal(&w->done);
    }
    pthread_mutex_unlock(&w->lock);
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
    pthread_mutex_lock(&w->lock);
    if (!w->started) {
        w->stop = 0;
        w->first_step = w->step;
        if (w->threads > TB_MAX_THREADS) w->threads = TB_MAX_THREADS;
        if (w->threads < 1) w->threads = 1;
        for (k = 0; k < w->threads - 1; ++k) {
            error = pthread_create(&w->workers[k], 0, tb_worker_main, w);
            if (error != 0) break;
        }
        if (error != 0) {  /* undo: the ones created stop, the pool stays unstarted */
            w->stop = 1;
            pthread_cond_broadcast(&w->wake);
            pthread_mutex_unlock(&w->lock);
            while (k-- > 0) pthread_join(w->workers[k], 0);
            return error;
        }
        w->started = 1;
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
    pthread_mutex_lock(&w->lock);
    w->fn = fn;
    w->arena = arena;
    w->parts = parts;
    w->remaining = w->threads - 1;
    ++w->step;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    fn(arena, 0);
    pthread_mutex_lock(&w->lock);
    while (w->remaining > 0) pthread_cond_wait(&w->done, &w->lock);
    pthread_mutex_unlock(&w->lock);
    pthread_mutex_unlock(&w->busy);
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
    w->stop = 1;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    for (k = 0; k < w->threads - 1; ++k) pthread_join(w->workers[k], 0);
    w->started = 0;
    pthread_mutex_unlock(&w->busy);
    return 0;
}
#else
typedef int tb_threads_unsupported; /* no POSIX threads here (bare metal): plans stay single-threaded */
#endif
