/* The C ABI's hardening promises, checked from C on one backend: typed enum
 * codes refused with messages naming parameter and value; bounded thread counts,
 * layers and positions; overlapping input/output buffers refused; outputs (and a
 * hooked `x`) untouched by a failing call; on a GPU context, `saeplug_ctx_solve`
 * runs there and equals the CPU context's result. Built with -Wall -Wextra
 * -Werror and run under ASan/UBSan by tests/c_abi.rs (each run a child process).
 *
 * usage: hardening SAE_DIR cpu|gpu   (a SAELens SAE with d_in 64, d_sae 256) */
#include "saeplug.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define D 64
#define M 256
#define SENTINEL 12345.0f

static char msg[1024];

static const char *last(void) {
    saeplug_last_error_message(msg, sizeof msg);
    return msg;
}

/* `st` is `want` and the last error message contains every NULL-terminated needle. */
static int fails_with(saeplug_status st, saeplug_status want, const char *a, const char *b) {
    if (st != want) {
        fprintf(stderr, "  got status %s (%u), want %s: %s\n", saeplug_status_str(st), (unsigned)st,
                saeplug_status_str(want), st == SAEPLUG_STATUS_OK ? "" : last());
        return 0;
    }
    last();
    if ((a && !strstr(msg, a)) || (b && !strstr(msg, b))) {
        fprintf(stderr, "  message lacks '%s'/'%s': %s\n", a ? a : "", b ? b : "", msg);
        return 0;
    }
    return 1;
}

static int all_equal(const float *v, size_t n, float want) {
    for (size_t i = 0; i < n; i++)
        if (!(v[i] == want)) return 0;
    return 1;
}

static void fill(float *v, size_t n, float value) {
    for (size_t i = 0; i < n; i++) v[i] = value;
}

/* n_rows rows, each a nonnegative combination of three decoder rows plus b_dec. */
static void sparse_inputs(saeplug_ctx *ctx, saeplug_sae *sae, float *x, size_t n_rows) {
    float zero[M] = {0}, b_dec[D], row[D];
    saeplug_ctx_decode(ctx, sae, zero, M, 1, b_dec, D);
    for (size_t r = 0; r < n_rows; r++) {
        memcpy(x + r * D, b_dec, sizeof b_dec);
        for (uint32_t k = 0; k < 3; k++) {
            uint32_t feature = (uint32_t)(7 + 31 * r + 67 * k) % M;
            saeplug_sae_decoder_row(sae, feature, row, D);
            for (size_t j = 0; j < D; j++) x[r * D + j] += (1.0f + 0.5f * (float)k) * row[j];
        }
    }
}

static void enums_and_bounds(saeplug_ctx *ctx, saeplug_sae *sae) {
    saeplug_ctx *c = (saeplug_ctx *)(uintptr_t)0x1234;
    saeplug_hook *hook = NULL;
    CHECK(fails_with(saeplug_ctx_new(7, 0, &c), SAEPLUG_STATUS_INVALID_ARGUMENT, "'backend' = 7",
                     "SAEPLUG_BACKEND_GPU"), "unknown backend");
    CHECK(fails_with(saeplug_ctx_new(SAEPLUG_BACKEND_CPU, 1u << 30, &c), SAEPLUG_STATUS_INVALID_ARGUMENT,
                     "'threads' = 1073741824", NULL), "absurd thread count");
    CHECK(fails_with(saeplug_ctx_new(SAEPLUG_BACKEND_CPU, UINT32_MAX, &c), SAEPLUG_STATUS_INVALID_ARGUMENT,
                     "'threads'", NULL), "thread count -1");
    CHECK(c == (saeplug_ctx *)(uintptr_t)0x1234, "failed ctx_new wrote *out");

    CHECK(fails_with(saeplug_hook_new(sae, UINT32_MAX, &hook), SAEPLUG_STATUS_INVALID_ARGUMENT,
                     "'layer' = 4294967295", NULL), "layer -1");
    CHECK(fails_with(saeplug_hook_new(sae, (uint32_t)INT32_MAX + 1u, &hook), SAEPLUG_STATUS_INVALID_ARGUMENT,
                     "'layer'", NULL), "layer INT32_MAX + 1");
    CHECK(hook == NULL, "failed hook_new wrote *out");
    CHECK(saeplug_hook_new(sae, (uint32_t)INT32_MAX, &hook) == SAEPLUG_STATUS_OK, "layer INT32_MAX: %s", last());
    CHECK(fails_with(saeplug_hook_add_edit(hook, 4, 0, 1.0f), SAEPLUG_STATUS_INVALID_ARGUMENT, "'kind' = 4",
                     "SAEPLUG_EDIT_KIND_SCALE = 3"), "unknown edit kind");
    CHECK(fails_with(saeplug_hook_set_positions(hook, 9, 0, 1), SAEPLUG_STATUS_INVALID_ARGUMENT, "'kind' = 9",
                     "SAEPLUG_POSITIONS_RANGE"), "unknown positions kind");
    CHECK(fails_with(saeplug_hook_set_replace(hook, 3), SAEPLUG_STATUS_INVALID_ARGUMENT, "'mode' = 3",
                     "SAEPLUG_REPLACE_RECONSTRUCTION_ONLY"), "unknown replace mode");
    CHECK(fails_with(saeplug_hook_set_solver(hook, 3, 4), SAEPLUG_STATUS_INVALID_ARGUMENT, "'solver' = 3",
                     "SAEPLUG_SOLVER_OMP"), "unknown solver");
    {
        float v[D], data[D];
        uint32_t layer = UINT32_MAX;
        char path[64];
        fill(v, D, 1.0f);
        fill(data, D, 1.0f);
        snprintf(path, sizeof path, "/nonexistent-dir/never-written.gguf");
        CHECK(fails_with(saeplug_export_cvec(path, "llama", &layer, 1, data, D), SAEPLUG_STATUS_INVALID_ARGUMENT,
                         "'layers' = 4294967295", NULL), "cvec layer -1");

        /* Positions that overflow size_t: refused, x untouched. */
        float x[3 * D];
        CHECK(saeplug_hook_add_vector(hook, v, D, 2.0f) == SAEPLUG_STATUS_OK, "add_vector");
        fill(x, 3 * D, 0.25f);
        CHECK(fails_with(saeplug_ctx_hook_apply(ctx, hook, x, 3 * D, 3, SIZE_MAX - 1),
                         SAEPLUG_STATUS_INVALID_ARGUMENT, "'pos0'", "overflow"), "pos0 + n_rows overflows");
        CHECK(all_equal(x, 3 * D, 0.25f), "a refused hook call changed x");
        /* The largest batch that fits: positions SIZE_MAX - 3 .. SIZE_MAX - 1. */
        CHECK(saeplug_hook_set_positions(hook, SAEPLUG_POSITIONS_RANGE, SIZE_MAX - 2, SIZE_MAX) ==
                  SAEPLUG_STATUS_OK, "range near SIZE_MAX");
        CHECK(saeplug_ctx_hook_apply(ctx, hook, x, 3 * D, 3, SIZE_MAX - 3) == SAEPLUG_STATUS_OK,
              "hook near SIZE_MAX: %s", last());
        CHECK(all_equal(x, D, 0.25f) && all_equal(x + D, 2 * D, 2.25f), "range near SIZE_MAX applied wrongly");

        saeplug_recorder *rec = NULL;
        CHECK(saeplug_recorder_new(sae, 2, &rec) == SAEPLUG_STATUS_OK, "recorder");
        CHECK(fails_with(saeplug_ctx_record(ctx, rec, x, 3 * D, 3, SIZE_MAX), SAEPLUG_STATUS_INVALID_ARGUMENT,
                         "'pos0'", NULL), "record positions overflow");
        {
            uint64_t count = 7;
            float both = SENTINEL;
            CHECK(fails_with(saeplug_recorder_feature(rec, 0, &count, &both, &both), SAEPLUG_STATUS_INVALID_ARGUMENT,
                             "'mean' and 'max' overlap", NULL), "recorder outputs overlap");
            CHECK(count == 7 && both == SENTINEL, "refused recorder_feature wrote an output");
        }
        saeplug_recorder_free(rec);
    }
    saeplug_hook_free(hook);
}

static void overlapping_buffers(saeplug_ctx *ctx, saeplug_sae *sae) {
    /* One allocation, views into it. */
    float *buf = calloc(4 * M, sizeof(float));
    float *x = buf, *keep = calloc(4 * M, sizeof(float));
    for (size_t i = 0; i < D; i++) x[i] = sinf((float)i);
    memcpy(keep, buf, 4 * M * sizeof(float));
    CHECK(fails_with(saeplug_ctx_encode(ctx, sae, x, D, 1, buf + D / 2, M), SAEPLUG_STATUS_INVALID_ARGUMENT,
                     "'x' and 'out' overlap", NULL), "encode x/out overlap");
    CHECK(memcmp(buf, keep, 4 * M * sizeof(float)) == 0, "refused encode wrote");
    /* Adjacent is not overlapping. */
    CHECK(saeplug_ctx_encode(ctx, sae, x, D, 1, buf + D, M) == SAEPLUG_STATUS_OK, "adjacent: %s", last());
    memcpy(keep, buf, 4 * M * sizeof(float));
    /* Decode in place. */
    CHECK(fails_with(saeplug_ctx_decode(ctx, sae, buf + D, M, 1, buf + D, D), SAEPLUG_STATUS_INVALID_ARGUMENT,
                     "'f' and 'out' overlap", NULL), "decode in place");
    CHECK(fails_with(saeplug_ctx_reconstruct(ctx, sae, x, D, 1, x, D), SAEPLUG_STATUS_INVALID_ARGUMENT,
                     "'x' and 'out' overlap", NULL), "reconstruct in place");
    CHECK(memcmp(buf, keep, 4 * M * sizeof(float)) == 0, "refused in-place call wrote");
    {
        size_t offs[2] = {0, 1}, nnz = 0;
        uint32_t idx[M];
        CHECK(fails_with(saeplug_ctx_encode_sparse(ctx, sae, x, D, 1, offs, idx, x + 4, M, &nnz),
                         SAEPLUG_STATUS_INVALID_ARGUMENT, "'x' and 'values' overlap", NULL),
              "encode_sparse values over x");
        CHECK(fails_with(saeplug_ctx_encode_sparse(ctx, sae, x, D, 1, offs, (uint32_t *)(buf + D), buf + D + 8, M,
                                                   &nnz),
                         SAEPLUG_STATUS_INVALID_ARGUMENT, "'indices' and 'values' overlap", NULL),
              "encode_sparse outputs overlap");
        idx[0] = 3;
        buf[D + 2 * M] = 1.0f;
        CHECK(fails_with(saeplug_ctx_decode_sparse(ctx, sae, offs, idx, buf + D + 2 * M, 1, 1, buf + D + 2 * M, D),
                         SAEPLUG_STATUS_INVALID_ARGUMENT, "'values' and 'out' overlap", NULL),
              "decode_sparse out over values");
        CHECK(fails_with(saeplug_ctx_solve(ctx, sae, SAEPLUG_SOLVER_MP, 4, 0, 0.0f, x, D, 1, offs, idx,
                                           buf + 2 * D, 4, &nnz, NULL, x + D - 1),
                         SAEPLUG_STATUS_INVALID_ARGUMENT, "'x' and 'residuals' overlap", NULL),
              "solve residuals over x");
    }
    free(buf);
    free(keep);
}

/* A failing call leaves every output as it was (results go to scratch first). */
static void outputs_untouched_on_failure(saeplug_ctx *ctx, saeplug_sae *sae) {
    enum { N = 5 };
    float *x = malloc(N * D * sizeof(float)), *out = malloc(N * M * sizeof(float));
    for (size_t i = 0; i < N * D; i++) x[i] = cosf(0.37f * (float)i);
    x[(N - 1) * D + 3] = NAN; /* the last row fails, after the others could be done */
    fill(out, N * M, SENTINEL);
    CHECK(fails_with(saeplug_ctx_encode(ctx, sae, x, N * D, N, out, N * M), SAEPLUG_STATUS_NON_FINITE, NULL, NULL),
          "encode NaN");
    CHECK(all_equal(out, N * M, SENTINEL), "failed encode wrote out");
    fill(out, N * D, SENTINEL);
    CHECK(fails_with(saeplug_ctx_reconstruct(ctx, sae, x, N * D, N, out, N * D), SAEPLUG_STATUS_NON_FINITE, NULL,
                     NULL), "reconstruct NaN");
    CHECK(all_equal(out, N * D, SENTINEL), "failed reconstruct wrote out");
    {
        float *f = calloc(N * M, sizeof(float));
        f[(N - 1) * M + 9] = INFINITY;
        CHECK(saeplug_ctx_decode(ctx, sae, f, N * M, N, out, N * D) != SAEPLUG_STATUS_OK, "decode inf accepted");
        CHECK(all_equal(out, N * D, SENTINEL), "failed decode wrote out");
        free(f);
    }
    {
        size_t offs[3] = {0, 1, 2};
        uint32_t idx[2] = {5, M}; /* row 1's index is out of range */
        float val[2] = {1.0f, 1.0f};
        CHECK(fails_with(saeplug_ctx_decode_sparse(ctx, sae, offs, idx, val, 2, 2, out, 2 * D),
                         SAEPLUG_STATUS_INVALID_ARGUMENT, NULL, NULL), "decode_sparse bad index");
        CHECK(all_equal(out, 2 * D, SENTINEL), "failed decode_sparse wrote out");
    }
    {
        size_t offs[N + 1], nnz = 77;
        uint32_t idx[N * 4], iters[N];
        float val[N * 4], res[N];
        for (size_t i = 0; i < N + 1; i++) offs[i] = 99;
        for (size_t i = 0; i < N; i++) iters[i] = 99;
        fill(val, N * 4, SENTINEL);
        fill(res, N, SENTINEL);
        CHECK(fails_with(saeplug_ctx_solve(ctx, sae, SAEPLUG_SOLVER_GP, 4, 0, 0.0f, x, N * D, N, offs, idx, val,
                                           N * 4, &nnz, iters, res),
                         SAEPLUG_STATUS_NON_FINITE, NULL, NULL), "solve NaN");
        CHECK(nnz == 77 && offs[0] == 99 && iters[0] == 99 && all_equal(val, N * 4, SENTINEL) &&
                  all_equal(res, N, SENTINEL), "failed solve wrote an output");
        CHECK(fails_with(saeplug_ctx_encode_sparse(ctx, sae, x, N * D, N, offs, idx, val, N * 4, &nnz),
                         SAEPLUG_STATUS_NON_FINITE, NULL, NULL), "encode_sparse NaN");
        CHECK(nnz == 77 && offs[0] == 99 && all_equal(val, N * 4, SENTINEL), "failed encode_sparse wrote");
        /* A step that fails after the compute: capacity too small. Only *out_nnz is written. */
        x[(N - 1) * D + 3] = 0.5f;
        CHECK(fails_with(saeplug_ctx_encode_sparse(ctx, sae, x, N * D, N, offs, idx, val, 1, &nnz),
                         SAEPLUG_STATUS_BUFFER_TOO_SMALL, NULL, NULL), "capacity 1");
        CHECK(nnz > 1 && offs[0] == 99 && val[0] == SENTINEL, "BUFFER_TOO_SMALL wrote more than *out_nnz");
    }
    /* Finite inputs whose result overflows f32: NON_FINITE (not OK with Inf), out untouched. */
    fill(x, N * D, 3.0e38f);
    fill(out, N * M, SENTINEL);
    CHECK(fails_with(saeplug_ctx_encode(ctx, sae, x, N * D, N, out, N * M), SAEPLUG_STATUS_NON_FINITE, "overflow",
                     NULL), "encode overflow: %s", last());
    CHECK(all_equal(out, N * M, SENTINEL), "overflowing encode wrote out");
    {
        float *f = malloc(N * M * sizeof(float));
        fill(f, N * M, 3.0e38f);
        fill(out, N * D, SENTINEL);
        CHECK(fails_with(saeplug_ctx_decode(ctx, sae, f, N * M, N, out, N * D), SAEPLUG_STATUS_NON_FINITE,
                         "overflow", NULL), "decode overflow: %s", last());
        CHECK(all_equal(out, N * D, SENTINEL), "overflowing decode wrote out");
        free(f);
    }
    free(x);
    free(out);
}

/* A failing hook call leaves x as it was. */
static void hook_failure_keeps_x(saeplug_ctx *ctx, saeplug_sae *sae) {
    enum { N = 4 };
    saeplug_hook *hook = NULL;
    float x[N * D], before[N * D], v[D];
    fill(v, D, 1.0f);
    CHECK(saeplug_hook_new(sae, 3, &hook) == SAEPLUG_STATUS_OK, "hook");
    CHECK(saeplug_hook_set_replace(hook, SAEPLUG_REPLACE_WITH_ERROR) == SAEPLUG_STATUS_OK, "replace");
    CHECK(saeplug_hook_add_edit(hook, SAEPLUG_EDIT_KIND_CLAMP, 5, 3.0f) == SAEPLUG_STATUS_OK, "clamp");
    CHECK(saeplug_hook_add_vector(hook, v, D, 3.3e38f) == SAEPLUG_STATUS_OK, "vector");
    for (size_t i = 0; i < N * D; i++) x[i] = before[i] = sinf(0.1f * (float)i);
    /* NaN in the last row. */
    x[(N - 1) * D + 1] = before[(N - 1) * D + 1] = NAN;
    CHECK(fails_with(saeplug_ctx_hook_apply(ctx, hook, x, N * D, N, 0), SAEPLUG_STATUS_NON_FINITE, NULL, NULL),
          "hook NaN");
    CHECK(memcmp(x, before, sizeof x) == 0, "a failed hook call (NaN) changed x");
    /* Finite input whose result overflows in the last step: the reconstruction
     * (with error) and the clamp are finite, adding 3.3e38 to a row at 5e37 is not. */
    for (size_t i = 0; i < N * D; i++) x[i] = before[i] = 0.01f * (float)(i % 7);
    for (size_t j = 0; j < D; j++) x[(N - 1) * D + j] = before[(N - 1) * D + j] = 5.0e37f;
    CHECK(fails_with(saeplug_ctx_hook_apply(ctx, hook, x, N * D, N, 0), SAEPLUG_STATUS_NON_FINITE, NULL, NULL),
          "hook overflow");
    CHECK(memcmp(x, before, sizeof x) == 0, "a failed hook call (overflow) changed x");
    saeplug_hook_free(hook);
}

/* The dense form of CSR codes. */
static void densify(const size_t *offs, const uint32_t *idx, const float *val, size_t n, float *dense) {
    memset(dense, 0, n * M * sizeof(float));
    for (size_t r = 0; r < n; r++)
        for (size_t j = offs[r]; j < offs[r + 1]; j++) dense[r * M + idx[j]] = val[j];
}

/* On a GPU context `saeplug_ctx_solve` runs there; its codes equal a CPU context's. */
static void gpu_solve_equals_cpu(saeplug_ctx *gpu, saeplug_sae *sae) {
    enum { N = 4, K = 6 };
    saeplug_ctx *cpu = NULL;
    float x[N * D];
    CHECK(saeplug_ctx_new(SAEPLUG_BACKEND_CPU, 1, &cpu) == SAEPLUG_STATUS_OK, "cpu ctx");
    sparse_inputs(cpu, sae, x, N);
    const uint32_t solvers[3] = {SAEPLUG_SOLVER_MP, SAEPLUG_SOLVER_GP, SAEPLUG_SOLVER_OMP};
    for (int s = 0; s < 3; s++) {
        size_t offs[2][N + 1], nnz[2];
        uint32_t idx[2][N * K], iters[2][N];
        float val[2][N * K], res[2][N], dense[2][N * M];
        saeplug_ctx *on[2] = {cpu, gpu};
        for (int b = 0; b < 2; b++) {
            CHECK(saeplug_ctx_solve(on[b], sae, solvers[s], K, 1, 0.0f, x, N * D, N, offs[b], idx[b], val[b], N * K,
                                    &nnz[b], iters[b], res[b]) == SAEPLUG_STATUS_OK,
                  "solve %u on %s: %s", solvers[s], saeplug_ctx_backend_name(on[b]), last());
            densify(offs[b], idx[b], val[b], N, dense[b]);
        }
        float worst = 0.0f;
        for (size_t i = 0; i < N * M; i++) {
            float e = fabsf(dense[0][i] - dense[1][i]) / (1.0f + fabsf(dense[0][i]));
            if (e > worst) worst = e;
        }
        CHECK(worst <= 1e-4f, "solver %u: GPU codes differ from CPU by %g (relative)", solvers[s], (double)worst);
        CHECK(nnz[0] > 0, "solver %u found no features", solvers[s]);
        for (size_t r = 0; r < N; r++)
            CHECK(fabsf(res[0][r] - res[1][r]) <= 1e-4f * (1.0f + res[0][r]), "solver %u row %zu residual %g vs %g",
                  solvers[s], r, (double)res[0][r], (double)res[1][r]);
    }
    /* A hook whose activations come from a solver runs on the context's backend too. */
    {
        saeplug_hook *hook = NULL;
        float y[2][N * D];
        saeplug_ctx *on[2] = {cpu, gpu};
        CHECK(saeplug_hook_new(sae, 0, &hook) == SAEPLUG_STATUS_OK, "hook");
        CHECK(saeplug_hook_set_solver(hook, SAEPLUG_SOLVER_GP, K) == SAEPLUG_STATUS_OK, "set_solver");
        CHECK(saeplug_hook_add_edit(hook, SAEPLUG_EDIT_KIND_CLAMP, 7, 4.0f) == SAEPLUG_STATUS_OK, "clamp");
        for (int b = 0; b < 2; b++) {
            memcpy(y[b], x, sizeof x);
            CHECK(saeplug_ctx_hook_apply(on[b], hook, y[b], N * D, N, 0) == SAEPLUG_STATUS_OK, "hook on %s: %s",
                  saeplug_ctx_backend_name(on[b]), last());
        }
        float worst = 0.0f, moved = 0.0f;
        for (size_t i = 0; i < N * D; i++) {
            float e = fabsf(y[0][i] - y[1][i]) / (1.0f + fabsf(y[0][i]));
            if (e > worst) worst = e;
            if (fabsf(y[0][i] - x[i]) > moved) moved = fabsf(y[0][i] - x[i]);
        }
        CHECK(moved > 1e-3f, "the clamp did not move x");
        CHECK(worst <= 1e-4f, "solver-sourced hook: GPU differs from CPU by %g (relative)", (double)worst);
        saeplug_hook_free(hook);
    }
    saeplug_ctx_free(cpu);
}

/* saeplug_decompose_vector: NULL pointers, bad codes and bounds, NaN, overlap and a
 * too-small capacity are errors that write no feature, coefficient or score. */
static void decompose_refusals(saeplug_ctx *ctx, saeplug_sae *sae) {
    float v[D], coef[8], d5[D];
    uint32_t feat[8];
    size_t n = 77;
    double cosine = -9.0;
    CHECK(saeplug_sae_decoder_row(sae, 5, d5, D) == SAEPLUG_STATUS_OK, "decoder_row: %s", last());
    for (int j = 0; j < D; j++) v[j] = 3.0f * d5[j];
    fill(coef, 8, SENTINEL);
    CHECK(fails_with(saeplug_decompose_vector(ctx, sae, SAEPLUG_SOLVER_OMP, 4, NULL, D, feat, coef, 8, &n,
                                              &cosine, NULL),
                     SAEPLUG_STATUS_NULL_POINTER, "'v'", NULL), "decompose null v");
    CHECK(fails_with(saeplug_decompose_vector(ctx, sae, SAEPLUG_SOLVER_OMP, 4, v, D, feat, coef, 8, NULL,
                                              NULL, NULL),
                     SAEPLUG_STATUS_NULL_POINTER, "'out_n'", NULL), "decompose null out_n");
    CHECK(fails_with(saeplug_decompose_vector(ctx, NULL, SAEPLUG_SOLVER_OMP, 4, v, D, feat, coef, 8, &n,
                                              NULL, NULL),
                     SAEPLUG_STATUS_NULL_POINTER, "'sae'", NULL), "decompose null sae");
    CHECK(fails_with(saeplug_decompose_vector(ctx, sae, 9, 4, v, D, feat, coef, 8, &n, NULL, NULL),
                     SAEPLUG_STATUS_INVALID_ARGUMENT, "'solver' = 9", NULL), "decompose solver 9");
    CHECK(fails_with(saeplug_decompose_vector(ctx, sae, SAEPLUG_SOLVER_OMP, 0, v, D, feat, coef, 8, &n,
                                              NULL, NULL),
                     SAEPLUG_STATUS_INVALID_ARGUMENT, NULL, NULL), "decompose k 0");
    CHECK(fails_with(saeplug_decompose_vector(ctx, sae, SAEPLUG_SOLVER_OMP, 4, v, D - 1, feat, coef, 8, &n,
                                              NULL, NULL),
                     SAEPLUG_STATUS_INVALID_ARGUMENT, "'v'", NULL), "decompose short v");
    CHECK(fails_with(saeplug_decompose_vector(ctx, sae, SAEPLUG_SOLVER_OMP, 4, v, D, feat, (float *)v, 8, &n,
                                              NULL, NULL),
                     SAEPLUG_STATUS_INVALID_ARGUMENT, "overlap", NULL), "decompose coefs over v");
    v[7] = NAN;
    CHECK(fails_with(saeplug_decompose_vector(ctx, sae, SAEPLUG_SOLVER_OMP, 4, v, D, feat, coef, 8, &n,
                                              &cosine, NULL),
                     SAEPLUG_STATUS_NON_FINITE, NULL, NULL), "decompose NaN");
    CHECK(n == 77 && cosine == -9.0 && all_equal(coef, 8, SENTINEL), "failed decompose wrote an output");
    /* v = 3 d_5 plus a second direction: two features, capacity 1: only *out_n. */
    for (int j = 0; j < D; j++) v[j] = 3.0f * d5[j] + (j == 0 ? 1.0f : 0.0f);
    saeplug_status st = saeplug_decompose_vector(ctx, sae, SAEPLUG_SOLVER_OMP, 4, v, D, feat, coef, 1, &n,
                                                 &cosine, NULL);
    if (st == SAEPLUG_STATUS_BUFFER_TOO_SMALL) {
        CHECK(n > 1 && coef[0] == SENTINEL && cosine == -9.0, "too-small decompose wrote more than out_n");
    } else {
        CHECK(st == SAEPLUG_STATUS_OK && n == 1, "decompose capacity 1: %s", last());
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SAE_DIR cpu|gpu\n", argv[0]);
        return 2;
    }
    int gpu = strcmp(argv[2], "gpu") == 0;
    saeplug_sae *sae = NULL;
    saeplug_ctx *ctx = NULL;
    if (saeplug_sae_open(argv[1], &sae) != SAEPLUG_STATUS_OK) {
        fprintf(stderr, "open: %s\n", last());
        return 1;
    }
    if (saeplug_ctx_new(gpu ? SAEPLUG_BACKEND_GPU : SAEPLUG_BACKEND_CPU, 2, &ctx) != SAEPLUG_STATUS_OK) {
        fprintf(stderr, "ctx_new: %s\n", last());
        return 1;
    }
    CHECK(strcmp(saeplug_ctx_backend_name(ctx), gpu ? "wgpu" : "cpu") == 0, "backend %s",
          saeplug_ctx_backend_name(ctx));
    enums_and_bounds(ctx, sae);
    overlapping_buffers(ctx, sae);
    outputs_untouched_on_failure(ctx, sae);
    hook_failure_keeps_x(ctx, sae);
    decompose_refusals(ctx, sae);
    if (gpu) gpu_solve_equals_cpu(ctx, sae);
    saeplug_ctx_free(ctx);
    saeplug_sae_free(sae);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("hardening (%s): all checks passed\n", argv[2]);
    return 0;
}
