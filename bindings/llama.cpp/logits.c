/* logits.c — `saeplug-llama logits`: each SAE feature's logit effects (its
 * decoder row through the model's unembedding, the final norm's gain folded in;
 * see saeplug_logits.h): the top and bottom tokens and a histogram over the
 * vocabulary, as JSON (docs/DASHBOARD.md).
 *
 * saeplug-llama logits --sae DIR -m MODEL.gguf --out OUT.json
 *          [--features F,F,...] [--top 10] [--bins 50]
 *
 * The unembedding is dequantised by ggml's own type traits (to_float), row by row,
 * from the tensor data read out of the GGUF file; token text comes from
 * llama.cpp's vocabulary (vocab_only load, llama_token_to_piece). An SAE whose
 * d_in differs from the model's n_embd is refused. */
#include "tool.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>

#include "ggml.h"
#include "gguf.h"
#include "llama.h"
#include "saeplug_logits.h"

static int fail(char *err, size_t len, const char *fmt, ...) {
    if (err && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Read `n` bytes at `off` of `f` into `buf`. */
static int read_at(FILE *f, size_t off, void *buf, size_t n) {
    if (fseeko(f, (off_t)off, SEEK_SET) != 0) return -1;
    return fread(buf, 1, n, f) == n ? 0 : -1;
}

/* Dequantise `n` values of type `type` at `src` into `dst` with ggml's own type
 * traits (F32 is copied: ggml has no to_float for it). Returns 0, or -1 when ggml
 * cannot dequantise the type. */
static int to_f32(enum ggml_type type, const void *src, float *dst, int64_t n) {
    if (type == GGML_TYPE_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
        return 0;
    }
    const struct ggml_type_traits *tr = ggml_get_type_traits(type);
    if (!tr || !tr->to_float) return -1;
    tr->to_float(src, dst, n);
    return 0;
}

int saeplug_unembed_load(const char *path, struct saeplug_unembed *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    struct ggml_context *meta = NULL;
    struct gguf_init_params gp = {.no_alloc = true, .ctx = &meta};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) return fail(err, err_len, "%s: not a readable GGUF file", path);
    int rc = -1;
    FILE *f = NULL;
    void *raw = NULL;
    const char *name = "output.weight";
    struct ggml_tensor *t = ggml_get_tensor(meta, name);
    if (!t) {
        name = "token_embd.weight";
        t = ggml_get_tensor(meta, name);
        out->tied = true;
    }
    if (!t) {
        fail(err, err_len, "%s: neither output.weight nor token_embd.weight is in the file", path);
        goto done;
    }
    const struct ggml_type_traits *tr = ggml_get_type_traits(t->type);
    if (t->type != GGML_TYPE_F32 && (!tr || !tr->to_float)) {
        fail(err, err_len, "%s: %s has type %s, which ggml cannot dequantise", path, name, ggml_type_name(t->type));
        goto done;
    }
    if (ggml_n_dims(t) != 2) {
        fail(err, err_len, "%s: %s is not a matrix", path, name);
        goto done;
    }
    int64_t n_embd = t->ne[0], n_vocab = t->ne[1];
    size_t row_bytes = ggml_row_size(t->type, n_embd);
    size_t off = gguf_get_data_offset(g) + gguf_get_tensor_offset(g, gguf_find_tensor(g, name));
    f = fopen(path, "rb");
    raw = malloc(row_bytes * (size_t)n_vocab);
    out->w = malloc(sizeof(float) * (size_t)n_embd * (size_t)n_vocab);
    if (!f || !raw || !out->w) {
        fail(err, err_len, "%s: %s", path, !f ? strerror(errno) : "out of memory");
        goto done;
    }
    if (read_at(f, off, raw, row_bytes * (size_t)n_vocab) != 0) {
        fail(err, err_len, "%s: cannot read %s (%zu bytes at %zu)", path, name, row_bytes * (size_t)n_vocab, off);
        goto done;
    }
    for (int64_t r = 0; r < n_vocab; r++)
        to_f32(t->type, (const char *)raw + (size_t)r * row_bytes, out->w + (size_t)r * (size_t)n_embd, n_embd);
    struct ggml_tensor *gain = ggml_get_tensor(meta, "output_norm.weight");
    if (gain) {
        if (ggml_nelements(gain) != n_embd) {
            fail(err, err_len, "%s: output_norm.weight has %lld values of type %s, n_embd is %lld", path,
                 (long long)ggml_nelements(gain), ggml_type_name(gain->type), (long long)n_embd);
            goto done;
        }
        size_t gbytes = ggml_row_size(gain->type, n_embd);
        void *graw = malloc(gbytes);
        float *gv = malloc(sizeof(float) * (size_t)n_embd);
        size_t goff = gguf_get_data_offset(g) + gguf_get_tensor_offset(g, gguf_find_tensor(g, "output_norm.weight"));
        int ok = graw && gv && read_at(f, goff, graw, gbytes) == 0 && to_f32(gain->type, graw, gv, n_embd) == 0;
        if (ok) {
            for (int64_t r = 0; r < n_vocab; r++)
                for (int64_t j = 0; j < n_embd; j++) out->w[(size_t)r * (size_t)n_embd + (size_t)j] *= gv[j];
        }
        free(graw);
        free(gv);
        if (!ok) {
            fail(err, err_len, "%s: cannot read output_norm.weight", path);
            goto done;
        }
        out->gain_folded = true;
    }
    out->n_embd = n_embd;
    out->n_vocab = n_vocab;
    snprintf(out->tensor, sizeof out->tensor, "%s", name);
    snprintf(out->type, sizeof out->type, "%s", ggml_type_name(t->type));
    rc = 0;
done:
    if (f) fclose(f);
    free(raw);
    if (rc != 0) {
        free(out->w);
        out->w = NULL;
    }
    gguf_free(g);
    ggml_free(meta);
    return rc;
}

void saeplug_unembed_free(struct saeplug_unembed *u) {
    if (!u) return;
    free(u->w);
    u->w = NULL;
}

void saeplug_unembed_apply(const struct saeplug_unembed *u, const float *dec, float *effects) {
    const size_t d = (size_t)u->n_embd;
    for (int64_t t = 0; t < u->n_vocab; t++) {
        const float *w = u->w + (size_t)t * d;
        double acc[4] = {0, 0, 0, 0};
        size_t j = 0;
        for (; j + 4 <= d; j += 4)
            for (int k = 0; k < 4; k++) acc[k] += (double)w[j + k] * (double)dec[j + k];
        for (; j < d; j++) acc[0] += (double)w[j] * (double)dec[j];
        effects[t] = (float)(acc[0] + acc[1] + acc[2] + acc[3]);
    }
}

/* ---- the subcommand ---- */

/* `s` (len bytes) as a JSON string: escapes, and invalid UTF-8 as U+FFFD. */
static void json_str(FILE *o, const char *s, size_t len) {
    fputc('"', o);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { fprintf(o, "\\%c", c); i++; continue; }
        if (c < 0x20 || c == 0x7f) { fprintf(o, "\\u%04x", c); i++; continue; }
        if (c < 0x80) { fputc(c, o); i++; continue; }
        size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
        if (c >= 0xF5) n = 0;
        int ok = n > 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++) ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (ok && n == 3) {
            unsigned char c1 = (unsigned char)s[i + 1];
            ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
        }
        if (ok && n == 4) {
            unsigned char c1 = (unsigned char)s[i + 1];
            ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
        }
        if (ok) {
            fwrite(s + i, 1, n, o);
            i += n;
        } else {
            fputs("\\ufffd", o);
            i++;
        }
    }
    fputc('"', o);
}

/* Is (v, t) ranked before (w, u) in descending order (ties: lower id first)? */
static int above(float v, int t, float w, int u) { return v > w || (v == w && t < u); }

/* The `k` largest (`sign` 1) or smallest (`sign` -1) entries of e[0..n): ids into `ids`. */
static int select_k(const float *e, int n, int k, int sign, int *ids) {
    int m = 0;
    for (int t = 0; t < n; t++) {
        float v = sign * e[t];
        if (m == k && !above(v, t, sign * e[ids[m - 1]], ids[m - 1])) continue;
        int at = m < k ? m++ : k - 1;
        while (at > 0 && above(v, t, sign * e[ids[at - 1]], ids[at - 1])) {
            ids[at] = ids[at - 1];
            at--;
        }
        ids[at] = t;
    }
    return m;
}

static void print_tokens(FILE *o, const struct llama_vocab *vocab, const float *e, const int *ids, int m) {
    fputc('[', o);
    for (int k = 0; k < m; k++) {
        char buf[256];
        int32_t len = llama_token_to_piece(vocab, ids[k], buf, sizeof buf, 0, true);
        if (len < 0) len = 0;
        fprintf(o, "%s{\"token\": %d, \"text\": ", k ? ", " : "", ids[k]);
        json_str(o, buf, (size_t)len);
        fprintf(o, ", \"logit\": %.9g}", (double)e[ids[k]]);
    }
    fputc(']', o);
}

/* llama.cpp's log: errors only. */
static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static void usage(void) {
    fprintf(stderr, "usage: saeplug-llama logits --sae DIR -m MODEL.gguf --out OUT.json "
                    "[--features F,F,...] [--top 10] [--bins 50]\n");
}

int logits_main(int argc, char **argv) {
    const char *sae_path = NULL, *model_path = NULL, *out_path = NULL, *features = NULL;
    int top = 10, bins = 50;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { usage(); fprintf(stderr, "saeplug-llama logits: %s needs a value\n", a); return 2; }
        if (strcmp(a, "--sae") == 0) sae_path = v;
        else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) model_path = v;
        else if (strcmp(a, "--out") == 0) out_path = v;
        else if (strcmp(a, "--features") == 0) features = v;
        else if (strcmp(a, "--top") == 0) top = atoi(v);
        else if (strcmp(a, "--bins") == 0) bins = atoi(v);
        else { usage(); fprintf(stderr, "saeplug-llama logits: unknown argument '%s'\n", a); return 2; }
        i++;
    }
    if (!sae_path || !model_path || !out_path || top < 1 || top > 1000 || bins < 1 || bins > 100000) {
        usage();
        return 2;
    }
    saeplug_sae *sae = NULL;
    if (saeplug_sae_open(sae_path, &sae) != SAEPLUG_STATUS_OK) die("cannot open the SAE");
    saeplug_sae_info info;
    if (saeplug_sae_get_info(sae, &info) != SAEPLUG_STATUS_OK) die("SAE info");
    char err[512];
    struct saeplug_unembed u;
    if (saeplug_unembed_load(model_path, &u, err, sizeof err) != 0) {
        fprintf(stderr, "saeplug-llama logits: %s\n", err);
        return 1;
    }
    if ((int64_t)info.d_in != u.n_embd) {
        fprintf(stderr,
                "saeplug-llama logits: the SAE's d_in is %zu but the model's n_embd is %lld "
                "(%s is %lld x %lld): this SAE does not belong to this model\n",
                info.d_in, (long long)u.n_embd, u.tensor, (long long)u.n_vocab, (long long)u.n_embd);
        return 1;
    }
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) { fprintf(stderr, "saeplug-llama logits: cannot load the vocabulary of %s\n", model_path); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    if (llama_vocab_n_tokens(vocab) != u.n_vocab)
        fprintf(stderr, "saeplug-llama logits: note: the vocabulary has %d tokens, %s has %lld rows\n",
                llama_vocab_n_tokens(vocab), u.tensor, (long long)u.n_vocab);
    /* The features: a list, or all. */
    size_t n_feat = 0, cap = info.d_sae;
    uint32_t *feat = malloc(sizeof(uint32_t) * (cap ? cap : 1));
    if (features) {
        char *buf = strdup(features);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char *end = NULL;
            errno = 0;
            unsigned long x = strtoul(tok, &end, 10);
            if (errno || !end || *end || x >= info.d_sae) {
                fprintf(stderr, "saeplug-llama logits: --features: '%s' is not a feature of this SAE (d_sae %zu)\n",
                        tok, info.d_sae);
                return 2;
            }
            if (n_feat == cap) break;
            feat[n_feat++] = (uint32_t)x;
        }
        free(buf);
    } else {
        for (size_t i = 0; i < info.d_sae; i++) feat[n_feat++] = (uint32_t)i;
    }
    FILE *o = fopen(out_path, "w");
    if (!o) { fprintf(stderr, "saeplug-llama logits: %s: %s\n", out_path, strerror(errno)); return 1; }
    float *dec = malloc(sizeof(float) * info.d_in);
    float *e = malloc(sizeof(float) * (size_t)u.n_vocab);
    int *ids = malloc(sizeof(int) * (size_t)top);
    long *hist = malloc(sizeof(long) * (size_t)bins);
    if (!dec || !e || !ids || !hist) die("out of memory");
    fprintf(o, "{\"format\": \"saeplug-logits\", \"version\": 1, \"model\": ");
    json_str(o, model_path, strlen(model_path));
    fprintf(o, ", \"sae\": ");
    json_str(o, sae_path, strlen(sae_path));
    fprintf(o, ", \"unembedding\": {\"tensor\": \"%s\", \"type\": \"%s\", \"tied\": %s, \"n_vocab\": %lld, "
               "\"n_embd\": %lld, \"norm_gain_folded\": %s},\n \"features\": [",
            u.tensor, u.type, u.tied ? "true" : "false", (long long)u.n_vocab, (long long)u.n_embd,
            u.gain_folded ? "true" : "false");
    double t0 = now();
    for (size_t k = 0; k < n_feat; k++) {
        if (saeplug_sae_decoder_row(sae, feat[k], dec, info.d_in) != SAEPLUG_STATUS_OK) die("decoder row");
        saeplug_unembed_apply(&u, dec, e);
        float lo = e[0], hi = e[0];
        for (int64_t t = 1; t < u.n_vocab; t++) {
            if (e[t] < lo) lo = e[t];
            if (e[t] > hi) hi = e[t];
        }
        memset(hist, 0, sizeof(long) * (size_t)bins);
        for (int64_t t = 0; t < u.n_vocab; t++) {
            double w = (double)hi - (double)lo;
            long b = w > 0 ? (long)floor(((double)e[t] - (double)lo) / w * bins) : bins - 1;
            if (b < 0) b = 0;
            if (b >= bins) b = bins - 1;
            hist[b]++;
        }
        fprintf(o, "%s\n  {\"feature\": %u, \"top\": ", k ? "," : "", feat[k]);
        int m = select_k(e, (int)u.n_vocab, top, 1, ids);
        print_tokens(o, vocab, e, ids, m);
        fprintf(o, ", \"bottom\": ");
        m = select_k(e, (int)u.n_vocab, top, -1, ids);
        print_tokens(o, vocab, e, ids, m);
        fprintf(o, ", \"histogram\": {\"lo\": %.9g, \"hi\": %.9g, \"counts\": [", (double)lo, (double)hi);
        for (int b = 0; b < bins; b++) fprintf(o, "%s%ld", b ? ", " : "", hist[b]);
        fprintf(o, "]}}");
    }
    fprintf(o, "\n]}\n");
    int bad = ferror(o);
    if (fclose(o) != 0 || bad) { fprintf(stderr, "saeplug-llama logits: cannot write %s\n", out_path); return 1; }
    printf("logit effects of %zu features through %s (%s%s, %lld x %lld%s) in %.1f s -> %s\n", n_feat, u.tensor,
           u.type, u.tied ? ", tied" : "", (long long)u.n_vocab, (long long)u.n_embd,
           u.gain_folded ? ", output_norm gain folded in" : "", now() - t0, out_path);
    free(dec);
    free(e);
    free(ids);
    free(hist);
    free(feat);
    llama_model_free(model);
    llama_backend_free();
    saeplug_unembed_free(&u);
    saeplug_sae_free(sae);
    return 0;
}
