/* Links a CPU-only build of the library (saeplug-ffi without its `gpu` feature):
 * SAEPLUG_BACKEND_GPU is refused with UNSUPPORTED and a message saying why, AUTO
 * gives a CPU context, and the CPU context works. Built and run by tests/c_abi.rs.
 *
 * usage: cpu_only SAE_DIR */
#include "saeplug.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

int main(int argc, char **argv) {
    char msg[512] = {0};
    saeplug_sae *sae = NULL;
    saeplug_ctx *ctx = (saeplug_ctx *)(uintptr_t)0x1234;
    if (argc != 2) return 2;
    CHECK(saeplug_abi_version() >> 16 == SAEPLUG_ABI_VERSION_MAJOR, "ABI major");
    CHECK(saeplug_ctx_new(SAEPLUG_BACKEND_GPU, 0, &ctx) == SAEPLUG_STATUS_UNSUPPORTED, "GPU not refused");
    saeplug_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "without GPU support") != NULL, "message: %s", msg);
    CHECK(ctx == (saeplug_ctx *)(uintptr_t)0x1234, "refused ctx_new wrote *out");
    CHECK(saeplug_ctx_new(SAEPLUG_BACKEND_AUTO, 1, &ctx) == SAEPLUG_STATUS_OK, "AUTO");
    CHECK(strcmp(saeplug_ctx_backend_name(ctx), "cpu") == 0, "AUTO gave %s", saeplug_ctx_backend_name(ctx));
    saeplug_ctx_free(ctx);
    ctx = NULL;
    CHECK(saeplug_ctx_new(SAEPLUG_BACKEND_CPU, 1, &ctx) == SAEPLUG_STATUS_OK, "CPU");
    CHECK(saeplug_sae_open(argv[1], &sae) == SAEPLUG_STATUS_OK, "open");
    {
        float x[64], f[256], recon[64];
        int active = 0;
        for (int j = 0; j < 64; j++) x[j] = sinf((float)j);
        CHECK(saeplug_ctx_encode(ctx, sae, x, 64, 1, f, 256) == SAEPLUG_STATUS_OK, "encode");
        for (int i = 0; i < 256; i++) active += f[i] > 0.0f;
        CHECK(active > 0, "no feature fired");
        CHECK(saeplug_ctx_reconstruct(ctx, sae, x, 64, 1, recon, 64) == SAEPLUG_STATUS_OK, "reconstruct");
    }
    saeplug_sae_free(sae);
    saeplug_ctx_free(ctx);
    if (failures) return 1;
    printf("cpu-only library: all checks passed\n");
    return 0;
}
