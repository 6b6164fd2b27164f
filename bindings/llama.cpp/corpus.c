/* corpus.c — see corpus.h. */
#define _POSIX_C_SOURCE 200809L
#include "corpus.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int corpus_add_path(struct corpus_files *fl, const char *path) {
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
                if (!p) rc = -1;
                else {
                    snprintf(p, len, "%s/%s", path, names[i]->d_name);
                    rc = corpus_add_path(fl, p);
                    free(p);
                }
            }
            free(names[i]);
        }
        free(names);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) return 0;
    if (fl->n == fl->cap) {
        size_t cap = fl->cap ? 2 * fl->cap : 64;
        char **np = realloc(fl->paths, cap * sizeof *fl->paths);
        if (!np) { fprintf(stderr, "out of memory\n"); return -1; }
        fl->paths = np;
        fl->cap = cap;
    }
    fl->paths[fl->n] = strdup(path);
    if (!fl->paths[fl->n]) { fprintf(stderr, "out of memory\n"); return -1; }
    fl->n++;
    return 0;
}

void corpus_files_free(struct corpus_files *fl) {
    for (size_t i = 0; i < fl->n; i++) free(fl->paths[i]);
    free(fl->paths);
    memset(fl, 0, sizeof *fl);
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

void corpus_reader_init(struct corpus_reader *r, const struct llama_vocab *vocab, const struct corpus_files *files,
                        int ctx) {
    memset(r, 0, sizeof *r);
    r->vocab = vocab;
    r->files = files;
    r->bos = llama_vocab_bos(vocab);
    r->has_bos = r->bos != LLAMA_TOKEN_NULL;
    r->ctx = ctx;
    r->body = r->has_bos ? ctx - 1 : ctx;
}

int corpus_next(struct corpus_reader *r, llama_token *dst, uint32_t *seq) {
    size_t body = (size_t)r->body;
    while (r->len - r->at < body && r->file_i < r->files->n) {
        const char *path = r->files->paths[r->file_i];
        size_t len = 0;
        char *text = slurp(path, &len);
        if (!text) { perror(path); return -1; }
        r->file_i++;
        if (len == 0 || len > (size_t)INT32_MAX) { free(text); continue; }
        /* Keep the unused tail, then append this file's tokens. */
        if (r->at > 0) memmove(r->stream, r->stream + r->at, (r->len - r->at) * sizeof *r->stream);
        r->len -= r->at;
        r->at = 0;
        if (r->cap < r->len + len + 16) {
            size_t cap = r->len + len + 16;
            llama_token *ns = realloc(r->stream, cap * sizeof *ns);
            if (!ns) { free(text); fprintf(stderr, "out of memory\n"); return -1; }
            r->stream = ns;
            r->cap = cap;
        }
        int n = llama_tokenize(r->vocab, text, (int32_t)len, r->stream + r->len, (int32_t)(r->cap - r->len), false,
                               false);
        free(text);
        if (n < 0) { fprintf(stderr, "cannot tokenise %s\n", path); return -1; }
        r->len += (size_t)n;
    }
    if (r->len - r->at < body) return 0;
    if (r->has_bos) *dst++ = r->bos;
    memcpy(dst, r->stream + r->at, body * sizeof *dst);
    r->at += body;
    *seq = r->next_seq++;
    return 1;
}

void corpus_reader_free(struct corpus_reader *r) {
    free(r->stream);
    r->stream = NULL;
    r->len = r->at = r->cap = 0;
}

int corpus_is_heldout(uint32_t s, double f) {
    return floor(((double)s + 1.0) * f) > floor((double)s * f);
}
