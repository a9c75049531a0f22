/* rng.h: counter-based random numbers for dropout (and any later kernel that needs them),
 * header-only and pure C.
 *
 * Generator: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy
 * as 1, 2, 3", SC 2011; the generator behind curand/JAX/PyTorch-CUDA dropout). It maps a
 * 128-bit counter and a 64-bit key to four 32-bit words through 10 rounds of multiplies and
 * xors. Nothing is stored or advanced: word i of a stream is a pure function of
 * (seed, subsequence, i), so any thread may compute any element and a backward pass
 * regenerates exactly the forward's numbers instead of keeping a mask.
 *
 * Stream layout (the contract the tests check with an independent NumPy implementation):
 *   key     = (seed & 0xffffffff, seed >> 32)
 *   counter = (block & 0xffffffff, block >> 32, subseq & 0xffffffff, subseq >> 32)
 *   word i of stream (seed, subseq) = output word (i & 3) of block i >> 2.
 * A uniform in [0, 1) is U = word / 2^32 (exact in float64). Dropout keeps element i iff
 * U_i >= p, i.e. word_i >= ceil(p * 2^32) (tc_rng_keep_threshold), so P(keep) = 1 - p up to
 * 2^-32.
 */
#ifndef TC_RNG_H
#define TC_RNG_H

#include <math.h>
#include <stdint.h>

#define TC_PHILOX_M0 UINT32_C(0xD2511F53)
#define TC_PHILOX_M1 UINT32_C(0xCD9E8D57)
#define TC_PHILOX_W0 UINT32_C(0x9E3779B9) /* golden ratio */
#define TC_PHILOX_W1 UINT32_C(0xBB67AE85) /* sqrt(3) - 1 */

/* out (4,) = Philox4x32-10 of counter ctr (4,) under key (2,) (Random123's philox4x32). */
static inline void tc_philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += TC_PHILOX_W0;
            k1 += TC_PHILOX_W1;
        }
        const uint64_t p0 = (uint64_t)TC_PHILOX_M0 * c0;
        const uint64_t p1 = (uint64_t)TC_PHILOX_M1 * c2;
        const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* out (4,) = words 4*block .. 4*block+3 of stream (seed, subseq). */
static inline void tc_rng_block(uint32_t out[4], uint64_t seed, uint64_t subseq, uint64_t block)
{
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)subseq,
                             (uint32_t)(subseq >> 32)};
    tc_philox4x32_10(out, ctr, key);
}

/* w (4 * nblocks,) = words 4*block0 .. 4*(block0 + nblocks) - 1 of stream (seed, subseq).
 * Filling a buffer first and using it in a second loop is ~2.5x faster than consuming
 * each block as it is made (the blocks' independent round chains overlap). */
static inline void tc_rng_words(uint32_t *w, uint64_t seed, uint64_t subseq, uint64_t block0,
                                int64_t nblocks)
{
    for (int64_t b = 0; b < nblocks; b++)
        tc_rng_block(w + 4 * b, seed, subseq, block0 + (uint64_t)b);
}

/* Word i of stream (seed, subseq). Computes a whole block for one word: loops over many
 * consecutive i should use tc_rng_words instead. */
static inline uint32_t tc_rng_u32(uint64_t seed, uint64_t subseq, uint64_t i)
{
    uint32_t w[4];
    tc_rng_block(w, seed, subseq, i >> 2);
    return w[i & 3];
}

/* Uniform in [0, 1) from one word: word / 2^32 (exact). */
static inline double tc_rng_uniform(uint32_t word)
{
    return (double)word * (1.0 / 4294967296.0);
}

/* ceil(p * 2^32) for p in [0, 1]: an element with word w is kept (not dropped) iff
 * (uint64_t)w >= this threshold, i.e. iff tc_rng_uniform(w) >= p. 0 keeps everything,
 * 2^32 drops everything. In hot loops compare in 32 bits instead (a 64-bit unsigned compare
 * does not vectorise on baseline x86-64): clamp the threshold to UINT32_MAX and treat
 * "threshold == 2^32" as "keep nothing" separately, as dropout_impl.h does. */
static inline uint64_t tc_rng_keep_threshold(double p)
{
    if (!(p > 0.0)) return 0;
    if (p >= 1.0) return UINT64_C(1) << 32;
    return (uint64_t)ceil(p * 4294967296.0);
}

#endif /* TC_RNG_H */
