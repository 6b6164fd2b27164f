/* saeplug_llama_eval.c — in-engine evaluation of an SAE (see saeplug_llama.h):
 * CE loss and KL with the SAE spliced in and with zero ablation, plus L0, the
 * centred FVU, dead/dense latents and the log10 feature-density histogram. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corpus.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"
#include "saeplug_llama.h"

enum eval_mode { MODE_CLEAN, MODE_SPLICE, MODE_ABLATE };

/* State of the eval callback for the batch being decoded. */
struct eval_state {
    char name[32];             /* "l_out-L" */
    enum eval_mode mode;
    int n_seq, ctx, first_pos; /* batch layout: n_seq sequences of ctx tokens */
    saeplug_ctx *sctx;
    const saeplug_sae *sae;
    const saeplug_hook *hook;
    size_t d_in, d_sae;
    saeplug_status status;
    char error[512];
    float *dev;                /* copy of a tensor in a device buffer */
    size_t dev_len;
    float *f, *xhat;           /* scratch: features and reconstructions of one sequence */
    /* Statistics over the clean activations of the non-BOS positions. */
    uint64_t rows;
    double l0_sum, err_sum;
    double *mean, *m2;         /* Welford, per input dimension */
    uint64_t *fired;           /* per latent */
};

static void fail(struct eval_state *s, saeplug_status st, const char *what) {
    if (s->status != SAEPLUG_STATUS_OK) return;
    s->status = st;
    char msg[400] = "";
    saeplug_last_error_message(msg, sizeof msg);
    snprintf(s->error, sizeof s->error, "%s%s%s", what, msg[0] ? ": " : "", msg);
}

/* L0, reconstruction error, per-dimension variance and firing counts of `n` rows. */
static void add_stats(struct eval_state *s, const float *x, size_t n) {
    size_t d = s->d_in, m = s->d_sae;
    saeplug_status st = saeplug_ctx_encode(s->sctx, s->sae, x, n * d, n, s->f, n * m);
    if (st != SAEPLUG_STATUS_OK) { fail(s, st, "encoding l_out rows"); return; }
    st = saeplug_ctx_decode(s->sctx, s->sae, s->f, n * m, n, s->xhat, n * d);
    if (st != SAEPLUG_STATUS_OK) { fail(s, st, "decoding the features"); return; }
    for (size_t r = 0; r < n; r++) {
        const float *f = s->f + r * m, *xr = x + r * d, *xh = s->xhat + r * d;
        uint64_t l0 = 0;
        for (size_t j = 0; j < m; j++)
            if (f[j] > 0.0f) { l0++; s->fired[j]++; }
        s->l0_sum += (double)l0;
        s->rows++;
        double err = 0.0, inv = 1.0 / (double)s->rows;
        for (size_t j = 0; j < d; j++) {
            double e = (double)xr[j] - (double)xh[j];
            err += e * e;
            double delta = (double)xr[j] - s->mean[j];
            s->mean[j] += delta * inv;
            s->m2[j] += delta * ((double)xr[j] - s->mean[j]);
        }
        s->err_sum += err;
    }
}

/* The ggml eval callback: watches l_out-L only. */
static bool eval_cb(struct ggml_tensor *t, bool ask, void *user) {
    struct eval_state *s = user;
    if (strcmp(ggml_get_name(t), s->name) != 0) return !ask;
    if (ask) return true;
    if (s->status != SAEPLUG_STATUS_OK) return true;
    size_t d = s->d_in, rows = (size_t)ggml_nelements(t) / (size_t)t->ne[0];
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t) || (size_t)t->ne[0] != d ||
        rows != (size_t)s->n_seq * (size_t)s->ctx) {
        s->status = SAEPLUG_STATUS_UNSUPPORTED;
        snprintf(s->error, sizeof s->error, "%s is not %d contiguous f32 rows of %zu", s->name,
                 s->n_seq * s->ctx, d);
        return true;
    }
    size_t nbytes = ggml_nbytes(t);
    bool host = t->buffer && ggml_backend_buffer_is_host(t->buffer);
    float *x = t->data;
    if (!host) {
        if (s->dev_len < nbytes) {
            float *nb = realloc(s->dev, nbytes);
            if (!nb) { fail(s, SAEPLUG_STATUS_BACKEND, "out of memory"); return true; }
            s->dev = nb;
            s->dev_len = nbytes;
        }
        x = s->dev;
        ggml_backend_tensor_get(t, x, 0, nbytes);
    }
    size_t ctx = (size_t)s->ctx, fp = (size_t)s->first_pos;
    for (int q = 0; q < s->n_seq && s->status == SAEPLUG_STATUS_OK; q++) {
        float *seq = x + (size_t)q * ctx * d;
        if (s->mode == MODE_CLEAN) add_stats(s, seq + fp * d, ctx - fp);
        else if (s->mode == MODE_ABLATE) memset(seq + fp * d, 0, (ctx - fp) * d * sizeof(float));
        else {
            /* Positions 0..ctx-1 of this sequence; the hook edits [first_pos, ctx). */
            saeplug_status st = saeplug_ctx_hook_apply(s->sctx, s->hook, seq, ctx * d, ctx, 0);
            if (st != SAEPLUG_STATUS_OK) fail(s, st, "splicing the reconstruction in");
        }
    }
    if (s->mode != MODE_CLEAN && !host) ggml_backend_tensor_set(t, x, 0, nbytes);
    return true;
}

/* log(sum(exp(z))) in double. */
static double logsumexp(const float *z, int n) {
    double m = -INFINITY;
    for (int v = 0; v < n; v++)
        if ((double)z[v] > m) m = (double)z[v];
    double s = 0.0;
    for (int v = 0; v < n; v++) s += exp((double)z[v] - m);
    return m + log(s);
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void set_err(char *err, size_t len, const char *fmt, ...) {
    if (!err || len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

/* Sums of a pass's CE and KL(clean || pass) over the prediction positions. */
struct loss { double ce, kl; };

int saeplug_llama_eval(struct llama_model *model, const saeplug_sae *sae, const struct saeplug_llama_eval_options *o,
                       struct saeplug_llama_eval_result *out, char *err, size_t err_len) {
    if (!model || !sae || !o || !out || (!o->corpus && o->n_corpus > 0)) {
        set_err(err, err_len, "saeplug_llama_eval: a NULL argument");
        return -1;
    }
    int ctx = o->ctx, threads = o->threads, n_batch = o->n_batch, layer = o->layer;
    if (ctx < 3 || o->tokens < 0 || o->heldout < 0.0 || o->heldout >= 1.0 || threads < 1 || n_batch < 1) {
        set_err(err, err_len, "need ctx >= 3, tokens >= 0, 0 <= heldout < 1, threads and n_batch >= 1");
        return -1;
    }
    int n_seq = n_batch / ctx > 0 ? n_batch / ctx : 1;
    saeplug_sae_info info;
    if (saeplug_sae_get_info(sae, &info) != SAEPLUG_STATUS_OK) {
        set_err(err, err_len, "saeplug_sae_get_info failed");
        return -1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_embd = llama_model_n_embd(model), n_layer = llama_model_n_layer(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    if (layer < 0 || layer >= n_layer) {
        set_err(err, err_len, "layer %d: the model has blocks 0..%d", layer, n_layer - 1);
        return -1;
    }
    if (info.d_in != (size_t)n_embd) {
        set_err(err, err_len,
                "the SAE's d_in is %zu but the model's residual stream (l_out-%d) has n_embd %d: this SAE does not "
                "belong to this model", info.d_in, layer, n_embd);
        return -1;
    }
    struct corpus_files corpus = {0};
    for (size_t i = 0; i < o->n_corpus; i++)
        if (corpus_add_path(&corpus, o->corpus[i]) != 0) {
            set_err(err, err_len, "cannot read the corpus path %s", o->corpus[i]);
            corpus_files_free(&corpus);
            return -1;
        }
    struct corpus_reader reader;
    corpus_reader_init(&reader, vocab, &corpus, ctx);
    int first_pos = reader.has_bos ? 1 : 0;

    int rc = -1;
    struct eval_state st;
    memset(&st, 0, sizeof st);
    snprintf(st.name, sizeof st.name, "l_out-%d", layer);
    st.ctx = ctx;
    st.first_pos = first_pos;
    st.sae = sae;
    st.d_in = info.d_in;
    st.d_sae = info.d_sae;
    saeplug_hook *hook = NULL;
    struct llama_context *lctx = NULL;
    struct llama_batch batch = {0};
    int have_batch = 0;
    size_t n_tok_max = (size_t)n_seq * (size_t)ctx;
    llama_token *btok = NULL;
    float *clean = NULL;
    double *clean_lse = NULL;
    if (saeplug_ctx_new(SAEPLUG_BACKEND_CPU, (uint32_t)threads, &st.sctx) != SAEPLUG_STATUS_OK ||
        saeplug_hook_new(sae, (uint32_t)layer, &hook) != SAEPLUG_STATUS_OK ||
        saeplug_hook_set_replace(hook, SAEPLUG_REPLACE_RECONSTRUCTION_ONLY) != SAEPLUG_STATUS_OK ||
        saeplug_hook_set_positions(hook, SAEPLUG_POSITIONS_RANGE, (size_t)first_pos, (size_t)ctx) != SAEPLUG_STATUS_OK) {
        char m[400] = "";
        saeplug_last_error_message(m, sizeof m);
        set_err(err, err_len, "configuring the splice hook: %s", m);
        goto done;
    }
    st.hook = hook;
    st.f = malloc((size_t)ctx * info.d_sae * sizeof(float));
    st.xhat = malloc((size_t)ctx * info.d_in * sizeof(float));
    st.mean = calloc(info.d_in, sizeof(double));
    st.m2 = calloc(info.d_in, sizeof(double));
    st.fired = calloc(info.d_sae, sizeof(uint64_t));
    btok = malloc(n_tok_max * sizeof *btok);
    clean = malloc(n_tok_max * (size_t)n_vocab * sizeof(float));
    clean_lse = malloc(n_tok_max * sizeof(double));
    if (!st.f || !st.xhat || !st.mean || !st.m2 || !st.fired || !btok || !clean || !clean_lse) {
        set_err(err, err_len, "out of memory");
        goto done;
    }

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_tok_max;
    cp.n_batch = (uint32_t)n_tok_max;
    cp.n_ubatch = (uint32_t)n_tok_max; /* one ubatch: callback rows are the batch's tokens in order */
    cp.n_seq_max = (uint32_t)n_seq;
    cp.kv_unified = true;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    cp.cb_eval = eval_cb;
    cp.cb_eval_user_data = &st;
    lctx = llama_init_from_model(model, cp);
    if (!lctx) { set_err(err, err_len, "cannot create a llama.cpp context"); goto done; }
    batch = llama_batch_init((int32_t)n_tok_max, 0, 1);
    have_batch = 1;

    long long budget = o->tokens, rows_per_seq = ctx - first_pos, evaluated = 0;
    uint64_t predictions = 0;
    struct loss clean_l = {0, 0}, spl = {0, 0}, abl = {0, 0};
    uint32_t n_evaluated_seq = 0;
    double t0 = seconds();
    int exhausted = 0;
    while (!exhausted && (budget == 0 || evaluated < budget)) {
        long long want = n_seq;
        if (budget > 0) {
            long long left = (budget - evaluated + rows_per_seq - 1) / rows_per_seq;
            if (left < want) want = left;
        }
        int q = 0;
        while (q < want) {
            uint32_t seq = 0;
            int got = corpus_next(&reader, btok + (size_t)q * (size_t)ctx, &seq);
            if (got < 0) { set_err(err, err_len, "reading the corpus failed (see stderr)"); goto done; }
            if (got == 0) { exhausted = 1; break; }
            if (o->heldout > 0.0 && !corpus_is_heldout(seq, o->heldout)) continue;
            q++;
        }
        if (q == 0) break;
        if (n_evaluated_seq == 0 && o->first_sequence)
            memcpy(o->first_sequence, btok, (size_t)ctx * sizeof *btok);
        int n_tok = q * ctx;
        st.n_seq = q;
        for (int mode = MODE_CLEAN; mode <= MODE_ABLATE; mode++) {
            batch.n_tokens = n_tok;
            for (int i = 0; i < n_tok; i++) {
                batch.token[i] = btok[i];
                batch.pos[i] = i % ctx;
                batch.n_seq_id[i] = 1;
                batch.seq_id[i][0] = i / ctx;
                batch.logits[i] = 1;
            }
            st.mode = (enum eval_mode)mode;
            if (llama_decode(lctx, batch) != 0) { set_err(err, err_len, "llama_decode failed"); goto done; }
            if (st.status != SAEPLUG_STATUS_OK) { set_err(err, err_len, "%s", st.error); goto done; }
            llama_memory_clear(llama_get_memory(lctx), true);
            struct loss *acc = mode == MODE_CLEAN ? &clean_l : mode == MODE_SPLICE ? &spl : &abl;
            for (int s = 0; s < q; s++)
                for (int p = first_pos; p < ctx - 1; p++) {
                    int r = s * ctx + p;
                    const float *z = llama_get_logits_ith(lctx, r);
                    if (!z) { set_err(err, err_len, "no logits for row %d", r); goto done; }
                    float *zc = clean + (size_t)r * (size_t)n_vocab;
                    llama_token target = btok[r + 1];
                    if (mode == MODE_CLEAN) {
                        memcpy(zc, z, (size_t)n_vocab * sizeof(float));
                        clean_lse[r] = logsumexp(z, n_vocab);
                        acc->ce += clean_lse[r] - (double)z[target];
                        predictions++;
                        continue;
                    }
                    double lse = logsumexp(z, n_vocab), lc = clean_lse[r], kl = 0.0;
                    acc->ce += lse - (double)z[target];
                    /* KL(clean || new) = sum_v p_c (log p_c - log p_new). */
                    for (int v = 0; v < n_vocab; v++) {
                        double dz = (double)zc[v] - (double)z[v];
                        kl += exp((double)zc[v] - lc) * (dz - (lc - lse));
                    }
                    acc->kl += kl;
                }
        }
        n_evaluated_seq += (uint32_t)q;
        evaluated += (long long)q * rows_per_seq;
        if (o->progress) o->progress(o->progress_user, evaluated, n_evaluated_seq, seconds() - t0);
    }
    if (evaluated == 0 || predictions == 0) {
        set_err(err, err_len, "the corpus holds no complete sequence of %d tokens%s", ctx,
                o->heldout > 0.0 ? " in the held-out split" : "");
        goto done;
    }

    memset(out, 0, sizeof *out);
    double np = (double)predictions, nr = (double)st.rows;
    out->ce_loss_clean = clean_l.ce / np;
    out->ce_loss_spliced = spl.ce / np;
    out->ce_loss_ablated = abl.ce / np;
    out->ce_loss_score = (out->ce_loss_ablated - out->ce_loss_spliced) / (out->ce_loss_ablated - out->ce_loss_clean);
    out->kl_div_spliced = spl.kl / np;
    out->kl_div_ablated = abl.kl / np;
    out->kl_div_score = (out->kl_div_ablated - out->kl_div_spliced) / out->kl_div_ablated;
    double var_sum = 0.0;
    for (size_t j = 0; j < st.d_in; j++) var_sum += st.m2[j];
    out->fvu = st.err_sum / var_sum;
    out->mse = st.err_sum / (nr * (double)st.d_in);
    out->l0 = st.l0_sum / nr;
    out->rows = st.rows;
    out->predictions = predictions;
    out->sequences = n_evaluated_seq;
    out->bos_excluded = reader.has_bos;
    out->d_in = st.d_in;
    out->d_sae = st.d_sae;
    out->corpus_exhausted = exhausted && budget > 0 && evaluated < budget;
    for (size_t j = 0; j < st.d_sae; j++) {
        if (st.fired[j] == 0) out->dead_latents++;
        else if ((double)st.fired[j] / nr > 0.1) out->dense_latents++;
    }
    /* log10 density of the live latents, 0.1-decade bins from floor(log10(1/rows)) to 0. */
    out->histogram_bin_width = 0.1;
    out->histogram_lo = floor(log10(1.0 / nr));
    int n_bins = (int)lround(-out->histogram_lo / out->histogram_bin_width);
    if (n_bins < 1) n_bins = 1;
    if (n_bins > SAEPLUG_LLAMA_EVAL_HISTOGRAM_BINS) n_bins = SAEPLUG_LLAMA_EVAL_HISTOGRAM_BINS;
    out->histogram_bins = n_bins;
    for (size_t j = 0; j < st.d_sae; j++) {
        if (st.fired[j] == 0) continue;
        int b = (int)floor((log10((double)st.fired[j] / nr) - out->histogram_lo) / out->histogram_bin_width);
        if (b < 0) b = 0;
        if (b >= n_bins) b = n_bins - 1;
        out->density_histogram[b]++;
    }
    rc = 0;

done:
    if (have_batch) llama_batch_free(batch);
    if (lctx) llama_free(lctx);
    saeplug_hook_free(hook);
    saeplug_ctx_free(st.sctx);
    corpus_reader_free(&reader);
    corpus_files_free(&corpus);
    free(btok);
    free(clean);
    free(clean_lse);
    free(st.f);
    free(st.xhat);
    free(st.mean);
    free(st.m2);
    free(st.fired);
    free(st.dev);
    return rc;
}
