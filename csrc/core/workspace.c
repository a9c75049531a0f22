/* workspace.c: the scratch memory of every kernel, cached per calling thread.
 *
 * A kernel that needs temporary memory (GEMM packing panels, attention tile scratch, fused
 * kernels' intermediates) asks tc_workspace(slot, bytes) instead of calling malloc. Each OS
 * thread that calls kernels (a Python thread with the GIL released, an OpenMP worker) owns
 * one small table of buffers, one per slot, 64-byte aligned and grow-only: after the first
 * call at a given size a kernel allocates nothing. Distinct kernels that may be live at the
 * same time on one thread (a fused kernel calling the GEMM, say) use distinct slots; a
 * kernel never calls itself while it holds its slot. The table is freed by a pthread key
 * destructor when the thread exits (the main thread's lives until the process ends).
 *
 * tc_workspace_alloc_count() counts the real allocations made (process-wide, atomically):
 * tests use it to check that a warmed-up training or decode step allocates nothing.
 */
#include <pthread.h>
#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include "tc.h"

/* Large buffers (activation arenas, gradient buffers, big scratch) are 2 MiB aligned and
 * advised to use transparent huge pages where the kernel offers them (Linux with THP in
 * "madvise" mode): a pass streaming hundreds of MiB then walks 512 times fewer pages. A
 * plain 64-byte aligned allocation otherwise. Freed with free(). */
#define TC_HUGE_MIN ((size_t)4 << 20)
#define TC_HUGE_PAGE ((size_t)2 << 20)
void *tc_alloc_big(size_t bytes)
{
    if (bytes < TC_HUGE_MIN) return aligned_alloc(64, bytes < 64 ? 64 : (bytes + 63) / 64 * 64);
    if (bytes > SIZE_MAX - TC_HUGE_PAGE) return NULL;
    const size_t n = (bytes + TC_HUGE_PAGE - 1) / TC_HUGE_PAGE * TC_HUGE_PAGE;
    void *p = aligned_alloc(TC_HUGE_PAGE, n);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p) (void)madvise(p, n, MADV_HUGEPAGE); /* advice only: failure changes nothing */
#endif
    return p;
}

typedef struct {
    void *ptr[TC_WS_NSLOTS];
    size_t size[TC_WS_NSLOTS];
} tc_ws_table;

static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;
static int ws_key_ok;
static __thread tc_ws_table *ws_mine;
static uint64_t ws_allocs; /* touched only through __atomic builtins */

static void ws_destroy(void *p)
{
    tc_ws_table *t = p;
    for (int i = 0; i < TC_WS_NSLOTS; i++) free(t->ptr[i]);
    free(t);
}

static void ws_key_init(void) { ws_key_ok = pthread_key_create(&ws_key, ws_destroy) == 0; }

static tc_ws_table *ws_table(void)
{
    tc_ws_table *t = ws_mine;
    if (t) return t;
    pthread_once(&ws_once, ws_key_init);
    if (!ws_key_ok) return NULL;
    t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (pthread_setspecific(ws_key, t) != 0) {
        free(t);
        return NULL;
    }
    ws_mine = t;
    return t;
}

void *tc_workspace(int slot, size_t bytes)
{
    if (slot < 0 || slot >= TC_WS_NSLOTS) return NULL;
    tc_ws_table *t = ws_table();
    if (!t) return NULL;
    if (bytes <= t->size[slot] && t->ptr[slot]) return t->ptr[slot];
    if (bytes > SIZE_MAX / 2) return NULL;
    /* whole 4 KiB pages (at least 64 bytes): nearby sizes share one buffer */
    size_t n = bytes < 64 ? 64 : (bytes + 4095) / 4096 * 4096;
    void *p = tc_alloc_big(n);
    if (!p) return NULL;
    free(t->ptr[slot]);
    t->ptr[slot] = p;
    t->size[slot] = n;
    __atomic_fetch_add(&ws_allocs, 1, __ATOMIC_RELAXED);
    return p;
}

void tc_workspace_release(void)
{
    tc_ws_table *t = ws_mine;
    if (!t) return;
    for (int i = 0; i < TC_WS_NSLOTS; i++) {
        free(t->ptr[i]);
        t->ptr[i] = NULL;
        t->size[i] = 0;
    }
}

uint64_t tc_workspace_alloc_count(void) { return __atomic_load_n(&ws_allocs, __ATOMIC_RELAXED); }
