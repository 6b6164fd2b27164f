/* tool.h — small helpers shared by the saeplug-llama subcommands (main.c, capture.c). */
#ifndef SAEPLUG_LLAMA_TOOL_H
#define SAEPLUG_LLAMA_TOOL_H

#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

/* `saeplug-llama capture ...` (capture.c); argv[0] is "capture". */
int capture_main(int argc, char **argv);

#endif
