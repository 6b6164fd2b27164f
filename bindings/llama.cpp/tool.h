/* tool.h — small helpers shared by the saeplug-llama subcommands (main.c, capture.c). */
#ifndef SAEPLUG_LLAMA_TOOL_H
#define SAEPLUG_LLAMA_TOOL_H

#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <string.h>

#include "ggml-backend.h"
#include "saeplug.h"

/* Print `what` and saeplug's last error message, then exit(1). */
static inline void die(const char *what) {
    char msg[512] = "";
    saeplug_last_error_message(msg, sizeof msg);
    fprintf(stderr, "saeplug-llama: %s%s%s\n", what, msg[0] ? ": " : "", msg);
    exit(1);
}

/* Monotonic seconds. */
static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Register llama.cpp RPC servers ("host:port[,host:port...]") as devices, the way
 * llama.cpp's own --rpc does; call after llama_backend_init, before loading the
 * model (then -ngl N puts N layers on them). Returns 0, or -1 (message printed)
 * when this llama.cpp has no RPC backend (built without GGML_RPC). */
static inline int add_rpc_servers(const char *servers) {
    ggml_backend_reg_t rpc = ggml_backend_reg_by_name("RPC");
    if (!rpc) {
        fprintf(stderr, "saeplug-llama: --rpc: this llama.cpp has no RPC backend (build it with GGML_RPC=ON: scripts/build-llama.sh)\n");
        return -1;
    }
    typedef ggml_backend_reg_t (*add_server_fn)(const char *endpoint);
    add_server_fn add = (add_server_fn)ggml_backend_reg_get_proc_address(rpc, "ggml_backend_rpc_add_server");
    if (!add) {
        fprintf(stderr, "saeplug-llama: --rpc: ggml_backend_rpc_add_server not found\n");
        return -1;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", servers);
    for (char *save = NULL, *ep = strtok_r(buf, ",", &save); ep; ep = strtok_r(NULL, ",", &save)) {
        ggml_backend_reg_t reg = add(ep);
        if (!reg) {
            fprintf(stderr, "saeplug-llama: --rpc: cannot reach %s\n", ep);
            return -1;
        }
        ggml_backend_register(reg);
    }
    return 0;
}

/* `saeplug-llama capture ...` (capture.c); argv[0] is "capture". */
int capture_main(int argc, char **argv);

/* `saeplug-llama eval ...` (eval.c); argv[0] is "eval". */
int eval_main(int argc, char **argv);

/* `saeplug-llama logits ...` (logits.c); argv[0] is "logits". */
int logits_main(int argc, char **argv);

#endif
