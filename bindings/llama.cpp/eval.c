/* saeplug-llama eval — how well an SAE stands in for the residual stream of a
 * llama.cpp model, measured in the engine (SAELens evals.py definitions; see
 * docs/TRAINING.md "Evaluation").
 *
 * saeplug-llama eval -m MODEL.gguf --sae DIR|FILE --layer L
 *          [-c|--ctx 128] [--tokens 8192] [--heldout F] [-t THREADS] [-b N_BATCH]
 *          [-ngl N] [--rpc HOST:PORT,...] [--json OUT.json] [--svg OUT.svg] CORPUS...
 *
 * CORPUS: text files or folders, cut into sequences exactly as `capture` does
 * (every sequence is BOS + the next CTX-1 corpus tokens; the tail is dropped).
 * --heldout F evaluates only the sequences capture would have held out with the
 * same --heldout F and --ctx (sequence s when floor((s+1)F) > floor(sF)); the
 * others are skipped. --tokens: activation rows (non-BOS positions) to
 * evaluate, whole sequences (0: the whole corpus).
 *
 * Each batch of sequences is decoded three times, with the residual stream after
 * block L (l_out-L, SAELens blocks.L.hook_resid_post) left as it is (clean),
 * replaced by the SAE's reconstruction with no error term (spliced: the C ABI's
 * hook in SAEPLUG_REPLACE_RECONSTRUCTION_ONLY mode), and replaced by zeros
 * (ablated). The BOS position is never edited and is out of every average (a
 * model without BOS: every position counts). Over the next-token predictions
 * from positions 1..CTX-2 (log-softmax in double):
 *   ce_loss_{clean,spliced,ablated}, ce_loss_score = (CE_abl - CE_spl) / (CE_abl - CE_clean),
 *   kl_div_{spliced,ablated} = mean KL(clean || new) over the vocabulary,
 *   kl_div_score = (KL_abl - KL_spl) / KL_abl.
 * Over the clean activations x of the non-BOS positions and x_hat = decode(encode(x)):
 *   l0 = mean #(f > 0); fvu = sum ||x - x_hat||^2 / sum_d sum_rows (x_d - mean_d)^2 (the centred
 *   definition: explained_variance = 1 - fvu); density_i = fraction of rows with f_i > 0;
 *   dead = never fired, dense = density > 0.1; a log10-density histogram of the
 *   live latents (--svg draws it).
 * stdout gets a readable table; --json writes every figure (and the token ids of
 * the first sequence evaluated). */
#include "tool.h"

#include <dirent.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml.h"
#include "llama.h"

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

/* The corpus as a sorted list of regular files (folders walked in name order). */
struct file_list {
    char **paths;
    size_t n, cap;
};

static int add_path(struct file_list *fl, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) { perror(path); return -1; }
    if (S_ISDIR(st.st_mode)) {
        struct dirent **names = NULL;
        int n = scandir(path, &names, NULL, alphasort);
        if (n < 0) { perror(path); return -1; }
        int rc = 0;
        for (int i = 0; i < n; i++) {
            if (rc == 0 && names[i]->d_name[0] != '.') {
                size_t len = strlen(path) + strlen(names[i]->d_name) + 2;
                char *p = malloc(len);
                if (!p) return -1;
                snprintf(p, len, "%s/%s", path, names[i]->d_name);
                rc = add_path(fl, p);
                free(p);
            }
            free(names[i]);
        }
        free(names);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) return 0;
    if (fl->n == fl->cap) {
        fl->cap = fl->cap ? 2 * fl->cap : 64;
        char **np = realloc(fl->paths, fl->cap * sizeof *fl->paths);
        if (!np) return -1;
        fl->paths = np;
    }
    fl->paths[fl->n++] = strdup(path);
    return 0;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(sz > 0 ? (size_t)sz + 1 : 1);
    *len = buf && sz > 0 ? fread(buf, 1, (size_t)sz, f) : 0;
    fclose(f);
    if (buf) buf[*len] = 0;
    return buf;
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

/* Sums of a pass's CE and KL(clean || pass) over the prediction positions. */
struct loss { double ce, kl; };

static void json_num(FILE *f, const char *key, double v, int last) {
    if (isfinite(v)) fprintf(f, "  \"%s\": %.9g%s\n", key, v, last ? "" : ",");
    else fprintf(f, "  \"%s\": null%s\n", key, last ? "" : ",");
}

/* JSON string body (quotes and backslashes escaped, control characters dropped). */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('"', f);
}

/* The log10-density histogram of the live latents as an SVG bar chart. */
static int write_svg(const char *path, const uint64_t *counts, int n_bins, double lo, double width,
                     size_t dead, size_t d_sae, uint64_t rows, const char *title) {
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return -1; }
    const double W = 640, H = 360, L = 60, R = 20, T = 40, B = 50;
    uint64_t mx = 1;
    for (int i = 0; i < n_bins; i++)
        if (counts[i] > mx) mx = counts[i];
    double pw = W - L - R, ph = H - T - B, hi = lo + width * n_bins;
#define XOF(v) (L + ((v) - lo) / (hi - lo) * pw)
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">", W / 2);
    for (const char *c = title; *c; c++) {
        if (*c == '<') fputs("&lt;", f);
        else if (*c == '>') fputs("&gt;", f);
        else if (*c == '&') fputs("&amp;", f);
        else fputc(*c, f);
    }
    fprintf(f, "</text>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"34\" text-anchor=\"middle\">%zu of %zu latents dead (never fired on %llu tokens, not drawn)</text>\n",
            W / 2, dead, d_sae, (unsigned long long)rows);
    for (int i = 0; i < n_bins; i++) {
        if (!counts[i]) continue;
        double h = (double)counts[i] / (double)mx * ph;
        fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#4878cf\"><title>%llu latents</title></rect>\n",
                XOF(lo + i * width), T + ph - h, pw / n_bins - 0.5, h, (unsigned long long)counts[i]);
    }
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T + ph, L + pw, T + ph);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T, L, T + ph);
    for (int e = (int)ceil(lo); e <= (int)floor(hi); e++)
        fprintf(f, "<text x=\"%.2f\" y=\"%.0f\" text-anchor=\"middle\">1e%d</text>\n", XOF((double)e), T + ph + 16, e);
    double dense = XOF(-1.0);
    fprintf(f, "<line x1=\"%.2f\" y1=\"%.0f\" x2=\"%.2f\" y2=\"%.0f\" stroke=\"#d65f5f\" stroke-dasharray=\"4 3\"/>\n",
            dense, T, dense, T + ph);
    fprintf(f, "<text x=\"%.2f\" y=\"%.0f\" fill=\"#d65f5f\" text-anchor=\"end\">dense &gt; 0.1</text>\n", dense - 4, T + 12);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">feature density (fraction of tokens with f &gt; 0, log scale)</text>\n",
            L + pw / 2, H - 10);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%llu</text>\n", L - 4, T + 4, (unsigned long long)mx);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">0</text>\n", L - 4, T + ph);
    fprintf(f, "<text transform=\"translate(16 %.0f) rotate(-90)\" text-anchor=\"middle\">latents</text>\n", T + ph / 2);
    fprintf(f, "</svg>\n");
#undef XOF
    return fclose(f) == 0 ? 0 : -1;
}

static int is_heldout(uint32_t s, double f) {
    return floor(((double)s + 1.0) * f) > floor((double)s * f);
}

int eval_main(int argc, char **argv) {
    const char *model_path = NULL, *sae_path = NULL, *json_path = NULL, *svg_path = NULL, *rpc = NULL;
    int layer = -1, ctx = 128, threads = 2, n_batch = 512, ngl = -1;
    long long budget = 8192;
    double heldout = 0.0;
    struct file_list corpus = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (++i, 1))
        if (ARG("-m")) model_path = v;
        else if (ARG("--sae")) sae_path = v;
        else if (ARG("--layer")) layer = atoi(v);
        else if (ARG("-c") || ARG("--ctx")) ctx = atoi(v);
        else if (ARG("--tokens")) budget = atoll(v);
        else if (ARG("--heldout")) heldout = atof(v);
        else if (ARG("-t")) threads = atoi(v);
        else if (ARG("-b")) n_batch = atoi(v);
        else if (ARG("-ngl")) ngl = atoi(v);
        else if (ARG("--rpc")) rpc = v;
        else if (ARG("--json")) json_path = v;
        else if (ARG("--svg")) svg_path = v;
        else if (a[0] == '-') {
            fprintf(stderr, "saeplug-llama eval: bad argument '%s' (see the comment at the top of eval.c)\n", a);
            return 2;
        } else if (add_path(&corpus, a) != 0) return 1;
#undef ARG
    }
    if (!model_path || !sae_path || layer < 0 || corpus.n == 0) {
        fprintf(stderr, "saeplug-llama eval: -m MODEL, --sae PATH, --layer L and a corpus are required\n");
        return 2;
    }
    if (ctx < 3 || budget < 0 || heldout < 0.0 || heldout >= 1.0 || threads < 1 || n_batch < 1) {
        fprintf(stderr, "saeplug-llama eval: need --ctx >= 3, --tokens >= 0, 0 <= --heldout < 1, -t and -b >= 1\n");
        return 2;
    }
    int n_seq = n_batch / ctx > 0 ? n_batch / ctx : 1;

    saeplug_sae *sae = NULL;
    if (saeplug_sae_open(sae_path, &sae) != SAEPLUG_STATUS_OK) die("opening the SAE");
    saeplug_sae_info info;
    if (saeplug_sae_get_info(sae, &info) != SAEPLUG_STATUS_OK) die("saeplug_sae_get_info");

    llama_backend_init();
    if (rpc && add_rpc_servers(rpc) != 0) return 1;
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = ngl;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) { fprintf(stderr, "saeplug-llama eval: cannot load %s\n", model_path); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_embd = llama_model_n_embd(model), n_layer = llama_model_n_layer(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    if (layer >= n_layer) {
        fprintf(stderr, "saeplug-llama eval: --layer %d: the model has blocks 0..%d\n", layer, n_layer - 1);
        return 2;
    }
    if (info.d_in != (size_t)n_embd) {
        fprintf(stderr, "saeplug-llama eval: the SAE's d_in is %zu but the model's residual stream (l_out-%d) has "
                        "n_embd %d: this SAE does not belong to this model\n", info.d_in, layer, n_embd);
        return 1;
    }
    llama_token bos = llama_vocab_bos(vocab);
    int has_bos = bos != LLAMA_TOKEN_NULL;
    int first_pos = has_bos ? 1 : 0;

    struct eval_state st;
    memset(&st, 0, sizeof st);
    snprintf(st.name, sizeof st.name, "l_out-%d", layer);
    st.ctx = ctx;
    st.first_pos = first_pos;
    st.sae = sae;
    st.d_in = info.d_in;
    st.d_sae = info.d_sae;
    if (saeplug_ctx_new(SAEPLUG_BACKEND_CPU, (uint32_t)threads, &st.sctx) != SAEPLUG_STATUS_OK) die("saeplug_ctx_new");
    saeplug_hook *hook = NULL;
    if (saeplug_hook_new(sae, (uint32_t)layer, &hook) != SAEPLUG_STATUS_OK ||
        saeplug_hook_set_replace(hook, SAEPLUG_REPLACE_RECONSTRUCTION_ONLY) != SAEPLUG_STATUS_OK ||
        saeplug_hook_set_positions(hook, SAEPLUG_POSITIONS_RANGE, (size_t)first_pos, (size_t)ctx) != SAEPLUG_STATUS_OK)
        die("configuring the splice hook");
    st.hook = hook;
    st.f = malloc((size_t)ctx * info.d_sae * sizeof(float));
    st.xhat = malloc((size_t)ctx * info.d_in * sizeof(float));
    st.mean = calloc(info.d_in, sizeof(double));
    st.m2 = calloc(info.d_in, sizeof(double));
    st.fired = calloc(info.d_sae, sizeof(uint64_t));

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_seq * ctx);
    cp.n_batch = (uint32_t)(n_seq * ctx);
    cp.n_ubatch = (uint32_t)(n_seq * ctx); /* one ubatch: callback rows are the batch's tokens in order */
    cp.n_seq_max = (uint32_t)n_seq;
    cp.kv_unified = true;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    cp.cb_eval = eval_cb;
    cp.cb_eval_user_data = &st;
    struct llama_context *lctx = llama_init_from_model(model, cp);
    if (!lctx) { fprintf(stderr, "saeplug-llama eval: cannot create a context\n"); return 1; }
    size_t n_tok_max = (size_t)n_seq * (size_t)ctx;
    struct llama_batch batch = llama_batch_init((int32_t)n_tok_max, 0, 1);
    llama_token *btok = malloc(n_tok_max * sizeof *btok);
    float *clean = malloc(n_tok_max * (size_t)n_vocab * sizeof(float));
    double *clean_lse = malloc(n_tok_max * sizeof(double));
    llama_token *first_seq = malloc((size_t)ctx * sizeof *first_seq); /* token ids, for the JSON */
    if (!st.f || !st.xhat || !st.mean || !st.m2 || !st.fired || !btok || !clean || !clean_lse || !first_seq) {
        fprintf(stderr, "saeplug-llama eval: out of memory\n");
        return 1;
    }

    llama_token *stream = NULL;
    size_t s_len = 0, s_at = 0, s_cap = 0, file_i = 0;
    int body = has_bos ? ctx - 1 : ctx;
    long long rows_per_seq = ctx - first_pos, evaluated = 0;
    uint64_t predictions = 0;
    struct loss clean_l = {0, 0}, spl = {0, 0}, abl = {0, 0};
    uint32_t next_seq = 0, n_evaluated_seq = 0;
    double t0 = now(), last_print = 0.0;
    int tty = isatty(2), exhausted = 0;
    while (!exhausted && (budget == 0 || evaluated < budget)) {
        long long want = n_seq;
        if (budget > 0) {
            long long left = (budget - evaluated + rows_per_seq - 1) / rows_per_seq;
            if (left < want) want = left;
        }
        int q = 0;
        while (q < want) {
            while (s_len - s_at < (size_t)body && file_i < corpus.n) {
                size_t len = 0;
                char *text = slurp(corpus.paths[file_i], &len);
                if (!text) { perror(corpus.paths[file_i]); return 1; }
                file_i++;
                if (len == 0 || len > (size_t)INT32_MAX) { free(text); continue; }
                if (s_at > 0) memmove(stream, stream + s_at, (s_len - s_at) * sizeof *stream);
                s_len -= s_at;
                s_at = 0;
                if (s_cap < s_len + len + 16) {
                    s_cap = s_len + len + 16;
                    llama_token *ns = realloc(stream, s_cap * sizeof *stream);
                    if (!ns) { fprintf(stderr, "saeplug-llama eval: out of memory\n"); return 1; }
                    stream = ns;
                }
                int n = llama_tokenize(vocab, text, (int32_t)len, stream + s_len, (int32_t)(s_cap - s_len), false, false);
                free(text);
                if (n < 0) { fprintf(stderr, "saeplug-llama eval: cannot tokenise %s\n", corpus.paths[file_i - 1]); return 1; }
                s_len += (size_t)n;
            }
            if (s_len - s_at < (size_t)body) { exhausted = 1; break; }
            uint32_t seq = next_seq++;
            if (heldout > 0.0 && !is_heldout(seq, heldout)) { s_at += (size_t)body; continue; }
            llama_token *dst = btok + (size_t)q * (size_t)ctx;
            if (has_bos) *dst++ = bos;
            memcpy(dst, stream + s_at, (size_t)body * sizeof *dst);
            s_at += (size_t)body;
            q++;
        }
        if (q == 0) break;
        if (n_evaluated_seq == 0) memcpy(first_seq, btok, (size_t)ctx * sizeof *btok);
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
            if (llama_decode(lctx, batch) != 0) { fprintf(stderr, "saeplug-llama eval: decode failed\n"); return 1; }
            if (st.status != SAEPLUG_STATUS_OK) { fprintf(stderr, "saeplug-llama eval: %s\n", st.error); return 1; }
            llama_memory_clear(llama_get_memory(lctx), true);
            struct loss *acc = mode == MODE_CLEAN ? &clean_l : mode == MODE_SPLICE ? &spl : &abl;
            for (int s = 0; s < q; s++)
                for (int p = first_pos; p < ctx - 1; p++) {
                    int r = s * ctx + p;
                    const float *z = llama_get_logits_ith(lctx, r);
                    if (!z) { fprintf(stderr, "saeplug-llama eval: no logits for row %d\n", r); return 1; }
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
        double t = now() - t0;
        if (t - last_print >= (tty ? 0.5 : 5.0) || (budget > 0 && evaluated >= budget)) {
            last_print = t;
            fprintf(stderr, "%seval: %lld/%lld tokens, %u sequences, %.0f tokens/s (3 passes)%s", tty ? "\r" : "",
                    evaluated, budget, n_evaluated_seq, t > 0 ? (double)evaluated / t : 0.0, tty ? "   " : "\n");
        }
    }
    double dt = now() - t0;
    if (tty) fputc('\n', stderr);
    if (evaluated == 0 || predictions == 0) {
        fprintf(stderr, "saeplug-llama eval: the corpus holds no complete sequence of %d tokens%s\n", ctx,
                heldout > 0.0 ? " in the held-out split" : "");
        return 1;
    }
    if (exhausted && budget > 0 && evaluated < budget)
        fprintf(stderr, "saeplug-llama eval: the corpus ran out after %lld of %lld tokens\n", evaluated, budget);

    double np = (double)predictions, nr = (double)st.rows;
    double ce_c = clean_l.ce / np, ce_s = spl.ce / np, ce_a = abl.ce / np;
    double kl_s = spl.kl / np, kl_a = abl.kl / np;
    double ce_score = (ce_a - ce_s) / (ce_a - ce_c), kl_score = (kl_a - kl_s) / kl_a;
    double var_sum = 0.0;
    for (size_t j = 0; j < st.d_in; j++) var_sum += st.m2[j];
    double fvu = st.err_sum / var_sum, mse = st.err_sum / (nr * (double)st.d_in), l0 = st.l0_sum / nr;
    size_t dead = 0, dense = 0;
    for (size_t j = 0; j < st.d_sae; j++) {
        if (st.fired[j] == 0) dead++;
        else if ((double)st.fired[j] / nr > 0.1) dense++;
    }
    /* log10 density of the live latents, 0.1-decade bins from floor(log10(1/rows)) to 0. */
    const double width = 0.1;
    double lo = floor(log10(1.0 / nr));
    int n_bins = (int)lround(-lo / width);
    if (n_bins < 1) n_bins = 1;
    uint64_t *hist = calloc((size_t)n_bins, sizeof *hist);
    if (!hist) return 1;
    for (size_t j = 0; j < st.d_sae; j++) {
        if (st.fired[j] == 0) continue;
        int b = (int)floor((log10((double)st.fired[j] / nr) - lo) / width);
        if (b < 0) b = 0;
        if (b >= n_bins) b = n_bins - 1;
        hist[b]++;
    }

    printf("saeplug-llama eval: %s at l_out-%d of %s\n", sae_path, layer, model_path);
    printf("  %u sequences of %d tokens, %lld activation rows, %llu next-token predictions (BOS excluded), %.1f s\n",
           n_evaluated_seq, ctx, evaluated, (unsigned long long)predictions, dt);
    printf("  %-22s %12s %12s %12s %12s\n", "", "clean", "spliced", "ablated", "score");
    printf("  %-22s %12.6f %12.6f %12.6f %12.6f\n", "CE loss (nats/token)", ce_c, ce_s, ce_a, ce_score);
    printf("  %-22s %12s %12.6f %12.6f %12.6f\n", "KL(clean || .)", "0", kl_s, kl_a, kl_score);
    printf("  %-22s %12.4f\n", "L0", l0);
    printf("  %-22s %12.6f   (centred; explained variance %.4f)\n", "FVU", fvu, 1.0 - fvu);
    printf("  %-22s %12.6g\n", "MSE per element", mse);
    printf("  %-22s %12zu of %zu (%.1f%%)\n", "dead latents", dead, st.d_sae, 100.0 * (double)dead / (double)st.d_sae);
    printf("  %-22s %12zu (density > 0.1)\n", "dense latents", dense);

    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) { perror(json_path); return 1; }
        fprintf(f, "{\n  \"model\": ");
        json_str(f, model_path);
        fprintf(f, ",\n  \"sae\": ");
        json_str(f, sae_path);
        fprintf(f, ",\n  \"hook\": \"%s\",\n  \"layer\": %d,\n  \"ctx\": %d,\n  \"heldout\": %g,\n", st.name, layer, ctx, heldout);
        fprintf(f, "  \"sequences\": %u,\n  \"tokens\": %lld,\n  \"predictions\": %llu,\n  \"bos_excluded\": %s,\n",
                n_evaluated_seq, evaluated, (unsigned long long)predictions, has_bos ? "true" : "false");
        fprintf(f, "  \"first_sequence\": [");
        for (int i = 0; i < ctx; i++) fprintf(f, "%s%d", i ? ", " : "", first_seq[i]);
        fprintf(f, "],\n");
        json_num(f, "ce_loss_clean", ce_c, 0);
        json_num(f, "ce_loss_spliced", ce_s, 0);
        json_num(f, "ce_loss_ablated", ce_a, 0);
        json_num(f, "ce_loss_score", ce_score, 0);
        json_num(f, "kl_div_spliced", kl_s, 0);
        json_num(f, "kl_div_ablated", kl_a, 0);
        json_num(f, "kl_div_score", kl_score, 0);
        json_num(f, "l0", l0, 0);
        json_num(f, "fvu", fvu, 0);
        json_num(f, "explained_variance", 1.0 - fvu, 0);
        json_num(f, "mse", mse, 0);
        fprintf(f, "  \"fvu_definition\": \"centred: sum ||x - x_hat||^2 / sum_d sum_rows (x_d - mean_d)^2\",\n");
        fprintf(f, "  \"d_in\": %zu,\n  \"d_sae\": %zu,\n  \"dead_latents\": %zu,\n  \"dense_latents\": %zu,\n",
                st.d_in, st.d_sae, dead, dense);
        json_num(f, "dead_fraction", (double)dead / (double)st.d_sae, 0);
        fprintf(f, "  \"log10_density_histogram\": {\"lo\": %g, \"bin_width\": %g, \"counts\": [", lo, width);
        for (int b = 0; b < n_bins; b++) fprintf(f, "%s%llu", b ? ", " : "", (unsigned long long)hist[b]);
        fprintf(f, "]},\n");
        json_num(f, "seconds", dt, 1);
        fprintf(f, "}\n");
        if (fclose(f) != 0) { perror(json_path); return 1; }
    }
    if (svg_path) {
        char title[512];
        const char *base = strrchr(sae_path, '/');
        snprintf(title, sizeof title, "Feature density: %s at l_out-%d (L0 %.1f, FVU %.3f, CE score %.3f)",
                 base && base[1] ? base + 1 : sae_path, layer, l0, fvu, ce_score);
        if (write_svg(svg_path, hist, n_bins, lo, width, dead, st.d_sae, st.rows, title) != 0) return 1;
    }

    free(hist);
    llama_batch_free(batch);
    llama_free(lctx);
    llama_model_free(model);
    llama_backend_free();
    saeplug_hook_free(hook);
    saeplug_ctx_free(st.sctx);
    saeplug_sae_free(sae);
    for (size_t i = 0; i < corpus.n; i++) free(corpus.paths[i]);
    free(corpus.paths);
    free(stream);
    free(btok);
    free(clean);
    free(clean_lse);
    free(first_seq);
    free(st.f);
    free(st.xhat);
    free(st.mean);
    free(st.m2);
    free(st.fired);
    free(st.dev);
    return 0;
}
