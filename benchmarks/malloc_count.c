/* malloc_count.c: an LD_PRELOAD shim that counts heap allocations (benchmarks/allocs.py).
 *
 * Interposes malloc, calloc, realloc, aligned_alloc, posix_memalign and memalign, forwards
 * each to the next definition (glibc's), and counts the calls in total and those of at
 * least 16 KiB. While counting is off (the default) it only forwards. Read and switch it
 * through ctypes: malloc_count_enable(int), malloc_count_get(unsigned long long out[2]).
 * Built by benchmarks/allocs.py with: cc -O2 -shared -fPIC malloc_count.c -o X.so -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#define BIG (16 * 1024)

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static int enabled;
static unsigned long long n_all, n_big;
static void (*real_free)(void *);
static int resolving;
static char boot[8192]; /* calloc during dlsym */
static size_t boot_used;

static void resolve(void)
{
    if (real_malloc || resolving) return;
    resolving = 1;
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_memalign = dlsym(RTLD_NEXT, "memalign");
    real_free = dlsym(RTLD_NEXT, "free");
    resolving = 0;
}

static void count(size_t n)
{
    if (!enabled) return;
    __atomic_fetch_add(&n_all, 1, __ATOMIC_RELAXED);
    if (n >= BIG) __atomic_fetch_add(&n_big, 1, __ATOMIC_RELAXED);
}

void malloc_count_enable(int on) { enabled = on; }

void malloc_count_get(unsigned long long *out)
{
    out[0] = __atomic_load_n(&n_all, __ATOMIC_RELAXED);
    out[1] = __atomic_load_n(&n_big, __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    resolve();
    count(n);
    return real_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    if (!real_calloc) {
        resolve();
        if (!real_calloc) { /* dlsym itself asked: serve it from the static block */
            size_t n = (a * b + 15) / 16 * 16;
            if (boot_used + n > sizeof boot) return NULL;
            void *p = boot + boot_used;
            boot_used += n;
            memset(p, 0, n);
            return p;
        }
    }
    count(a * b);
    return real_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    resolve();
    count(n);
    return real_realloc(p, n);
}

void *aligned_alloc(size_t al, size_t n)
{
    resolve();
    count(n);
    return real_aligned_alloc(al, n);
}

int posix_memalign(void **p, size_t al, size_t n)
{
    resolve();
    count(n);
    return real_posix_memalign(p, al, n);
}

void *memalign(size_t al, size_t n)
{
    resolve();
    count(n);
    return real_memalign(al, n);
}

void free(void *p)
{
    if ((char *)p >= boot && (char *)p < boot + sizeof boot) return;
    resolve();
    if (real_free) real_free(p); /* (a free during dlsym itself leaks) */
}
