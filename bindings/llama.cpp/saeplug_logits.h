/* saeplug_logits.h — logit effects of SAE features: each decoder row through the
 * model's unembedding, read from the GGUF and dequantised by ggml itself.
 *
 * The unembedding is `output.weight`, or `token_embd.weight` when the model ties
 * them (SmolLM2 does). The final norm's gain (`output_norm.weight`) is folded into
 * it, as TransformerLens-based dashboards do: W_U'[t][j] = W_U[t][j] * g[j], so
 * effect[t] = sum_j d[j] * g[j] * W_U[t][j] for a decoder row d (the norm's
 * 1/rms scaling, which depends on the whole residual, is left out).
 *
 * Use:
 *   struct saeplug_unembed u;
 *   char err[256];
 *   if (saeplug_unembed_load("model.gguf", &u, err, sizeof err) != 0) { puts(err); ... }
 *   saeplug_unembed_apply(&u, dec_row, effects);   // effects: u.n_vocab floats
 *   saeplug_unembed_free(&u); */
#ifndef SAEPLUG_LOGITS_H
#define SAEPLUG_LOGITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct saeplug_unembed {
    int64_t n_vocab;     /* rows of w */
    int64_t n_embd;      /* columns of w (the residual width) */
    float *w;            /* [n_vocab][n_embd], the gain folded in (malloc'ed) */
    char tensor[64];     /* the tensor read: "output.weight" or "token_embd.weight" */
    char type[16];       /* its ggml type name ("q8_0", "f16", ...) */
    bool tied;           /* true when it is token_embd.weight */
    bool gain_folded;    /* true when output_norm.weight was found and folded in */
};

/* Read the unembedding of the GGUF model at `path` into `out` (n_vocab * n_embd
 * floats, ~113 MB for SmolLM2-135M). Returns 0, or -1 with a message in `err`
 * (`err_len` bytes, NUL-terminated; may be NULL). */
int saeplug_unembed_load(const char *path, struct saeplug_unembed *out, char *err, size_t err_len);

/* Free what saeplug_unembed_load allocated (a zeroed struct is a no-op). */
void saeplug_unembed_free(struct saeplug_unembed *u);

/* effects[t] = sum_j dec[j] * W_U'[t][j] for every token t (`dec` holds n_embd
 * floats, `effects` n_vocab), summed in double. */
void saeplug_unembed_apply(const struct saeplug_unembed *u, const float *dec, float *effects);

#endif
