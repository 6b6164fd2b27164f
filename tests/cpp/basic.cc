// C++17 consumer of bindings/cxx/saeplug.hpp: opens a SAELens fixture, encodes,
// decodes, checks against SAELens's outputs, steers, and checks that errors throw.
// usage: basic SAE_DIR X.bin FEATS.bin RECON.bin N
#include "saeplug.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

static std::vector<float> read(const char *path, size_t n) {
    std::vector<float> v(n);
    std::ifstream f(path, std::ios::binary);
    f.read(reinterpret_cast<char *>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
    if (!f) throw std::runtime_error(std::string("cannot read ") + path);
    return v;
}

static float maxdiff(const std::vector<float> &a, const std::vector<float> &b) {
    float m = 0;
    for (size_t i = 0; i < a.size(); i++) m = std::fmax(m, std::fabs(a[i] - b[i]));
    return m;
}

int main(int argc, char **argv) {
    if (argc != 6) return 2;
    int fails = 0;
    auto check = [&](bool ok, const char *what) {
        if (!ok) {
            std::cerr << "FAIL: " << what << "\n";
            fails++;
        }
    };
    try {
        saeplug::Sae sae(argv[1]);
        size_t n = std::stoul(argv[5]), d = sae.d_in(), m = sae.d_sae();
        auto x = read(argv[2], n * d), want_f = read(argv[3], n * m), want_r = read(argv[4], n * d);
        saeplug::Context ctx(SAEPLUG_BACKEND_CPU, 2);
        auto f = ctx.encode(sae, x);
        check(maxdiff(f, want_f) <= 1e-4f, "features match SAELens");
        check(maxdiff(ctx.decode(sae, f), want_r) <= 1e-4f, "reconstruction matches SAELens");
        auto s = ctx.encode_sparse(sae, x);
        check(s.row_offsets.back() == s.indices.size(), "CSR offsets");
        // Steering: add a feature's decoder row on the last position only.
        saeplug::Hook hook(sae, 3);
        hook.last().add(0, 2.0f);
        auto y = x;
        ctx.apply(hook, y, d);
        auto d0 = sae.decoder_row(0);
        bool ok = true;
        for (size_t j = 0; j < d; j++) {
            ok &= y[j] == x[j];
            ok &= std::fabs(y[(n - 1) * d + j] - (x[(n - 1) * d + j] + 2.0f * d0[j])) <= 1e-5f;
        }
        check(ok, "hook edits only the last position by 2 d_0");
        // Errors throw with the status and message; moved-from handles are safe.
        try {
            saeplug::Sae bad("/nonexistent/sae");
            check(false, "opening a missing SAE throws");
        } catch (const saeplug::Error &e) {
            check(e.status() == SAEPLUG_STATUS_IO, "IO status");
            check(std::string(e.what()).find("nonexistent") != std::string::npos, "message names the path");
        }
        try {
            hook.clamp(static_cast<uint32_t>(m), 1.0f);
            check(false, "feature >= d_sae throws");
        } catch (const saeplug::Error &e) {
            check(e.status() == SAEPLUG_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT status");
        }
        saeplug::Context moved = std::move(ctx);
        check(moved.backend_name() == "cpu", "backend name after move");
    } catch (const std::exception &e) {
        std::cerr << "unexpected exception: " << e.what() << "\n";
        return 1;
    }
    if (fails) return 1;
    std::cout << "c++ consumer: all checks passed\n";
    return 0;
}
