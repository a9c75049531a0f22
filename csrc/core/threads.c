/* threads.c: the OpenMP thread count used by every kernel, whether the model fast paths
 * may split a batch across the threads (model_common.h), and the contention guard that keeps
 * small or contended parallel regions on one thread (tc_parallel_worth).
 *
 * The count is process-wide: OpenMP's own setting (omp_set_num_threads) belongs to the
 * calling thread only, so tc_set_num_threads stores the count in one atomic and
 * tc_sync_num_threads, called by every entry point of the bindings before a kernel runs
 * (bind.h, TC_PY_BEGIN_ALLOW_THREADS), applies it to the calling thread. Unset (0), each
 * thread keeps OpenMP's default (OMP_NUM_THREADS or the core count). */
#include "tc.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int tc_num_threads_set = 0; /* 0: never set */

int tc_max_num_threads(void)
{
#ifdef _OPENMP
    const int procs = omp_get_num_procs();
    return procs > 256 ? 4 * procs : 1024;
#else
    return 1024;
#endif
}

int tc_set_num_threads(int n)
{
    if (n < 1 || n > tc_max_num_threads()) return TC_EINVAL;
    __atomic_store_n(&tc_num_threads_set, n, __ATOMIC_RELAXED);
    tc_sync_num_threads();
    return TC_OK;
}

int tc_get_num_threads(void)
{
    const int n = __atomic_load_n(&tc_num_threads_set, __ATOMIC_RELAXED);
#ifdef _OPENMP
    return n > 0 ? n : omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
}

int tc_openmp_version(void)
{
#ifdef _OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

void tc_sync_num_threads(void)
{
#ifdef _OPENMP
    const int n = __atomic_load_n(&tc_num_threads_set, __ATOMIC_RELAXED);
    if (n > 0 && !omp_in_parallel() && omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

static int tc_data_parallel_on = 1;

void tc_set_data_parallel(int on)
{
    __atomic_store_n(&tc_data_parallel_on, on != 0, __ATOMIC_RELAXED);
}

int tc_get_data_parallel(void)
{
    return __atomic_load_n(&tc_data_parallel_on, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ the contention guard
 *
 * A parallel region ends when its slowest thread arrives. On a machine where every core is
 * busy (other processes, or another job of ours) a woken worker waits for a scheduler time
 * slice (milliseconds) before it runs its share, and the caller waits with it at every
 * barrier: measured here with one busy loop on one of 2 cores (and other jobs), greedy KV
 * decoding at batch 1 took 4.7-5.8x as long with 2 threads as with 1, GPT.forward on (1, 128)
 * 2.3-2.8x (python -m benchmarks.contention --unguarded). A second thread only helps with a
 * core of its own. So a region runs parallel only when (1) its work is past the kernel's
 * idle-machine threshold (the caller's min_work), and (2) with the guard on, the machine
 * has a free core for every thread but the caller: the runnable tasks of the whole machine
 * (the 4th field of /proc/loadavg, "running/total") less this process's runnable threads
 * (the states in /proc/self/task/<tid>/stat: our workers while they spin count as ours),
 * plus our thread count, must not exceed the processors. Both are read at most every
 * TC_GUARD_PERIOD_NS (about 20 us of system calls per reading); contended means both of the
 * last two readings said so (a task that ran for an instant does not flip the decision).
 * Without /proc (not Linux) only (1) applies.
 *
 * Only kernels whose results do not depend on the thread count ask the guard (every output
 * element computed by one thread in a fixed order), so it never changes a number: the
 * data-parallel batch split and the attention backward's per-thread partial sums keep
 * their fixed thread counts. TC_THREAD_GUARD=0 in the environment turns it off by default;
 * tc_set_thread_guard switches it at run time (the test suite turns it off, so parallel
 * paths run whatever the machine's load). */
#define TC_GUARD_PERIOD_NS 10000000LL /* 10 ms between readings of the run queue */

static int tc_guard_on = -1;           /* -1: not yet read from TC_THREAD_GUARD */
static long long tc_guard_next_ns = 0; /* when the run queue is next read */
static int tc_guard_history = 0;       /* bit 0: the last reading was contended, bit 1: the one before */
static int tc_guard_runnable = -1;     /* the last reading of other runnable tasks (-1: none) */

static long long tc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The first bytes of a small /proc file into buf (NUL-terminated); the length, -1 if none. */
static int tc_read_small(const char *path, char *buf, int size)
{
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    const ssize_t n = read(fd, buf, (size_t)size - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    return (int)n;
}

/* The machine's runnable tasks now (the caller included), -1 when unknown. */
static int tc_runnable_tasks(void)
{
    char buf[128];
    if (tc_read_small("/proc/loadavg", buf, sizeof buf) < 0) return -1;
    /* "0.50 0.40 0.30 3/205 12345": the field after the third space */
    const char *p = buf;
    for (int k = 0; k < 3 && p; k++) {
        p = strchr(p, ' ');
        if (p) p++;
    }
    if (!p || *p < '0' || *p > '9') return -1;
    return (int)strtol(p, NULL, 10);
}

/* This process's runnable threads now (state R in /proc/self/task/<tid>/stat; the caller
 * included), 1 when unknown. */
static int tc_own_runnable_threads(void)
{
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return 1;
    int n = 0;
    struct dirent *e;
    char path[64], buf[512];
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9' || strlen(e->d_name) > 20) continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        if (tc_read_small(path, buf, sizeof buf) < 0) continue;
        /* "tid (comm) S ...": the state follows the last ')' (comm may hold spaces) */
        const char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && p[2] == 'R') n++;
    }
    closedir(dir);
    return n > 0 ? n : 1;
}

void tc_set_thread_guard(int on)
{
    __atomic_store_n(&tc_guard_on, on != 0, __ATOMIC_RELAXED);
}

int tc_get_thread_guard(void)
{
    int on = __atomic_load_n(&tc_guard_on, __ATOMIC_RELAXED);
    if (on < 0) {
        const char *env = getenv("TC_THREAD_GUARD");
        on = !(env && strcmp(env, "0") == 0);
        int unset = -1;
        __atomic_compare_exchange_n(&tc_guard_on, &unset, on, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
        on = __atomic_load_n(&tc_guard_on, __ATOMIC_RELAXED);
    }
    return on;
}

int tc_thread_guard_others(void)
{
    return __atomic_load_n(&tc_guard_runnable, __ATOMIC_RELAXED);
}

/* Whether the machine has a core for each of nth threads (the caller's included), from
 * the last two readings of the run queue (one taken now if the period has passed). */
static int tc_guard_room(int nth)
{
#ifdef _OPENMP
    const long long now = tc_now_ns();
    long long next = __atomic_load_n(&tc_guard_next_ns, __ATOMIC_RELAXED);
    /* one thread reads per period; the others use the decision as it stands */
    if (now >= next && __atomic_compare_exchange_n(&tc_guard_next_ns, &next,
                                                   now + TC_GUARD_PERIOD_NS, 0,
                                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        const int running = tc_runnable_tasks();
        const int others = running < 0 ? 0 : running - tc_own_runnable_threads();
        __atomic_store_n(&tc_guard_runnable, running < 0 ? -1 : (others > 0 ? others : 0),
                         __ATOMIC_RELAXED);
        const int contended = others + nth > omp_get_num_procs();
        const int h = __atomic_load_n(&tc_guard_history, __ATOMIC_RELAXED);
        __atomic_store_n(&tc_guard_history, ((h << 1) | contended) & 3, __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&tc_guard_history, __ATOMIC_RELAXED) != 3;
#else
    (void)nth;
    return 0;
#endif
}

int tc_parallel_worth(double work, double min_work)
{
#ifdef _OPENMP
    if (work < min_work) return 0;
    const int nth = omp_get_max_threads();
    if (nth <= 1 || omp_in_parallel()) return 0;
    return !tc_get_thread_guard() || tc_guard_room(nth);
#else
    (void)work;
    (void)min_work;
    return 0;
#endif
}
