/* A sub-pixel output stage in one pass over memory (see dynsr/native/__init__.py and
 * dynsr.ops.subpixel.shuffle_gated_residual).
 *
 *   out[m*r + i, m*q + j, c] = image[(m*r + i) / s, (m*q + j) / s, c]
 *                              + cells[r, q, (i*m + j)*C + c] * gate[r, q]
 *
 * for cells of m x m output pixels (m = u*s: u LR pixels a cell side, upscaled s times),
 * C colours. Each (r, i) is one output row; for a fixed (r, q, i) the 3*m values of the
 * cell's row lie contiguous in both `cells` and the pixel-interleaved output, so a row is
 * finished with one sweep of contiguous runs, and the nearest-neighbour image row it adds
 * is expanded once into a small buffer that stays in L1.
 *
 * The sum is one fused multiply-add (fmaf), as torch.addcmul computes it on CPUs with FMA.
 * Stored as float, or as 8/16-bit samples floor(clamp(v, 0, 1) * max + 0.5), computed as
 * dynsr.ops.color.sample_levels does (v * max, + 0.5, clamped to [0.5, max + 0.5],
 * truncated); the file is built with -ffp-contract=off so that this multiply and add stay
 * two roundings: the results are those of the torch path, to the bit.
 *
 * Rows of cells are split evenly over nthreads pthreads. Returns 0, or -1 when a row buffer
 * could not be allocated (the output is then incomplete).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    const float *cells; int64_t cr, cq;            /* (R, Q, m*m*C): row and cell strides */
    const float *gate;  int64_t gr, gq;            /* (R, Q) */
    const float *image; int64_t ir, iq, ic;        /* (u*R, u*Q, C) */
    void *out;                                     /* (m*R, m*Q, C) contiguous */
    int64_t R, Q, u, s, C, kind;                   /* kind: 0 float, 1 uint8, 2 uint16 */
    int64_t row0, row1;
    int status;
} Job;

static void *rows_of_cells(void *arg) {
    Job *jb = arg;
    const int64_t m = jb->u * jb->s, C = jb->C, run = m * C, width = jb->Q * m;
    float *skip = malloc(sizeof(float) * (size_t)(width * C));
    float *value = malloc(sizeof(float) * (size_t)run);
    if (!skip || !value) {
        jb->status = -1;
        free(skip); free(value);
        return NULL;
    }
    const float maxval = jb->kind == 1 ? 255.0f : 65535.0f;
    for (int64_t r = jb->row0; r < jb->row1; r++) {
        for (int64_t i = 0; i < m; i++) {
            const int64_t y = m * r + i;
            if (i % jb->s == 0) { /* a new image row: expand it s times across */
                const float *src = jb->image + (y / jb->s) * jb->ir;
                for (int64_t x = 0; x < width; x++)
                    for (int64_t c = 0; c < C; c++)
                        skip[x * C + c] = src[(x / jb->s) * jb->iq + c * jb->ic];
            }
            for (int64_t q = 0; q < jb->Q; q++) {
                const float *f = jb->cells + r * jb->cr + q * jb->cq + i * run;
                const float g = jb->gate[r * jb->gr + q * jb->gq];
                const float *base = skip + q * run;
                const int64_t at = (y * width + q * m) * C;
                if (jb->kind == 0) {
                    float *restrict dst = (float *)jb->out + at;
                    for (int64_t t = 0; t < run; t++) dst[t] = fmaf(f[t], g, base[t]);
                    continue;
                }
                for (int64_t t = 0; t < run; t++) {
                    float v = fmaf(f[t], g, base[t]) * maxval + 0.5f;
                    v = v < 0.5f ? 0.5f : v;
                    value[t] = v > maxval + 0.5f ? maxval + 0.5f : v;
                }
                if (jb->kind == 1) {
                    uint8_t *restrict dst = (uint8_t *)jb->out + at;
                    for (int64_t t = 0; t < run; t++) dst[t] = (uint8_t)value[t];
                } else {
                    uint16_t *restrict dst = (uint16_t *)jb->out + at;
                    for (int64_t t = 0; t < run; t++) dst[t] = (uint16_t)value[t];
                }
            }
        }
    }
    free(skip); free(value);
    return NULL;
}

int dynsr_shuffle_gated_residual(const float *cells, int64_t cr, int64_t cq, const float *gate,
                                 int64_t gr, int64_t gq, const float *image, int64_t ir,
                                 int64_t iq, int64_t ic, void *out, int64_t R, int64_t Q,
                                 int64_t u, int64_t s, int64_t C, int64_t kind,
                                 int64_t nthreads) {
    Job proto = {cells, cr, cq, gate, gr, gq, image, ir, iq, ic, out, R, Q, u, s, C, kind,
                 0, 0, 0};
    if (R <= 0 || Q <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > R) nthreads = R;
    if (nthreads > 64) nthreads = 64;
    Job jobs[64];
    pthread_t tids[64];
    int started[64] = {0};
    for (int64_t n = 0; n < nthreads; n++) {
        jobs[n] = proto;
        jobs[n].row0 = R * n / nthreads;
        jobs[n].row1 = R * (n + 1) / nthreads;
    }
    for (int64_t n = 1; n < nthreads; n++)
        started[n] = pthread_create(&tids[n], NULL, rows_of_cells, &jobs[n]) == 0;
    rows_of_cells(&jobs[0]);
    int status = jobs[0].status;
    for (int64_t n = 1; n < nthreads; n++) {
        if (started[n]) pthread_join(tids[n], NULL);
        else rows_of_cells(&jobs[n]);
        status |= jobs[n].status;
    }
    return status;
}
