/* A C consumer of include/saeplug.h: opens a SAELens fixture, encodes (dense and
 * sparse), decodes, reconstructs, compares with SAELens's outputs, and exercises
 * the error paths. Built with -Wall -Wextra -Werror (and sanitizers) by tests/c_abi.rs.
 *
 * usage: basic SAE_DIR X.bin FEATS.bin RECON.bin N_ROWS [cpu|gpu]
 * The .bin files are raw little-endian float32, as SAELens wrote them in io.safetensors. */
#include "saeplug.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond, ...)                                            \
    do {                                                            \
        if (!(cond)) {                                              \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);    \
            fprintf(stderr, __VA_ARGS__);                           \
            fprintf(stderr, "\n");                                  \
            failures++;                                             \
        }                                                           \
    } while (0)

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *v = malloc(n * sizeof(float));
    size_t got = v ? fread(v, sizeof(float), n, f) : 0;
    fclose(f);
    if (got != n) { free(v); return NULL; }
    return v;
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

static void last_error(char *buf, size_t len) {
    size_t need = saeplug_last_error_length();
    buf[0] = 0;
    size_t wrote = saeplug_last_error_message(buf, len);
    CHECK(need == 0 || wrote + 1 == need || wrote + 1 == len, "last error length mismatch");
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s SAE_DIR X.bin FEATS.bin RECON.bin N [cpu|gpu]\n", argv[0]);
        return 2;
    }
    char msg[512];
    CHECK(saeplug_abi_version() >> 16 == SAEPLUG_ABI_VERSION_MAJOR, "ABI major mismatch");
    CHECK((saeplug_abi_version() & 0xffff) == SAEPLUG_ABI_VERSION_MINOR, "ABI minor mismatch");

    saeplug_sae *sae = NULL;
    saeplug_status st = saeplug_sae_open(argv[1], &sae);
    if (st != SAEPLUG_STATUS_OK) {
        last_error(msg, sizeof msg);
        fprintf(stderr, "open failed: %s: %s\n", saeplug_status_str(st), msg);
        return 1;
    }
    saeplug_sae_info info;
    memset(&info, 0, sizeof info);
    CHECK(saeplug_sae_get_info(sae, &info) == SAEPLUG_STATUS_OK, "info");
    CHECK(info.zero_copy == 1, "fixture should be zero-copy");
    size_t n = (size_t)strtoul(argv[5], NULL, 10), d = info.d_in, m = info.d_sae;

    float *x = read_floats(argv[2], n * d);
    float *want_f = read_floats(argv[3], n * m);
    float *want_r = read_floats(argv[4], n * d);
    if (!x || !want_f || !want_r) { fprintf(stderr, "cannot read .bin inputs\n"); return 1; }

    saeplug_ctx *ctx = NULL;
    int gpu = argc == 7 && strcmp(argv[6], "gpu") == 0;
    st = saeplug_ctx_new(gpu ? SAEPLUG_BACKEND_GPU : SAEPLUG_BACKEND_CPU, 2, &ctx);
    if (st != SAEPLUG_STATUS_OK) {
        last_error(msg, sizeof msg);
        fprintf(stderr, "ctx_new failed: %s: %s\n", saeplug_status_str(st), msg);
        return 1;
    }
    CHECK(strcmp(saeplug_ctx_backend_name(ctx), gpu ? "wgpu" : "cpu") == 0, "backend name %s",
          saeplug_ctx_backend_name(ctx));

    float *f = calloc(n * m, sizeof(float));
    float *r = calloc(n * d, sizeof(float));
    float *r2 = calloc(n * d, sizeof(float));
    CHECK(saeplug_ctx_encode(ctx, sae, x, n * d, n, f, n * m) == SAEPLUG_STATUS_OK, "encode");
    CHECK(max_abs_diff(f, want_f, n * m) <= 1e-4f, "feature_acts differ from SAELens: %g",
          (double)max_abs_diff(f, want_f, n * m));
    CHECK(saeplug_ctx_decode(ctx, sae, f, n * m, n, r, n * d) == SAEPLUG_STATUS_OK, "decode");
    CHECK(max_abs_diff(r, want_r, n * d) <= 1e-4f, "recon differs from SAELens: %g",
          (double)max_abs_diff(r, want_r, n * d));
    CHECK(saeplug_ctx_reconstruct(ctx, sae, x, n * d, n, r2, n * d) == SAEPLUG_STATUS_OK, "reconstruct");
    CHECK(max_abs_diff(r2, want_r, n * d) <= 1e-4f, "reconstruct differs");

    /* Sparse: first ask with no capacity to learn the size. */
    size_t *offs = calloc(n + 1, sizeof(size_t));
    size_t nnz = 0;
    st = saeplug_ctx_encode_sparse(ctx, sae, x, n * d, n, offs, NULL, NULL, 0, &nnz);
    CHECK(st == SAEPLUG_STATUS_BUFFER_TOO_SMALL, "expected BUFFER_TOO_SMALL, got %u", (unsigned)st);
    CHECK(nnz > 0, "needed capacity reported");
    uint32_t *idx = calloc(nnz, sizeof(uint32_t));
    float *val = calloc(nnz, sizeof(float));
    size_t cap = nnz;
    CHECK(saeplug_ctx_encode_sparse(ctx, sae, x, n * d, n, offs, idx, val, cap, &nnz) == SAEPLUG_STATUS_OK,
          "encode_sparse");
    size_t dense_nnz = 0;
    for (size_t i = 0; i < n * m; i++) dense_nnz += want_f[i] != 0.0f;
    CHECK(nnz == dense_nnz, "sparse nnz %zu != SAELens L0 total %zu", nnz, dense_nnz);
    CHECK(offs[0] == 0 && offs[n] == nnz, "row offsets");
    for (size_t row = 0; row < n; row++)
        for (size_t j = offs[row]; j < offs[row + 1]; j++)
            CHECK(fabsf(val[j] - want_f[row * m + idx[j]]) <= 1e-4f, "sparse value row %zu", row);
    memset(r2, 0, n * d * sizeof(float));
    CHECK(saeplug_ctx_decode_sparse(ctx, sae, offs, idx, val, nnz, n, r2, n * d) == SAEPLUG_STATUS_OK,
          "decode_sparse");
    CHECK(max_abs_diff(r2, want_r, n * d) <= 1e-4f, "sparse recon differs");

    /* ITO: OMP with k_max 8 codes every row with at most 8 features and a finite,
     * non-increasing residual as k grows. */
    {
        size_t cap2 = n * 8, nnz2 = 0;
        uint32_t *idx2 = calloc(cap2, sizeof(uint32_t)), *iters = calloc(n, sizeof(uint32_t));
        float *val2 = calloc(cap2, sizeof(float)), *res8 = calloc(n, sizeof(float)), *res2 = calloc(n, sizeof(float));
        size_t *offs2 = calloc(n + 1, sizeof(size_t));
        CHECK(saeplug_ctx_solve(ctx, sae, SAEPLUG_SOLVER_OMP, 2, 0, 0.0f, x, n * d, n, offs2, idx2, val2, cap2,
                                &nnz2, iters, res2) == SAEPLUG_STATUS_OK, "solve k=2");
        CHECK(saeplug_ctx_solve(ctx, sae, SAEPLUG_SOLVER_OMP, 8, 0, 0.0f, x, n * d, n, offs2, idx2, val2, cap2,
                                &nnz2, iters, res8) == SAEPLUG_STATUS_OK, "solve k=8");
        for (size_t row = 0; row < n; row++) {
            CHECK(offs2[row + 1] - offs2[row] <= 8, "row %zu has more than k_max codes", row);
            CHECK(res8[row] <= res2[row] + 1e-4f && isfinite(res8[row]), "residual grows with k");
        }
        CHECK(saeplug_ctx_solve(ctx, sae, 7, 8, 0, 0.0f, x, n * d, n, offs2, idx2, val2, cap2, &nnz2, NULL,
                                NULL) == SAEPLUG_STATUS_INVALID_ARGUMENT, "unknown solver");
        CHECK(saeplug_ctx_solve(ctx, sae, SAEPLUG_SOLVER_GP, (uint32_t)m + 1, 1, 0.0f, x, n * d, n, offs2, idx2,
                                val2, cap2, &nnz2, NULL, NULL) == SAEPLUG_STATUS_INVALID_ARGUMENT, "k > d_sae");
        free(idx2); free(iters); free(val2); free(res8); free(res2); free(offs2);
    }

    /* Error paths: clear statuses and messages, nothing crashes. */
    CHECK(saeplug_ctx_encode(ctx, NULL, x, n * d, n, f, n * m) == SAEPLUG_STATUS_NULL_POINTER, "null sae");
    last_error(msg, sizeof msg);
    CHECK(strstr(msg, "'sae'") != NULL, "message names the parameter: %s", msg);
    CHECK(saeplug_ctx_encode(ctx, sae, NULL, n * d, n, f, n * m) == SAEPLUG_STATUS_NULL_POINTER, "null x");
    CHECK(saeplug_ctx_encode(ctx, sae, x, n * d - 1, n, f, n * m) == SAEPLUG_STATUS_INVALID_ARGUMENT,
          "short x");
    CHECK(saeplug_ctx_encode(ctx, sae, x, n * d, n, f, n * m - 1) == SAEPLUG_STATUS_INVALID_ARGUMENT,
          "short out");
    CHECK(saeplug_ctx_encode(ctx, sae, (const float *)((const char *)x + 1), d, 1, f, m) ==
              SAEPLUG_STATUS_MISALIGNED, "misaligned");
    x[5] = NAN;
    CHECK(saeplug_ctx_encode(ctx, sae, x, n * d, n, f, n * m) == SAEPLUG_STATUS_NON_FINITE, "NaN");
    last_error(msg, sizeof msg);
    CHECK(strstr(msg, "row 0, column 5") != NULL, "NaN message: %s", msg);
    CHECK(saeplug_ctx_encode(ctx, sae, NULL, 0, 0, NULL, 0) == SAEPLUG_STATUS_OK, "empty batch");
    CHECK(saeplug_sae_open("/nonexistent/sae", &sae) == SAEPLUG_STATUS_IO, "missing path");
    CHECK(sae != NULL, "failed open must not touch *out");
    CHECK(saeplug_sae_open(NULL, &sae) == SAEPLUG_STATUS_NULL_POINTER, "null path");
    CHECK(saeplug_sae_get_info(sae, NULL) == SAEPLUG_STATUS_NULL_POINTER, "null info");
    CHECK(saeplug_ctx_new(99, 0, &ctx) == SAEPLUG_STATUS_INVALID_ARGUMENT, "bad backend");
    CHECK(strcmp(saeplug_status_str(SAEPLUG_STATUS_OK), "ok") == 0, "status_str");
    CHECK(saeplug_status_str(12345) != NULL, "unknown status_str");
    idx[0] = (uint32_t)m; /* out of range */
    CHECK(saeplug_ctx_decode_sparse(ctx, sae, offs, idx, val, nnz, n, r2, n * d) ==
              SAEPLUG_STATUS_INVALID_ARGUMENT, "index out of range");
    CHECK(saeplug_sae_check_unchanged(sae) == SAEPLUG_STATUS_OK, "unchanged");

    saeplug_ctx_free(ctx);
    saeplug_ctx_free(NULL);
    saeplug_sae_free(sae);
    saeplug_sae_free(NULL);
    free(x); free(want_f); free(want_r); free(f); free(r); free(r2);
    free(offs); free(idx); free(val);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("c consumer (%s): all checks passed (n=%zu d_in=%zu d_sae=%zu nnz=%zu)\n", gpu ? "gpu" : "cpu", n, d, m, nnz);
    return 0;
}
