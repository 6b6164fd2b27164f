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
 * the first sequence evaluated). The measuring is saeplug_llama_eval
 * (saeplug_llama_eval.c), callable from C and Python; this file is its command line. */
#include "tool.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llama.h"
#include "saeplug_llama.h"

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

static void on_progress(void *user, long long tokens, uint32_t sequences, double t) {
    struct { long long budget; int tty; double last; } *p = user;
    if (t - p->last < (p->tty ? 0.5 : 5.0) && !(p->budget > 0 && tokens >= p->budget)) return;
    p->last = t;
    fprintf(stderr, "%seval: %lld/%lld tokens, %u sequences, %.0f tokens/s (3 passes)%s", p->tty ? "\r" : "",
            tokens, p->budget, sequences, t > 0 ? (double)tokens / t : 0.0, p->tty ? "   " : "\n");
}

int eval_main(int argc, char **argv) {
    const char *model_path = NULL, *sae_path = NULL, *json_path = NULL, *svg_path = NULL, *rpc = NULL;
    int layer = -1, ctx = 128, threads = 2, n_batch = 512, ngl = -1;
    long long budget = 8192;
    double heldout = 0.0;
    const char **corpus = calloc((size_t)argc, sizeof *corpus);
    size_t n_corpus = 0;
    if (!corpus) return 1;
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
        } else {
            struct stat sb;
            if (stat(a, &sb) != 0) { perror(a); return 1; }
            corpus[n_corpus++] = a;
        }
#undef ARG
    }
    if (!model_path || !sae_path || layer < 0 || n_corpus == 0) {
        fprintf(stderr, "saeplug-llama eval: -m MODEL, --sae PATH, --layer L and a corpus are required\n");
        return 2;
    }
    if (ctx < 3 || budget < 0 || heldout < 0.0 || heldout >= 1.0 || threads < 1 || n_batch < 1) {
        fprintf(stderr, "saeplug-llama eval: need --ctx >= 3, --tokens >= 0, 0 <= --heldout < 1, -t and -b >= 1\n");
        return 2;
    }

    saeplug_sae *sae = NULL;
    if (saeplug_sae_open(sae_path, &sae) != SAEPLUG_STATUS_OK) die("opening the SAE");

    llama_backend_init();
    if (rpc && add_rpc_servers(rpc) != 0) return 1;
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = ngl;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) { fprintf(stderr, "saeplug-llama eval: cannot load %s\n", model_path); return 1; }
    int n_layer = llama_model_n_layer(model);
    if (layer >= n_layer) {
        fprintf(stderr, "saeplug-llama eval: --layer %d: the model has blocks 0..%d\n", layer, n_layer - 1);
        return 2;
    }

    int32_t *first_seq = malloc((size_t)ctx * sizeof *first_seq); /* token ids, for the JSON */
    if (!first_seq) { fprintf(stderr, "saeplug-llama eval: out of memory\n"); return 1; }
    struct { long long budget; int tty; double last; } prog = {budget, isatty(2), 0.0};
    struct saeplug_llama_eval_options o = {
        .layer = layer, .ctx = ctx, .tokens = budget, .heldout = heldout, .n_batch = n_batch,
        .threads = threads, .corpus = corpus, .n_corpus = n_corpus,
        .progress = on_progress, .progress_user = &prog, .first_sequence = first_seq,
    };
    struct saeplug_llama_eval_result *r = calloc(1, sizeof *r);
    if (!r) { fprintf(stderr, "saeplug-llama eval: out of memory\n"); return 1; }
    char err[768] = "";
    double t0 = now();
    int rc = saeplug_llama_eval(model, sae, &o, r, err, sizeof err);
    double dt = now() - t0;
    if (prog.tty) fputc('\n', stderr);
    if (rc != 0) { fprintf(stderr, "saeplug-llama eval: %s\n", err); return 1; }
    if (r->corpus_exhausted)
        fprintf(stderr, "saeplug-llama eval: the corpus ran out after %llu of %lld tokens\n",
                (unsigned long long)r->rows, budget);

    char hook_name[32];
    snprintf(hook_name, sizeof hook_name, "l_out-%d", layer);
    printf("saeplug-llama eval: %s at %s of %s\n", sae_path, hook_name, model_path);
    printf("  %u sequences of %d tokens, %llu activation rows, %llu next-token predictions (BOS excluded), %.1f s\n",
           r->sequences, ctx, (unsigned long long)r->rows, (unsigned long long)r->predictions, dt);
    printf("  %-22s %12s %12s %12s %12s\n", "", "clean", "spliced", "ablated", "score");
    printf("  %-22s %12.6f %12.6f %12.6f %12.6f\n", "CE loss (nats/token)", r->ce_loss_clean, r->ce_loss_spliced,
           r->ce_loss_ablated, r->ce_loss_score);
    printf("  %-22s %12s %12.6f %12.6f %12.6f\n", "KL(clean || .)", "0", r->kl_div_spliced, r->kl_div_ablated,
           r->kl_div_score);
    printf("  %-22s %12.4f\n", "L0", r->l0);
    printf("  %-22s %12.6f   (centred; explained variance %.4f)\n", "FVU", r->fvu, 1.0 - r->fvu);
    printf("  %-22s %12.6g\n", "MSE per element", r->mse);
    printf("  %-22s %12zu of %zu (%.1f%%)\n", "dead latents", r->dead_latents, r->d_sae,
           100.0 * (double)r->dead_latents / (double)r->d_sae);
    printf("  %-22s %12zu (density > 0.1)\n", "dense latents", r->dense_latents);

    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) { perror(json_path); return 1; }
        fprintf(f, "{\n  \"model\": ");
        json_str(f, model_path);
        fprintf(f, ",\n  \"sae\": ");
        json_str(f, sae_path);
        fprintf(f, ",\n  \"hook\": \"%s\",\n  \"layer\": %d,\n  \"ctx\": %d,\n  \"heldout\": %g,\n", hook_name, layer,
                ctx, heldout);
        fprintf(f, "  \"sequences\": %u,\n  \"tokens\": %llu,\n  \"predictions\": %llu,\n  \"bos_excluded\": %s,\n",
                r->sequences, (unsigned long long)r->rows, (unsigned long long)r->predictions,
                r->bos_excluded ? "true" : "false");
        fprintf(f, "  \"first_sequence\": [");
        for (int i = 0; i < ctx; i++) fprintf(f, "%s%d", i ? ", " : "", first_seq[i]);
        fprintf(f, "],\n");
        json_num(f, "ce_loss_clean", r->ce_loss_clean, 0);
        json_num(f, "ce_loss_spliced", r->ce_loss_spliced, 0);
        json_num(f, "ce_loss_ablated", r->ce_loss_ablated, 0);
        json_num(f, "ce_loss_score", r->ce_loss_score, 0);
        json_num(f, "kl_div_spliced", r->kl_div_spliced, 0);
        json_num(f, "kl_div_ablated", r->kl_div_ablated, 0);
        json_num(f, "kl_div_score", r->kl_div_score, 0);
        json_num(f, "l0", r->l0, 0);
        json_num(f, "fvu", r->fvu, 0);
        json_num(f, "explained_variance", 1.0 - r->fvu, 0);
        json_num(f, "mse", r->mse, 0);
        fprintf(f, "  \"fvu_definition\": \"centred: sum ||x - x_hat||^2 / sum_d sum_rows (x_d - mean_d)^2\",\n");
        fprintf(f, "  \"d_in\": %zu,\n  \"d_sae\": %zu,\n  \"dead_latents\": %zu,\n  \"dense_latents\": %zu,\n",
                r->d_in, r->d_sae, r->dead_latents, r->dense_latents);
        json_num(f, "dead_fraction", (double)r->dead_latents / (double)r->d_sae, 0);
        fprintf(f, "  \"log10_density_histogram\": {\"lo\": %g, \"bin_width\": %g, \"counts\": [", r->histogram_lo,
                r->histogram_bin_width);
        for (int b = 0; b < r->histogram_bins; b++)
            fprintf(f, "%s%llu", b ? ", " : "", (unsigned long long)r->density_histogram[b]);
        fprintf(f, "]},\n");
        json_num(f, "seconds", dt, 1);
        fprintf(f, "}\n");
        if (fclose(f) != 0) { perror(json_path); return 1; }
    }
    if (svg_path) {
        char title[512];
        const char *base = strrchr(sae_path, '/');
        snprintf(title, sizeof title, "Feature density: %s at %s (L0 %.1f, FVU %.3f, CE score %.3f)",
                 base && base[1] ? base + 1 : sae_path, hook_name, r->l0, r->fvu, r->ce_loss_score);
        if (write_svg(svg_path, r->density_histogram, r->histogram_bins, r->histogram_lo, r->histogram_bin_width,
                      r->dead_latents, r->d_sae, r->rows, title) != 0)
            return 1;
    }

    llama_model_free(model);
    llama_backend_free();
    saeplug_sae_free(sae);
    free(corpus);
    free(first_seq);
    free(r);
    return 0;
}
