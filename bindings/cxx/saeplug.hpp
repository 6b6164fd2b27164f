// saeplug.hpp — header-only C++17 RAII wrapper over include/saeplug.h.
//
// For engines that link the C library (static or shared, or dlopen it): every
// failing call throws saeplug::Error carrying the status code and the library's
// message. Ownership follows the C ABI: Sae, Context, Hook and Recorder own their
// handle, are movable and not copyable. Thread safety as in the header: one Sae
// may be shared by threads; a Context is used by one thread at a time.
#ifndef SAEPLUG_HPP
#define SAEPLUG_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "saeplug.h"

namespace saeplug {

class Error : public std::runtime_error {
public:
    Error(saeplug_status status, const std::string &what) : std::runtime_error(what), status_(status) {}
    saeplug_status status() const noexcept { return status_; }

private:
    saeplug_status status_;
};

inline void check(saeplug_status st, const char *call) {
    if (st == SAEPLUG_STATUS_OK) return;
    std::string msg(saeplug_last_error_length() + 1, '\0');
    size_t n = saeplug_last_error_message(&msg[0], msg.size());
    msg.resize(n);
    throw Error(st, std::string(call) + ": " + (msg.empty() ? saeplug_status_str(st) : msg));
}

template <class T, void (*Free)(T *)>
class Handle {
public:
    Handle() = default;
    explicit Handle(T *p) : p_(p) {}
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Handle &operator=(Handle &&o) noexcept {
        if (this != &o) {
            Free(p_);
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    ~Handle() { Free(p_); }
    T *get() const noexcept { return p_; }

private:
    T *p_ = nullptr;
};

struct Sparse {
    std::vector<size_t> row_offsets;
    std::vector<uint32_t> indices;
    std::vector<float> values;
};

class Sae {
public:
    explicit Sae(const std::string &path) {
        saeplug_sae *p = nullptr;
        check(saeplug_sae_open(path.c_str(), &p), "saeplug_sae_open");
        h_ = H(p);
        check(saeplug_sae_get_info(p, &info_), "saeplug_sae_get_info");
    }
    const saeplug_sae_info &info() const noexcept { return info_; }
    size_t d_in() const noexcept { return info_.d_in; }
    size_t d_sae() const noexcept { return info_.d_sae; }
    const saeplug_sae *get() const noexcept { return h_.get(); }
    std::vector<float> decoder_row(uint32_t feature) const {
        std::vector<float> v(d_in());
        check(saeplug_sae_decoder_row(get(), feature, v.data(), v.size()), "saeplug_sae_decoder_row");
        return v;
    }

private:
    using H = Handle<saeplug_sae, saeplug_sae_free>;
    H h_;
    saeplug_sae_info info_{};
};

class Hook {
public:
    Hook(const Sae &sae, uint32_t layer) {
        saeplug_hook *p = nullptr;
        check(saeplug_hook_new(sae.get(), layer, &p), "saeplug_hook_new");
        h_ = H(p);
    }
    Hook &all_positions() { return pos(SAEPLUG_POSITIONS_ALL, 0, 0); }
    Hook &first(size_t p) { return pos(SAEPLUG_POSITIONS_FIRST, p, 0); }
    Hook &last() { return pos(SAEPLUG_POSITIONS_LAST, 0, 0); }
    Hook &range(size_t a, size_t b) { return pos(SAEPLUG_POSITIONS_RANGE, a, b); }
    Hook &add(uint32_t f, float c) { return edit(SAEPLUG_EDIT_KIND_ADD, f, c); }
    Hook &clamp(uint32_t f, float v) { return edit(SAEPLUG_EDIT_KIND_CLAMP, f, v); }
    Hook &ablate(uint32_t f) { return edit(SAEPLUG_EDIT_KIND_ABLATE, f, 0.0f); }
    Hook &scale(uint32_t f, float s) { return edit(SAEPLUG_EDIT_KIND_SCALE, f, s); }
    Hook &add_vector(const std::vector<float> &v, float coef) {
        check(saeplug_hook_add_vector(h_.get(), v.data(), v.size(), coef), "saeplug_hook_add_vector");
        return *this;
    }
    const saeplug_hook *get() const noexcept { return h_.get(); }

private:
    Hook &pos(saeplug_positions k, size_t a, size_t b) {
        check(saeplug_hook_set_positions(h_.get(), k, a, b), "saeplug_hook_set_positions");
        return *this;
    }
    Hook &edit(saeplug_edit_kind k, uint32_t f, float v) {
        check(saeplug_hook_add_edit(h_.get(), k, f, v), "saeplug_hook_add_edit");
        return *this;
    }
    using H = Handle<saeplug_hook, saeplug_hook_free>;
    H h_;
};

class Context {
public:
    explicit Context(saeplug_backend backend = SAEPLUG_BACKEND_CPU, uint32_t threads = 0) {
        saeplug_ctx *p = nullptr;
        check(saeplug_ctx_new(backend, threads, &p), "saeplug_ctx_new");
        h_ = H(p);
    }
    std::string backend_name() const { return saeplug_ctx_backend_name(h_.get()); }
    std::vector<float> encode(const Sae &sae, const std::vector<float> &x) {
        size_t n = rows(sae, x);
        std::vector<float> f(n * sae.d_sae());
        check(saeplug_ctx_encode(h_.get(), sae.get(), x.data(), x.size(), n, f.data(), f.size()), "saeplug_ctx_encode");
        return f;
    }
    std::vector<float> decode(const Sae &sae, const std::vector<float> &f) {
        size_t n = sae.d_sae() ? f.size() / sae.d_sae() : 0;
        std::vector<float> y(n * sae.d_in());
        check(saeplug_ctx_decode(h_.get(), sae.get(), f.data(), f.size(), n, y.data(), y.size()), "saeplug_ctx_decode");
        return y;
    }
    Sparse encode_sparse(const Sae &sae, const std::vector<float> &x) {
        size_t n = rows(sae, x), nnz = 0;
        Sparse s;
        s.row_offsets.resize(n + 1);
        saeplug_status st = saeplug_ctx_encode_sparse(h_.get(), sae.get(), x.data(), x.size(), n, s.row_offsets.data(),
                                                      nullptr, nullptr, 0, &nnz);
        if (st != SAEPLUG_STATUS_BUFFER_TOO_SMALL) check(st, "saeplug_ctx_encode_sparse");
        s.indices.resize(nnz);
        s.values.resize(nnz);
        check(saeplug_ctx_encode_sparse(h_.get(), sae.get(), x.data(), x.size(), n, s.row_offsets.data(),
                                        s.indices.data(), s.values.data(), nnz, &nnz),
              "saeplug_ctx_encode_sparse");
        return s;
    }
    void apply(const Hook &hook, std::vector<float> &x, size_t d_in, size_t pos0 = 0) {
        size_t n = d_in ? x.size() / d_in : 0;
        check(saeplug_ctx_hook_apply(h_.get(), hook.get(), x.data(), x.size(), n, pos0), "saeplug_ctx_hook_apply");
    }

private:
    static size_t rows(const Sae &sae, const std::vector<float> &x) { return sae.d_in() ? x.size() / sae.d_in() : 0; }
    using H = Handle<saeplug_ctx, saeplug_ctx_free>;
    H h_;
};

}  // namespace saeplug

#endif
