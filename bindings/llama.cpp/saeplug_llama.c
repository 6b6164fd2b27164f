/* saeplug_llama.c — see saeplug_llama.h. */
#include "saeplug_llama.h"

#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"
#include "ggml.h"

#define MAX_HOOKS 64

struct saeplug_llama {
    saeplug_ctx *ctx;
    const saeplug_hook *hooks[MAX_HOOKS];
    int n_hooks;
    saeplug_recorder *recs[MAX_HOOKS];
    int rec_layer[MAX_HOOKS];
    int n_recs;
    FILE *capture;
    int capture_layer;
    saeplug_llama_rows_fn fns[MAX_HOOKS];
    void *fn_user[MAX_HOOKS];
    int fn_layer[MAX_HOOKS];
    int n_fns;
    int pos0, n_tokens;
    saeplug_status status;
    float *buf;
    size_t buf_len;
};

struct saeplug_llama *saeplug_llama_new(saeplug_ctx *ctx) {
    struct saeplug_llama *a = calloc(1, sizeof *a);
    if (a) {
        a->ctx = ctx;
        a->capture_layer = -1;
    }
    return a;
}

void saeplug_llama_free(struct saeplug_llama *a) {
    if (a) {
        free(a->buf);
        free(a);
    }
}

int saeplug_llama_add_hook(struct saeplug_llama *a, const saeplug_hook *hook) {
    if (!a || !hook || a->n_hooks >= MAX_HOOKS) return -1;
    a->hooks[a->n_hooks++] = hook;
    return 0;
}

int saeplug_llama_add_recorder(struct saeplug_llama *a, saeplug_recorder *rec, int layer) {
    if (!a || !rec || a->n_recs >= MAX_HOOKS) return -1;
    a->recs[a->n_recs] = rec;
    a->rec_layer[a->n_recs++] = layer;
    return 0;
}

void saeplug_llama_set_capture(struct saeplug_llama *a, FILE *f, int layer) {
    a->capture = f;
    a->capture_layer = layer;
}

int saeplug_llama_add_capture(struct saeplug_llama *a, int layer, saeplug_llama_rows_fn fn, void *user) {
    if (!a || !fn || a->n_fns >= MAX_HOOKS) return -1;
    a->fns[a->n_fns] = fn;
    a->fn_user[a->n_fns] = user;
    a->fn_layer[a->n_fns++] = layer;
    return 0;
}

void saeplug_llama_set_batch(struct saeplug_llama *a, int pos0, int n_tokens) {
    a->pos0 = pos0;
    a->n_tokens = n_tokens;
}

saeplug_status saeplug_llama_status(const struct saeplug_llama *a) { return a->status; }

static int layer_of(const char *name) {
    if (strncmp(name, "l_out-", 6) != 0) return -1;
    char *end = NULL;
    long l = strtol(name + 6, &end, 10);
    return (end && *end == 0 && l >= 0 && l < 100000) ? (int)l : -1;
}

static bool wanted(const struct saeplug_llama *a, int layer) {
    if (layer < 0) return false;
    if (layer == a->capture_layer && a->capture) return true;
    for (int i = 0; i < a->n_hooks; i++)
        if ((int)saeplug_hook_layer(a->hooks[i]) == layer) return true;
    for (int i = 0; i < a->n_recs; i++)
        if (a->rec_layer[i] == layer) return true;
    for (int i = 0; i < a->n_fns; i++)
        if (a->fn_layer[i] == layer) return true;
    return false;
}

static void keep_first_error(struct saeplug_llama *a, saeplug_status st) {
    if (st != SAEPLUG_STATUS_OK && a->status == SAEPLUG_STATUS_OK) a->status = st;
}

bool saeplug_llama_cb_eval(struct ggml_tensor *t, bool ask, void *user_data) {
    struct saeplug_llama *a = user_data;
    int layer = layer_of(ggml_get_name(t));
    if (ask) return wanted(a, layer);
    if (!wanted(a, layer)) return true;
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) {
        keep_first_error(a, SAEPLUG_STATUS_UNSUPPORTED);
        return true;
    }
    size_t n_embd = (size_t)t->ne[0];
    size_t rows = (size_t)ggml_nelements(t) / n_embd;
    size_t nbytes = ggml_nbytes(t);
    bool host = t->buffer && ggml_backend_buffer_is_host(t->buffer);
    float *data = t->data;
    if (!host) {
        if (a->buf_len < nbytes) {
            float *nb = realloc(a->buf, nbytes);
            if (!nb) {
                keep_first_error(a, SAEPLUG_STATUS_BACKEND);
                return true;
            }
            a->buf = nb;
            a->buf_len = nbytes;
        }
        data = a->buf;
        ggml_backend_tensor_get(t, data, 0, nbytes);
    }
    /* The last layer keeps only the output rows: the batch's last ones. */
    size_t pos0 = (size_t)a->pos0 + ((size_t)a->n_tokens > rows ? (size_t)a->n_tokens - rows : 0);
    bool changed = false;
    for (int i = 0; i < a->n_hooks; i++) {
        if ((int)saeplug_hook_layer(a->hooks[i]) != layer) continue;
        keep_first_error(a, saeplug_ctx_hook_apply(a->ctx, a->hooks[i], data, rows * n_embd, rows, pos0));
        changed = true;
    }
    for (int i = 0; i < a->n_recs; i++) {
        if (a->rec_layer[i] != layer) continue;
        keep_first_error(a, saeplug_ctx_record(a->ctx, a->recs[i], data, rows * n_embd, rows, pos0));
    }
    if (a->capture && layer == a->capture_layer) fwrite(data, sizeof(float), rows * n_embd, a->capture);
    for (int i = 0; i < a->n_fns; i++)
        if (a->fn_layer[i] == layer) a->fns[i](a->fn_user[i], layer, data, rows, n_embd);
    if (changed && !host) ggml_backend_tensor_set(t, data, 0, nbytes);
    return true;
}

void saeplug_llama_clear(struct saeplug_llama *a) {
    if (!a) return;
    a->n_hooks = 0;
    a->n_recs = 0;
    a->n_fns = 0;
    a->status = SAEPLUG_STATUS_OK;
}

#ifndef SAEPLUG_GGML_VERSION
#define SAEPLUG_GGML_VERSION "unknown"
#endif

const char *saeplug_llama_built_ggml_version(void) { return SAEPLUG_GGML_VERSION; }

const void *saeplug_llama_ggml_symbol(void) { return (const void *)ggml_get_name; }

size_t saeplug_llama_ggml_tensor_size(void) { return sizeof(struct ggml_tensor); }
