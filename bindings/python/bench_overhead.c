/* Per-call time of saeplug_ctx_encode at batch 1 from C: the baseline that
 * bench_overhead.py compares the Python binding against. Same input as the
 * Python side: x[j] = sin(0.1 j). Prints the best (over `repeats`) mean
 * nanoseconds per call over `iters` calls of `rows` rows (1; or 0: the call's
 * fixed cost alone: argument checks, the mapped-file check, no compute).
 *   bench_overhead_c SAE_DIR ITERS REPEATS THREADS ROWS */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "saeplug.h"

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    saeplug_sae *sae = NULL;
    saeplug_ctx *ctx = NULL;
    saeplug_sae_info info;
    if (argc != 6) {
        fprintf(stderr, "usage: %s SAE_DIR ITERS REPEATS THREADS ROWS\n", argv[0]);
        return 2;
    }
    long iters = atol(argv[2]), repeats = atol(argv[3]);
    unsigned threads = (unsigned)atoi(argv[4]);
    size_t rows = (size_t)atol(argv[5]);
    if (saeplug_sae_open(argv[1], &sae) || saeplug_sae_get_info(sae, &info) ||
        saeplug_ctx_new(SAEPLUG_BACKEND_CPU, threads, &ctx)) {
        char msg[512];
        saeplug_last_error_message(msg, sizeof msg);
        fprintf(stderr, "saeplug: %s\n", msg);
        return 1;
    }
    float *x = malloc(info.d_in * sizeof *x), *f = malloc(info.d_sae * sizeof *f);
    for (size_t j = 0; j < info.d_in; j++) x[j] = sinf(0.1f * (float)j);
    for (long i = 0; i < iters; i++) /* warm-up */
        if (saeplug_ctx_encode(ctx, sae, x, rows * info.d_in, rows, f, rows * info.d_sae)) return 1;
    double best = 1e300;
    for (long r = 0; r < repeats; r++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++)
            saeplug_ctx_encode(ctx, sae, x, rows * info.d_in, rows, f, rows * info.d_sae);
        double dt = (now_ns() - t0) / (double)iters;
        if (dt < best) best = dt;
    }
    printf("%.1f\n", best);
    saeplug_ctx_free(ctx);
    saeplug_sae_free(sae);
    free(x);
    free(f);
    return 0;
}
