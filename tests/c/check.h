/* The failure counter and CHECK(cond, printf-args) shared by the C test programs
 * (basic.c keeps its own copy: it is the self-contained example the README names). */
#ifndef SAEPLUG_TEST_CHECK_H
#define SAEPLUG_TEST_CHECK_H

#include <stdio.h>

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

#endif
