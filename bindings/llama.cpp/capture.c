/* saeplug-llama capture — residual-stream activations of a text corpus into an
 * activation store (safetensors shards + manifest.json, written through the
 * saeplug C ABI's store writer).
 *
 * saeplug-llama capture -m MODEL.gguf --layer L [--layer L2 ...] --out DIR
 *          [--ctx 128] [--tokens 20000] [--heldout 0.05] [--dtype f32|f16]
 *          [--shard-rows N] [--keep-bos] [-t THREADS] [-b N_BATCH] [-ngl N] [--rpc HOST:PORT,...]
 *          [--no-store] CORPUS...
 *
 * CORPUS: text files, or folders (every regular file under them, in name order).
 * Each file is tokenised by llama.cpp (no special tokens) and the token streams are
 * concatenated; every sequence is the model's BOS token (if it has one) followed by
 * the next CTX-1 corpus tokens (CTX without BOS); the incomplete tail is dropped.
 * Several sequences (N_BATCH / CTX, default N_BATCH 512) are decoded together,
 * each in its own sequence of a unified KV cache. The rows of l_out-L (the
 * residual stream after block L, SAELens blocks.L.hook_resid_post) are stored
 * with their token id, sequence index (corpus order, from 0) and position (BOS
 * = 0). Position 0 is left out unless --keep-bos. Sequence s goes to the
 * held-out split when floor((s+1) F) > floor(s F) (F = --heldout): every 1/F-th
 * sequence, spread over the corpus. Capture stops once TOKENS rows per layer
 * are stored (both splits together; 0: the whole corpus).
 * With one layer DIR is the store; with several, DIR/l_out-L is layer L's store.
 * A progress line (tokens/s, ETA) goes to stderr; at the end stdout gets
 * "CAPTURE: tokens_decoded D rows R seconds S tokens_per_second X".
 * --no-store decodes the same batches without the callback or a store: the
 * plain llama.cpp prompt-processing baseline for the same work. */
#include "tool.h"

#include <string.h>
#include <unistd.h>

#include "corpus.h"
#include "llama.h"
#include "saeplug_llama.h"

#define MAX_LAYERS 64

struct batch_info {
    int n_seq, ctx;
    uint32_t seq0;        /* global index of the batch's first sequence */
    const llama_token *tokens;
    const int *heldout;   /* per sequence of the batch */
    int first_pos;        /* 0 with --keep-bos, else 1 */
};

struct layer_sink {
    int layer;
    saeplug_store_writer *w;
    saeplug_status status;
    char error[512];
    /* The batch being decoded (set before each llama_decode). */
    const struct batch_info *batch;
};

static int32_t *tok_buf;
static uint32_t *seq_buf, *pos_buf;

static void on_rows(void *user, int layer, const float *rows, size_t n_rows, size_t n_embd) {
    struct layer_sink *s = user;
    (void)layer;
    if (s->status != SAEPLUG_STATUS_OK) return;
    const struct batch_info *b = s->batch;
    if (n_rows != (size_t)b->n_seq * (size_t)b->ctx) {
        s->status = SAEPLUG_STATUS_INVALID_ARGUMENT;
        snprintf(s->error, sizeof s->error, "l_out-%d has %zu rows for a batch of %d tokens", s->layer, n_rows,
                 b->n_seq * b->ctx);
        return;
    }
    for (int q = 0; q < b->n_seq; q++) {
        size_t n = (size_t)(b->ctx - b->first_pos);
        for (size_t i = 0; i < n; i++) {
            size_t r = (size_t)q * (size_t)b->ctx + (size_t)b->first_pos + i;
            tok_buf[i] = b->tokens[r];
            seq_buf[i] = b->seq0 + (uint32_t)q;
            pos_buf[i] = (uint32_t)(b->first_pos + (int)i);
        }
        const float *x = rows + ((size_t)q * (size_t)b->ctx + (size_t)b->first_pos) * n_embd;
        saeplug_status st = saeplug_store_append(
            s->w, b->heldout[q] ? SAEPLUG_STORE_SPLIT_HELDOUT : SAEPLUG_STORE_SPLIT_TRAIN, x, n * n_embd, n,
            tok_buf, seq_buf, pos_buf);
        if (st != SAEPLUG_STATUS_OK) {
            s->status = st;
            saeplug_last_error_message(s->error, sizeof s->error);
            return;
        }
    }
}

int capture_main(int argc, char **argv) {
    const char *model_path = NULL, *out = NULL, *dtype = "f32", *rpc = NULL;
    int layers[MAX_LAYERS], n_layers = 0, ctx = 128, threads = 2, n_batch = 512, ngl = -1, keep_bos = 0;
    int no_store = 0;
    long long budget = 20000;
    size_t shard_rows = 0;
    double heldout = 0.05;
    struct corpus_files corpus = {0};
    char corpus_args[2048] = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (++i, 1))
        if (ARG("-m")) model_path = v;
        else if (ARG("--layer") && n_layers < MAX_LAYERS) layers[n_layers++] = atoi(v);
        else if (ARG("--out")) out = v;
        else if (ARG("--ctx")) ctx = atoi(v);
        else if (ARG("--tokens")) budget = atoll(v);
        else if (ARG("--heldout")) heldout = atof(v);
        else if (ARG("--dtype")) dtype = v;
        else if (ARG("--shard-rows")) shard_rows = (size_t)atoll(v);
        else if (ARG("-t")) threads = atoi(v);
        else if (ARG("-b")) n_batch = atoi(v);
        else if (ARG("-ngl")) ngl = atoi(v);
        else if (ARG("--rpc")) rpc = v;
        else if (strcmp(a, "--keep-bos") == 0) keep_bos = 1;
        else if (strcmp(a, "--no-store") == 0) no_store = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "saeplug-llama capture: bad argument '%s' (see the comment at the top of capture.c)\n", a);
            return 2;
        } else {
            if (corpus_add_path(&corpus, a) != 0) return 1;
            if (strlen(corpus_args) + strlen(a) + 2 < sizeof corpus_args) {
                if (corpus_args[0]) strcat(corpus_args, " ");
                strcat(corpus_args, a);
            }
        }
#undef ARG
    }
    if (!model_path || n_layers == 0 || (!out && !no_store) || corpus.n == 0) {
        fprintf(stderr, "saeplug-llama capture: -m MODEL, --layer L, --out DIR and a corpus are required\n");
        return 2;
    }
    if (ctx < 2 || budget < 0 || heldout < 0.0 || heldout >= 1.0 || threads < 1 || n_batch < 1 ||
        (strcmp(dtype, "f32") != 0 && strcmp(dtype, "f16") != 0)) {
        fprintf(stderr, "saeplug-llama capture: need --ctx >= 2, --tokens >= 0, 0 <= --heldout < 1, "
                        "-t and -b >= 1, --dtype f32|f16\n");
        return 2;
    }
    int n_seq = n_batch / ctx > 0 ? n_batch / ctx : 1;

    llama_backend_init();
    if (rpc && add_rpc_servers(rpc) != 0) return 1;
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = ngl;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) { fprintf(stderr, "saeplug-llama capture: cannot load %s\n", model_path); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_embd = llama_model_n_embd(model), n_layer = llama_model_n_layer(model);
    int last_layer = 0;
    for (int i = 0; i < n_layers; i++) {
        if (layers[i] < 0 || layers[i] >= n_layer) {
            fprintf(stderr, "saeplug-llama capture: --layer %d: the model has blocks 0..%d\n", layers[i], n_layer - 1);
            return 2;
        }
        for (int j = 0; j < i; j++)
            if (layers[j] == layers[i]) { fprintf(stderr, "saeplug-llama capture: --layer %d twice\n", layers[i]); return 2; }
        if (layers[i] == n_layer - 1) last_layer = 1;
    }
    llama_token bos = llama_vocab_bos(vocab);
    int has_bos = bos != LLAMA_TOKEN_NULL;
    int first_pos = keep_bos ? 0 : 1;

    saeplug_ctx *sctx = NULL;
    if (saeplug_ctx_new(SAEPLUG_BACKEND_CPU, 1, &sctx) != SAEPLUG_STATUS_OK) die("saeplug_ctx_new");
    struct saeplug_llama *adapter = saeplug_llama_new(sctx);
    struct layer_sink sinks[MAX_LAYERS];
    struct batch_info binfo = {0};
    memset(sinks, 0, sizeof sinks);
    tok_buf = malloc((size_t)ctx * sizeof *tok_buf);
    seq_buf = malloc((size_t)ctx * sizeof *seq_buf);
    pos_buf = malloc((size_t)ctx * sizeof *pos_buf);
    if (!adapter || !tok_buf || !seq_buf || !pos_buf) { fprintf(stderr, "out of memory\n"); return 1; }
    for (int i = 0; i < n_layers && !no_store; i++) {
        char dir[4096], hook[64], rule[128];
        if (n_layers == 1) snprintf(dir, sizeof dir, "%s", out);
        else snprintf(dir, sizeof dir, "%s/l_out-%d", out, layers[i]);
        snprintf(hook, sizeof hook, "l_out-%d", layers[i]);
        sinks[i].layer = layers[i];
        sinks[i].batch = &binfo;
        if (saeplug_store_create(dir, (size_t)n_embd,
                                 strcmp(dtype, "f16") == 0 ? SAEPLUG_STORE_DTYPE_F16 : SAEPLUG_STORE_DTYPE_F32,
                                 shard_rows, hook, (uint32_t)layers[i], (size_t)ctx, !keep_bos, model_path,
                                 &sinks[i].w) != SAEPLUG_STATUS_OK)
            die(dir);
        snprintf(rule, sizeof rule, "sequence s is held out when floor((s+1)*%g) > floor(s*%g)", heldout, heldout);
        char bos_s[32];
        snprintf(bos_s, sizeof bos_s, "%d", has_bos ? bos : -1);
        if (saeplug_store_set_metadata(sinks[i].w, "tool", "saeplug-llama capture") != SAEPLUG_STATUS_OK ||
            saeplug_store_set_metadata(sinks[i].w, "corpus", corpus_args) != SAEPLUG_STATUS_OK ||
            saeplug_store_set_metadata(sinks[i].w, "heldout_rule", rule) != SAEPLUG_STATUS_OK ||
            saeplug_store_set_metadata(sinks[i].w, "bos_token", bos_s) != SAEPLUG_STATUS_OK ||
            saeplug_store_set_metadata(sinks[i].w, "sequence_layout",
                                       has_bos ? "BOS + ctx-1 corpus tokens; pos 0 is BOS"
                                               : "ctx corpus tokens (the model has no BOS)") != SAEPLUG_STATUS_OK)
            die("saeplug_store_set_metadata");
        if (saeplug_llama_add_capture(adapter, layers[i], on_rows, &sinks[i]) != 0) die("saeplug_llama_add_capture");
    }

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_seq * ctx);
    cp.n_batch = (uint32_t)(n_seq * ctx);
    cp.n_ubatch = (uint32_t)(n_seq * ctx); /* one ubatch: callback rows are the batch's tokens in order */
    cp.n_seq_max = (uint32_t)n_seq;
    cp.kv_unified = true;                  /* simple split: tokens keep their batch order */
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    if (!no_store) {
        cp.cb_eval = saeplug_llama_cb_eval;
        cp.cb_eval_user_data = adapter;
    }
    struct llama_context *lctx = llama_init_from_model(model, cp);
    if (!lctx) { fprintf(stderr, "saeplug-llama capture: cannot create a context\n"); return 1; }
    struct llama_batch batch = llama_batch_init(n_seq * ctx, 0, 1);
    llama_token *btok = malloc((size_t)(n_seq * ctx) * sizeof *btok);
    int *bheld = malloc((size_t)n_seq * sizeof *bheld);
    if (!btok || !bheld) { fprintf(stderr, "out of memory\n"); return 1; }

    struct corpus_reader reader;
    corpus_reader_init(&reader, vocab, &corpus, ctx);
    long long rows_per_seq = ctx - first_pos, stored = 0, decoded = 0;
    uint32_t next_seq = 0;
    double t0 = now(), last_print = 0.0;
    int tty = isatty(2), exhausted = 0;
    while (!exhausted && (budget == 0 || stored < budget)) {
        /* Fill a batch of up to n_seq sequences (fewer at the end of the budget). */
        long long want = n_seq;
        if (budget > 0) {
            long long left = (budget - stored + rows_per_seq - 1) / rows_per_seq;
            if (left < want) want = left;
        }
        int q = 0;
        while (q < want) {
            uint32_t seq = 0;
            int got = corpus_next(&reader, btok + (size_t)q * (size_t)ctx, &seq);
            if (got < 0) return 1;
            if (got == 0) { exhausted = 1; break; }
            bheld[q] = corpus_is_heldout(seq, heldout);
            q++;
        }
        if (q == 0) break;
        batch.n_tokens = q * ctx;
        for (int i = 0; i < batch.n_tokens; i++) {
            batch.token[i] = btok[i];
            batch.pos[i] = i % ctx;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = i / ctx;
            /* The last block keeps only output rows: ask for all of them when it is captured. */
            batch.logits[i] = last_layer || i == batch.n_tokens - 1;
        }
        binfo = (struct batch_info){.n_seq = q, .ctx = ctx, .seq0 = next_seq, .tokens = btok, .heldout = bheld,
                                    .first_pos = first_pos};
        saeplug_llama_set_batch(adapter, 0, batch.n_tokens);
        if (llama_decode(lctx, batch) != 0) { fprintf(stderr, "saeplug-llama capture: decode failed\n"); return 1; }
        for (int i = 0; i < n_layers && !no_store; i++)
            if (sinks[i].status != SAEPLUG_STATUS_OK) {
                fprintf(stderr, "saeplug-llama capture: writing l_out-%d: %s\n", sinks[i].layer, sinks[i].error);
                return 1;
            }
        llama_memory_clear(llama_get_memory(lctx), true);
        next_seq += (uint32_t)q;
        decoded += batch.n_tokens;
        stored += (long long)q * rows_per_seq;
        double t = now() - t0;
        if (t - last_print >= (tty ? 0.5 : 5.0) || (budget > 0 && stored >= budget)) {
            last_print = t;
            double rate = t > 0 ? (double)decoded / t : 0.0;
            double eta = budget > 0 && rate > 0 ? (double)(budget - stored) * ((double)ctx / (double)rows_per_seq) / rate : 0.0;
            fprintf(stderr, "%scapture: %lld/%lld tokens stored, %u sequences, %.0f tokens/s, ETA %.0f s%s",
                    tty ? "\r" : "", stored, budget, next_seq, rate, eta > 0 ? eta : 0.0, tty ? "   " : "\n");
        }
    }
    double dt = now() - t0;
    if (tty) fputc('\n', stderr);
    if (exhausted && budget > 0 && stored < budget)
        fprintf(stderr, "saeplug-llama capture: the corpus ran out after %lld of %lld tokens\n", stored, budget);
    long long skipped = 0;
    for (int i = 0; i < n_layers && !no_store; i++) {
        uint64_t sk = 0;
        saeplug_store_counts(sinks[i].w, NULL, NULL, &sk);
        skipped += (long long)sk;
        if (saeplug_store_finish(sinks[i].w) != SAEPLUG_STATUS_OK) die("saeplug_store_finish");
        saeplug_store_free(sinks[i].w);
    }
    if (skipped > 0) fprintf(stderr, "saeplug-llama capture: %lld rows with NaN/Inf skipped (see the manifest)\n", skipped);
    printf("CAPTURE: tokens_decoded %lld rows %lld sequences %u seconds %.3f tokens_per_second %.1f\n", decoded,
           no_store ? 0 : stored, next_seq, dt, dt > 0 ? (double)decoded / dt : 0.0);
    llama_batch_free(batch);
    llama_free(lctx);
    llama_model_free(model);
    llama_backend_free();
    saeplug_llama_free(adapter);
    saeplug_ctx_free(sctx);
    corpus_files_free(&corpus);
    corpus_reader_free(&reader);
    free(btok);
    free(bheld);
    free(tok_buf);
    free(seq_buf);
    free(pos_buf);
    return 0;
}
