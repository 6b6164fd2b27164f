/* saeplug_llama.h — plug saeplug into llama.cpp through its eval callback.
 *
 * The adapter asks llama.cpp for the tensors named "l_out-N" (the output of block N,
 * where llama.cpp also adds control vectors) of the layers that have hooks,
 * recorders or a capture file, and edits them in place (host buffers) or through
 * ggml_backend_tensor_get/set (device buffers).
 *
 * Use:
 *   struct saeplug_llama *a = saeplug_llama_new(ctx);        // a saeplug_ctx
 *   saeplug_llama_add_hook(a, hook); saeplug_llama_add_recorder(a, rec, layer);
 *   cparams.cb_eval = saeplug_llama_cb_eval; cparams.cb_eval_user_data = a;
 *   ... before every llama_decode: saeplug_llama_set_batch(a, pos0, n_tokens);
 *   after it: saeplug_llama_status(a) reports the first saeplug error, if any.
 * The adapter does not own the hooks, recorders or saeplug context. One adapter per
 * llama_context; not thread-safe (llama.cpp calls the callback from the thread
 * that runs llama_decode). */
#ifndef SAEPLUG_LLAMA_H
#define SAEPLUG_LLAMA_H

#include <stdbool.h>
#include <stdio.h>

#include "saeplug.h"

struct ggml_tensor;
struct saeplug_llama;

struct saeplug_llama *saeplug_llama_new(saeplug_ctx *ctx);
void saeplug_llama_free(struct saeplug_llama *a);
/* Returns 0 on success, -1 when the table of hooks is full (64). */
int saeplug_llama_add_hook(struct saeplug_llama *a, const saeplug_hook *hook);
int saeplug_llama_add_recorder(struct saeplug_llama *a, saeplug_recorder *rec, int layer);
/* Append the raw f32 rows of l_out-<layer> to `f` (after any edits). */
void saeplug_llama_set_capture(struct saeplug_llama *a, FILE *f, int layer);
/* Absolute position of the first token of the next batch, and its size. */
void saeplug_llama_set_batch(struct saeplug_llama *a, int pos0, int n_tokens);
/* First saeplug status that failed inside the callback (SAEPLUG_STATUS_OK if none);
 * the message is in saeplug_last_error_message() of the decoding thread. */
saeplug_status saeplug_llama_status(const struct saeplug_llama *a);
/* The ggml_backend_sched_eval_callback to put in llama_context_params.cb_eval. */
bool saeplug_llama_cb_eval(struct ggml_tensor *t, bool ask, void *user_data);

#endif
