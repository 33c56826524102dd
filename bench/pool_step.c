/* The thread pool's per-step cost (bench/threads_pool.py compiles this against a tb_threads.c).
 *
 * A run is `steps` parallel steps; each splits `work_us` of fixed compute into `parts` equal parts, and between two
 * steps the calling thread alone computes `gap_us` (a network's one-thread layers). Printed: the wall time per step
 * minus the largest part's compute (the pool's overhead: waking, waiting, imbalance), the ideal, and the process's
 * CPU time over its wall time (what spinning costs). `pin` pins thread k to CPU k (when the machine allows). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include "tb_threads.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec + 1e-6 * (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

static volatile double sink = 1.0;

/* Fixed compute, not a wall-clock wait: a descheduled thread takes longer, as a kernel would. */
__attribute__((noinline)) static void compute(long iterations)
{
    double x = sink;
    for (long i = 0; i < iterations; ++i) x = x * 0.9999999 + 1e-7;
    sink = x;
}

typedef struct {
    long part_iterations;
    int pin;
    int pinned[TB_MAX_THREADS];
} job;

static void part_fn(void *opaque, int part)
{
    job *j = (job *)opaque;
    if (j->pin && !j->pinned[part]) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(part, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        j->pinned[part] = 1;
    }
    compute(j->part_iterations);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s THREADS WORK_US GAP_US STEPS PIN ITER_PER_US\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[1]), steps = atoi(argv[4]), pin = atoi(argv[5]);
    double work_us = atof(argv[2]), gap_us = atof(argv[3]), per_us = atof(argv[6]);
    static tb_workers w;
    static job j;
    if (per_us <= 0) {  /* calibrate: iterations per microsecond of one thread's compute */
        struct timespec a, b;  /* CPU time, not wall time: on a loaded machine this thread is descheduled */
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        compute(20000000);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        printf("%.3f\n", 20000000 / (((double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec)) * 1e6));
        return 0;
    }
    tb_workers_init(&w, threads);
    j.part_iterations = (long)(work_us * per_us / threads);
    j.pin = pin;
    long gap_iterations = (long)(gap_us * per_us);
    for (int s = 0; s < 50; ++s) { tb_workers_run(&w, part_fn, &j, threads); compute(gap_iterations); }
    double wall = 0, c0 = cpu_seconds(), t_all = now();
    for (int s = 0; s < steps; ++s) {
        compute(gap_iterations);
        double t0 = now();
        tb_workers_run(&w, part_fn, &j, threads);
        wall += now() - t0;
    }
    double total = now() - t_all, cpu = cpu_seconds() - c0;
    tb_workers_stop(&w);
    /* step wall us, ideal us (largest part), cpu/wall of the whole loop */
    printf("%.3f %.3f %.3f\n", wall / steps * 1e6, work_us / threads, cpu / total);
    return 0;
}
