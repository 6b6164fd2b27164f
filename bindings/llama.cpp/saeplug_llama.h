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

/* A new adapter computing with `ctx` (borrowed: it must outlive the adapter).
 * Returns NULL when out of memory. Free with saeplug_llama_free. */
struct saeplug_llama *saeplug_llama_new(saeplug_ctx *ctx);
/* Free the adapter (NULL is a no-op); hooks, recorders and the context stay the
 * caller's. Call it after the llama_context that uses the callback is freed. */
void saeplug_llama_free(struct saeplug_llama *a);
/* Remove every hook, recorder and row callback (not the capture file), so that one
 * adapter, and the llama_context that calls it, can serve several configurations
 * in turn (the Python integration's server). Not during a llama_decode. */
void saeplug_llama_clear(struct saeplug_llama *a);
/* The ggml version of the headers this adapter was compiled against
 * (ggml/CMakeLists.txt's GGML_VERSION_* as passed by build.sh; "unknown" if not
 * given). A caller that loads the adapter next to a libllama of its own (Python)
 * compares it with the loaded ggml_version() and refuses a mismatch: the adapter
 * reads struct ggml_tensor fields directly. */
const char *saeplug_llama_built_ggml_version(void);
/* The address of ggml_get_name as this adapter resolved it: equal to the one the
 * caller's libllama resolves exactly when both use the same loaded libggml-base. */
const void *saeplug_llama_ggml_symbol(void);
/* sizeof(struct ggml_tensor) in the headers this adapter was compiled against. */
size_t saeplug_llama_ggml_tensor_size(void);
/* Apply `hook` (borrowed, configured; it names its own layer) at every decode.
 * Returns 0 on success, -1 when the table of hooks is full (64) or an argument is NULL. */
int saeplug_llama_add_hook(struct saeplug_llama *a, const saeplug_hook *hook);
/* Record the features of l_out-<layer> into `rec` (borrowed) at every decode,
 * after the hooks of that layer. Returns 0, or -1 when full (64) or NULL. */
int saeplug_llama_add_recorder(struct saeplug_llama *a, saeplug_recorder *rec, int layer);
/* Append the raw f32 rows of l_out-<layer> to `f` (borrowed; after any edits).
 * NULL `f` stops capturing. */
void saeplug_llama_set_capture(struct saeplug_llama *a, FILE *f, int layer);
/* Called with the raw f32 rows of l_out-<layer> (after any edits of that
 * layer's hooks): `rows` rows of `n_embd` floats, valid during the call only, in
 * the order of the tokens of the ubatch being computed. */
typedef void (*saeplug_llama_rows_fn)(void *user, int layer, const float *rows, size_t n_rows, size_t n_embd);
/* Call `fn(user, ...)` with the rows of l_out-<layer> at every decode (several
 * layers: one call each). Returns 0, or -1 when full (64) or `fn` is NULL. */
int saeplug_llama_add_capture(struct saeplug_llama *a, int layer, saeplug_llama_rows_fn fn, void *user);
/* Absolute position of the first token of the next batch, and its size: call it
 * before every llama_decode, so that hook positions and recorder positions are
 * the sequence's. */
void saeplug_llama_set_batch(struct saeplug_llama *a, int pos0, int n_tokens);
/* First saeplug status that failed inside the callback (SAEPLUG_STATUS_OK if none);
 * the message is in saeplug_last_error_message() of the decoding thread; decoding
 * goes on. */
saeplug_status saeplug_llama_status(const struct saeplug_llama *a);
/* The ggml_backend_sched_eval_callback to put in llama_context_params.cb_eval,
 * with the adapter as cb_eval_user_data. Runs on the decoding thread. */
bool saeplug_llama_cb_eval(struct ggml_tensor *t, bool ask, void *user_data);

#endif
