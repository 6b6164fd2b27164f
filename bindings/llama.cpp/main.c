/* saeplug-llama — run llama.cpp with saeplug plugged into its eval callback.
 *
 * Build: bash bindings/llama.cpp/build.sh (see the README, "llama.cpp").
 *
 * saeplug-llama [generate] -m MODEL.gguf [-p PROMPT | -f FILE | --prompt-tokens ID,ID,...]
 *          [-n N_PREDICT] [-t THREADS] [-c N_CTX] [-b N_BATCH] [-ngl N_GPU_LAYERS]
 *          [--rpc HOST:PORT[,HOST:PORT...]]      llama.cpp RPC servers as devices (with -ngl)
 *          [-fa on|off|auto]                     flash attention (default: llama.cpp's, auto)
 *          [--sae DIR --layer L [--positions all|last|first:P]
 *           [--clamp F:V] [--ablate F] [--scale F:S] [--add F:C] [--vector-feature F:C]
 *           [--replace with-error|recon] [--record OUT.json]]
 *          [--cvec FILE.gguf [--cvec-scale S]]     llama.cpp's own control-vector path
 *          [--capture OUT.bin --capture-layer L]   raw l_out rows of every batch
 *          [--dump-logits OUT.bin]                 last prompt position's logits (f32)
 *   Prompts of any length: the prompt is decoded N_BATCH tokens at a time (default
 *   512); the context holds N_CTX tokens (default 0: prompt + N_PREDICT).
 *   Prints the generated text, then "TOKENS: ..." and "TOKENS_PER_SECOND: x".
 *
 * saeplug-llama capture ...   activation capture into a store (see capture.c).
 * saeplug-llama eval ...      CE/KL scores, L0, FVU, densities of an SAE spliced in (see eval.c).
 * saeplug-llama logits ...    each feature's logit effects through the unembedding (see logits.c). */
#include "tool.h"

#include <string.h>

#include "gguf.h"
#include "llama.h"
#include "saeplug_llama.h"

#define MAX_EDITS 64

/* The whole of `path` as a NUL-terminated string (NULL on failure). */
static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

/* llama.cpp's control-vector loading (common_control_vector_load_one): direction.N,
 * N >= 1, F32 [n_embd], into data[(N-1)*n_embd], times the scale. */
static float *load_cvec(const char *path, int n_embd, int n_layer, float scale) {
    struct gguf_init_params gp = {.no_alloc = false, .ctx = NULL};
    struct ggml_context *gctx = NULL;
    gp.ctx = &gctx;
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) return NULL;
    float *data = calloc((size_t)n_embd * (size_t)n_layer, sizeof(float));
    for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
        const char *name = gguf_get_tensor_name(g, i);
        int layer = 0;
        if (sscanf(name, "direction.%d", &layer) != 1 || layer < 1 || layer > n_layer) continue;
        struct ggml_tensor *t = ggml_get_tensor(gctx, name);
        if (!t || t->type != GGML_TYPE_F32 || ggml_nelements(t) != n_embd) continue;
        const float *src = t->data;
        for (int j = 0; j < n_embd; j++) data[(size_t)(layer - 1) * (size_t)n_embd + (size_t)j] += scale * src[j];
    }
    gguf_free(g);
    ggml_free(gctx);
    return data;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "capture") == 0) return capture_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "eval") == 0) return eval_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "logits") == 0) return logits_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "generate") == 0) { argc--; argv++; }
    const char *model_path = NULL, *prompt = "The capital of France is", *sae_dir = NULL;
    const char *record = NULL, *cvec = NULL, *capture = NULL, *dump = NULL, *positions = "all";
    const char *replace = NULL, *prompt_file = NULL, *prompt_tokens = NULL, *rpc = NULL;
    int n_predict = 16, threads = 2, layer = -1, capture_layer = -1;
    int n_ctx = 0, n_batch = 512, n_gpu_layers = -1; /* llama.cpp's default: every layer on a device if there is one */
    float cvec_scale = 1.0f;
    const char *flash_attn = NULL;
    char *edits[MAX_EDITS];
    int n_edits = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (++i, 1))
        if (ARG("-m")) model_path = v;
        else if (ARG("-p")) prompt = v;
        else if (ARG("-n")) n_predict = atoi(v);
        else if (ARG("-t")) threads = atoi(v);
        else if (ARG("-f")) prompt_file = v;
        else if (ARG("--prompt-tokens")) prompt_tokens = v;
        else if (ARG("-c")) n_ctx = atoi(v);
        else if (ARG("-b")) n_batch = atoi(v);
        else if (ARG("-ngl")) n_gpu_layers = atoi(v);
        else if (ARG("--rpc")) rpc = v;
        else if (ARG("-fa")) flash_attn = v;
        else if (ARG("--sae")) sae_dir = v;
        else if (ARG("--layer")) layer = atoi(v);
        else if (ARG("--positions")) positions = v;
        else if (ARG("--replace")) replace = v;
        else if (ARG("--record")) record = v;
        else if (ARG("--cvec")) cvec = v;
        else if (ARG("--cvec-scale")) cvec_scale = (float)atof(v);
        else if (ARG("--capture")) capture = v;
        else if (ARG("--capture-layer")) capture_layer = atoi(v);
        else if (ARG("--dump-logits")) dump = v;
        else if ((strcmp(a, "--clamp") == 0 || strcmp(a, "--ablate") == 0 || strcmp(a, "--scale") == 0 ||
                  strcmp(a, "--add") == 0 || strcmp(a, "--vector-feature") == 0) && v && n_edits < MAX_EDITS / 2) {
            edits[n_edits++] = argv[i];
            edits[n_edits++] = argv[i + 1];
            i++;
        } else {
            fprintf(stderr, "saeplug-llama: bad argument '%s' (see the comment at the top of main.c)\n", a);
            return 2;
        }
#undef ARG
    }
    if (!model_path) {
        fprintf(stderr, "saeplug-llama: -m MODEL.gguf is required\n");
        return 2;
    }
    if (n_predict < 0 || n_ctx < 0 || n_batch < 1 || threads < 1) {
        fprintf(stderr, "saeplug-llama: -n and -c must be >= 0, -b and -t >= 1\n");
        return 2;
    }
    char *prompt_buf = NULL;
    if (prompt_file) {
        prompt_buf = read_file(prompt_file);
        if (!prompt_buf) { perror(prompt_file); return 1; }
        prompt = prompt_buf;
    }

    saeplug_ctx *sctx = NULL;
    if (saeplug_ctx_new(SAEPLUG_BACKEND_CPU, 1, &sctx) != SAEPLUG_STATUS_OK) die("saeplug_ctx_new");
    struct saeplug_llama *adapter = saeplug_llama_new(sctx);
    saeplug_sae *sae = NULL;
    saeplug_hook *hook = NULL;
    saeplug_recorder *rec = NULL;
    if (sae_dir) {
        if (layer < 1) { fprintf(stderr, "saeplug-llama: --sae needs --layer >= 1\n"); return 2; }
        if (saeplug_sae_open(sae_dir, &sae) != SAEPLUG_STATUS_OK) die("opening the SAE");
        if (saeplug_hook_new(sae, (uint32_t)layer, &hook) != SAEPLUG_STATUS_OK) die("saeplug_hook_new");
        saeplug_sae_info info;
        saeplug_sae_get_info(sae, &info);
        if (strcmp(positions, "last") == 0) saeplug_hook_set_positions(hook, SAEPLUG_POSITIONS_LAST, 0, 0);
        else if (strncmp(positions, "first:", 6) == 0) saeplug_hook_set_positions(hook, SAEPLUG_POSITIONS_FIRST, (size_t)atoi(positions + 6), 0);
        for (int e = 0; e < n_edits; e += 2) {
            unsigned f = 0;
            float val = 0.0f;
            int n = sscanf(edits[e + 1], "%u:%f", &f, &val);
            saeplug_status st = SAEPLUG_STATUS_INVALID_ARGUMENT;
            if (strcmp(edits[e], "--ablate") == 0 && n >= 1) st = saeplug_hook_add_edit(hook, SAEPLUG_EDIT_KIND_ABLATE, f, 0.0f);
            else if (n == 2 && strcmp(edits[e], "--clamp") == 0) st = saeplug_hook_add_edit(hook, SAEPLUG_EDIT_KIND_CLAMP, f, val);
            else if (n == 2 && strcmp(edits[e], "--scale") == 0) st = saeplug_hook_add_edit(hook, SAEPLUG_EDIT_KIND_SCALE, f, val);
            else if (n == 2 && strcmp(edits[e], "--add") == 0) st = saeplug_hook_add_edit(hook, SAEPLUG_EDIT_KIND_ADD, f, val);
            else if (n == 2 && strcmp(edits[e], "--vector-feature") == 0) {
                float *row = malloc(info.d_in * sizeof(float));
                st = saeplug_sae_decoder_row(sae, f, row, info.d_in);
                if (st == SAEPLUG_STATUS_OK) st = saeplug_hook_add_vector(hook, row, info.d_in, val);
                free(row);
            }
            if (st != SAEPLUG_STATUS_OK) die(edits[e]);
        }
        if (replace && saeplug_hook_set_replace(hook, strcmp(replace, "recon") == 0 ? SAEPLUG_REPLACE_RECONSTRUCTION_ONLY : SAEPLUG_REPLACE_WITH_ERROR) != SAEPLUG_STATUS_OK)
            die("--replace");
        saeplug_llama_add_hook(adapter, hook);
        if (record) {
            if (saeplug_recorder_new(sae, 64, &rec) != SAEPLUG_STATUS_OK) die("saeplug_recorder_new");
            saeplug_llama_add_recorder(adapter, rec, layer);
        }
    }
    FILE *cap = NULL;
    if (capture) {
        cap = fopen(capture, "wb");
        if (!cap) { perror(capture); return 1; }
        saeplug_llama_set_capture(adapter, cap, capture_layer);
    }

    llama_backend_init();
    if (rpc && add_rpc_servers(rpc) != 0) return 1;
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = n_gpu_layers;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) { fprintf(stderr, "saeplug-llama: cannot load %s\n", model_path); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);

    llama_token *toks = NULL;
    int n_prompt = 0;
    if (prompt_tokens) {
        size_t cap = strlen(prompt_tokens) / 2 + 2;
        toks = malloc(cap * sizeof *toks);
        for (const char *p = prompt_tokens; *p && toks;) {
            char *end = NULL;
            long id = strtol(p, &end, 10);
            if (end == p || id < 0 || id >= llama_vocab_n_tokens(vocab)) {
                fprintf(stderr, "saeplug-llama: bad --prompt-tokens at '%s'\n", p);
                return 2;
            }
            toks[n_prompt++] = (llama_token)id;
            p = *end == ',' ? end + 1 : end;
        }
    } else {
        int32_t len = (int32_t)strlen(prompt);
        int need = -llama_tokenize(vocab, prompt, len, NULL, 0, true, false);
        toks = malloc((size_t)(need > 0 ? need : 1) * sizeof *toks);
        n_prompt = toks ? llama_tokenize(vocab, prompt, len, toks, need > 0 ? need : 1, true, false) : -1;
    }
    free(prompt_buf);
    if (!toks || n_prompt <= 0) { fprintf(stderr, "saeplug-llama: empty or untokenisable prompt\n"); return 1; }
    if (n_ctx == 0) n_ctx = n_prompt + n_predict;
    if (n_prompt + n_predict > n_ctx) {
        fprintf(stderr, "saeplug-llama: prompt of %d tokens + %d to generate exceeds the context (-c %d)\n",
                n_prompt, n_predict, n_ctx);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_batch;
    /* One ubatch per llama_decode: the adapter maps callback rows to positions per decode. */
    cp.n_ubatch = (uint32_t)n_batch;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    if (flash_attn) {
        if (strcmp(flash_attn, "on") == 0) cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
        else if (strcmp(flash_attn, "off") == 0) cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        else if (strcmp(flash_attn, "auto") == 0) cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
        else { fprintf(stderr, "saeplug-llama: -fa takes on, off or auto\n"); return 2; }
    }
    if (sae_dir || capture) {
        cp.cb_eval = saeplug_llama_cb_eval;
        cp.cb_eval_user_data = adapter;
    }
    struct llama_context *lctx = llama_init_from_model(model, cp);
    if (!lctx) { fprintf(stderr, "saeplug-llama: cannot create a context\n"); return 1; }
    int n_embd = llama_model_n_embd(model), n_layer = llama_model_n_layer(model);
    if (cvec) {
        float *data = load_cvec(cvec, n_embd, n_layer, cvec_scale);
        if (!data) { fprintf(stderr, "saeplug-llama: cannot read %s\n", cvec); return 1; }
        if (llama_set_adapter_cvec(lctx, data, (size_t)n_embd * (size_t)n_layer, n_embd, 1, n_layer) != 0) {
            fprintf(stderr, "saeplug-llama: llama_set_adapter_cvec failed\n");
            return 1;
        }
        free(data);
    }

    for (int at = 0; at < n_prompt; at += n_batch) {
        int n = n_prompt - at < n_batch ? n_prompt - at : n_batch;
        saeplug_llama_set_batch(adapter, at, n);
        if (llama_decode(lctx, llama_batch_get_one(toks + at, n)) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
        if (saeplug_llama_status(adapter) != SAEPLUG_STATUS_OK) die("steering inside llama_decode");
    }
    int n_vocab = llama_vocab_n_tokens(vocab);
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f) { perror(dump); return 1; }
        fwrite(llama_get_logits_ith(lctx, -1), sizeof(float), (size_t)n_vocab, f);
        fclose(f);
    }
    int pos = n_prompt, n_gen = 0;
    llama_token *generated = malloc((size_t)(n_predict > 0 ? n_predict : 1) * sizeof *generated);
    if (!generated) { fprintf(stderr, "saeplug-llama: out of memory\n"); return 1; }
    double t0 = now();
    for (int i = 0; i < n_predict; i++) {
        const float *logits = llama_get_logits_ith(lctx, -1);
        llama_token best = 0;
        for (llama_token v = 1; v < n_vocab; v++)
            if (logits[v] > logits[best]) best = v;
        generated[n_gen++] = best;
        char piece[128];
        int n = llama_token_to_piece(vocab, best, piece, sizeof piece - 1, 0, false);
        if (n > 0) { piece[n] = 0; fputs(piece, stdout); }
        if (llama_vocab_is_eog(vocab, best)) break;
        saeplug_llama_set_batch(adapter, pos, 1);
        if (llama_decode(lctx, llama_batch_get_one(&best, 1)) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
        if (saeplug_llama_status(adapter) != SAEPLUG_STATUS_OK) die("steering inside llama_decode");
        pos++;
    }
    double dt = now() - t0;
    printf("\nTOKENS:");
    for (int i = 0; i < n_gen; i++) printf(" %d", generated[i]);
    printf("\nTOKENS_PER_SECOND: %.3f\n", n_gen > 0 && dt > 0 ? n_gen / dt : 0.0);
    if (rec && saeplug_recorder_write_json(rec, record) != SAEPLUG_STATUS_OK) die("writing the recording");
    if (cap) fclose(cap);
    free(generated);
    free(toks);
    llama_free(lctx);
    llama_model_free(model);
    llama_backend_free();
    saeplug_recorder_free(rec);
    saeplug_hook_free(hook);
    saeplug_sae_free(sae);
    saeplug_llama_free(adapter);
    saeplug_ctx_free(sctx);
    return 0;
}
