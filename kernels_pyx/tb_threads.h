/* A small static thread pool for multi-threaded plans (POSIX threads; Linux and other Unix targets only).
 *
 * A parallel step runs part k of `parts` on thread k: the caller's thread runs part 0 while the workers run the
 * others, and tb_workers_run returns when every part is done. The workers are created once (tb_workers_start, or
 * the first run); between steps they poll for the next one for TB_SPIN_US microseconds (200 unless the build
 * defines it), then sleep on a condition variable; nothing is allocated on the heap. While a run holds the pool
 * (tb_workers_hold, around a whole inference) they poll for up to TB_HOLD_US instead, so a parallel step that
 * follows a long stretch of one-thread steps finds them polling, not asleep. A pool runs one step at a time: steps
 * of concurrent runs (on different arenas) take turns.
 * The same code times N-thread kernel calls in the profiler (native/dispatch.py), so what was measured ships. */
#ifndef TB_THREADS_H
#define TB_THREADS_H

#include <pthread.h>

#define TB_MAX_THREADS 64

typedef void (*tb_part_fn)(void *arena, int part);

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    pthread_mutex_t busy;   /* held by the one step running on the pool */
    int threads;            /* the caller's thread and threads - 1 workers */
    int started;            /* workers created */
    int stop;
    unsigned long step;     /* bumped per parallel step: a worker waits for a new one */
    unsigned long first_step; /* step when the workers were created: they wait for the next one */
    int remaining;          /* workers still running the current step */
    int sleepers;           /* workers asleep on `wake` (or about to be): a new step must signal it */
    int waiting;            /* the caller is asleep on `done` (or about to be): the last worker must signal it */
    int holds;              /* runs holding the pool (tb_workers_hold): workers poll for TB_HOLD_US between steps */
    tb_part_fn fn;
    void *arena;
    int parts;
    pthread_t workers[TB_MAX_THREADS - 1];
} tb_workers;

#define TB_WORKERS_INIT(n) { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, \
                             .done = PTHREAD_COND_INITIALIZER, .busy = PTHREAD_MUTEX_INITIALIZER, .threads = (n) }

/* Initialise a pool that is not statically allocated (TB_WORKERS_INIT is for static ones). */
int tb_workers_init(tb_workers *w, int threads);
/* Create the workers (once; later calls return 0 at once). 0, or pthread_create's error (no workers then). */
int tb_workers_start(tb_workers *w);
/* Run fn(arena, k) for k in [0, parts) concurrently, parts <= threads; part 0 on the calling thread. Starts the
 * workers if needed; if they cannot be started, runs every part on the calling thread (same results). */
void tb_workers_run(tb_workers *w, tb_part_fn fn, void *arena, int parts);
/* Hold the pool (on = 1) for a run of several steps, or release it (on = 0, once per hold): while held, the workers
 * poll for the next step for up to TB_HOLD_US (20 ms unless the build defines it; 0: no hold) rather than
 * TB_SPIN_US, so the one-thread steps between parallel ones do not put them to sleep. Released, they sleep
 * TB_SPIN_US after their last step as before. */
void tb_workers_hold(tb_workers *w, int on);
/* Join the workers (e.g. before unloading the library); a later run starts them again. */
int tb_workers_stop(tb_workers *w);

#endif
