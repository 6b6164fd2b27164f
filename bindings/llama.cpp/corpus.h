/* corpus.h — a text corpus as fixed-length token sequences, the one definition
 * shared by `saeplug-llama capture` and `eval` (and saeplug_llama_eval).
 *
 * The corpus is a list of regular files (folders walked recursively in name
 * order). Each file is tokenised by llama.cpp (no special tokens) and the token
 * streams are concatenated; every sequence is the model's BOS token (if it has
 * one) followed by the next CTX-1 corpus tokens (CTX without BOS); the
 * incomplete tail is dropped. Sequences are numbered from 0 in corpus order;
 * sequence s is held out (with fraction F) when floor((s+1)F) > floor(sF). */
#ifndef SAEPLUG_LLAMA_CORPUS_H
#define SAEPLUG_LLAMA_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "llama.h"

/* A sorted list of corpus files. Zero-initialise, fill with corpus_add_path. */
struct corpus_files {
    char **paths;
    size_t n, cap;
};

/* Add a file, or every regular file under a folder (name order; dot files
 * skipped). Returns 0, or -1 with a message on stderr. */
int corpus_add_path(struct corpus_files *fl, const char *path);
void corpus_files_free(struct corpus_files *fl);

/* Cuts the concatenated token stream of the files into sequences. */
struct corpus_reader {
    const struct llama_vocab *vocab;
    const struct corpus_files *files;
    llama_token bos;
    int has_bos, ctx, body; /* body: corpus tokens per sequence */
    llama_token *stream;    /* tokens of the files read, not yet used */
    size_t len, at, cap, file_i;
    uint32_t next_seq;      /* index of the next sequence */
};

/* Sequences of `ctx` tokens (ctx >= 2) from `files` (borrowed). */
void corpus_reader_init(struct corpus_reader *r, const struct llama_vocab *vocab, const struct corpus_files *files,
                        int ctx);
/* The next sequence: its `ctx` tokens into `dst`, its index into `*seq`.
 * Returns 1, 0 when the corpus holds no further complete sequence, -1 on an
 * error (message on stderr). */
int corpus_next(struct corpus_reader *r, llama_token *dst, uint32_t *seq);
void corpus_reader_free(struct corpus_reader *r);

/* 1 when sequence `s` belongs to the held-out fraction `f` (0 <= f < 1). */
int corpus_is_heldout(uint32_t s, double f);

#endif
