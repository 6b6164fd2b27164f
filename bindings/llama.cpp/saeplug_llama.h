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
#include <stdint.h>
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

/* ---- In-engine evaluation (saeplug_llama_eval.c; `saeplug-llama eval` calls it) ----
 * How well an SAE stands in for the residual stream after block `layer` (l_out-L,
 * SAELens blocks.L.hook_resid_post), SAELens evals.py definitions (docs/TRAINING.md
 * "Evaluation"). The corpus is cut into sequences as capture does (corpus.h);
 * each batch of sequences is decoded three times: clean, with the activation
 * replaced by the SAE's reconstruction (no error term), and with it zeroed. BOS
 * positions are never edited and are out of every average. */
struct llama_model;

/* Bins of saeplug_llama_eval_result.density_histogram: enough for 10^20 rows. */
#define SAEPLUG_LLAMA_EVAL_HISTOGRAM_BINS 200

struct saeplug_llama_eval_options {
    int layer;                   /* block L: l_out-L is spliced */
    int ctx;                     /* tokens per sequence, >= 3 */
    long long tokens;            /* activation rows (non-BOS positions) to evaluate, whole sequences; 0: all */
    double heldout;              /* 0: every sequence; else only those capture holds out with this fraction */
    int n_batch;                 /* tokens per decode (n_batch / ctx sequences, at least 1) */
    int threads;                 /* llama.cpp and saeplug CPU threads */
    const char *const *corpus;   /* text files or folders */
    size_t n_corpus;
    /* Optional: called after every batch (tokens evaluated so far, sequences, seconds). */
    void (*progress)(void *user, long long tokens, uint32_t sequences, double seconds);
    void *progress_user;
    /* Optional: receives the `ctx` token ids of the first sequence evaluated. */
    int32_t *first_sequence;
};

struct saeplug_llama_eval_result {
    double ce_loss_clean, ce_loss_spliced, ce_loss_ablated, ce_loss_score;
    double kl_div_spliced, kl_div_ablated, kl_div_score; /* mean KL(clean || .) per prediction */
    double l0, fvu, mse;         /* fvu centred: sum ||x - x_hat||^2 / sum_d sum_rows (x_d - mean_d)^2 */
    uint64_t rows;               /* activation rows (non-BOS positions) */
    uint64_t predictions;        /* next-token predictions averaged over */
    uint32_t sequences;
    int bos_excluded;            /* 1 when the model has a BOS token (position 0 left out) */
    size_t d_in, d_sae, dead_latents, dense_latents; /* dense: density > 0.1 */
    double histogram_lo, histogram_bin_width;        /* log10 density: floor(log10(1/rows)), 0.1 */
    int histogram_bins;
    uint64_t density_histogram[SAEPLUG_LLAMA_EVAL_HISTOGRAM_BINS]; /* live latents per bin */
    int corpus_exhausted;        /* 1 when the corpus ran out before `tokens` */
};

/* Evaluate `sae` on `model` (both borrowed; the SAE's d_in must be the model's
 * n_embd). Makes its own llama_context. Returns 0 and fills `*out`, or -1 with
 * a message in `err` (capacity `err_len`). */
int saeplug_llama_eval(struct llama_model *model, const saeplug_sae *sae, const struct saeplug_llama_eval_options *o,
                       struct saeplug_llama_eval_result *out, char *err, size_t err_len);

#endif
