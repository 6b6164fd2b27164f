// C++ consumer of the cxx bridge (bindings/cxx): RAII rust::Box handles and
// exceptions for errors. usage: bridge SAE_DIR X.bin FEATS.bin RECON.bin N
#include "rust/cxx.h"
#include "saeplug-cxx/src/lib.rs.h"

#include <cmath>
#include <fstream>
#include <iostream>
#include <vector>

static std::vector<float> read(const char *path, size_t n) {
    std::vector<float> v(n);
    std::ifstream f(path, std::ios::binary);
    f.read(reinterpret_cast<char *>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
    if (!f) throw std::runtime_error("cannot read input");
    return v;
}

int main(int argc, char **argv) {
    if (argc != 6) return 2;
    int fails = 0;
    try {
        auto sae = saeplug::open_sae(argv[1]);
        size_t n = std::stoul(argv[5]), d = sae->d_in(), m = sae->d_sae();
        auto x = read(argv[2], n * d), want_f = read(argv[3], n * m), want_r = read(argv[4], n * d);
        auto ctx = saeplug::new_context(2);
        std::vector<float> f(n * m), r(n * d);
        ctx->encode(*sae, rust::Slice<const float>(x.data(), x.size()), rust::Slice<float>(f.data(), f.size()));
        ctx->reconstruct(*sae, rust::Slice<const float>(x.data(), x.size()), rust::Slice<float>(r.data(), r.size()));
        for (size_t i = 0; i < f.size(); i++) fails += std::fabs(f[i] - want_f[i]) > 1e-4f;
        for (size_t i = 0; i < r.size(); i++) fails += std::fabs(r[i] - want_r[i]) > 1e-4f;
        auto hook = saeplug::new_hook(*sae, 3);
        hook->last_position_only();
        hook->ablate(0);
        auto y = x;
        ctx->apply(*hook, rust::Slice<float>(y.data(), y.size()), 0);
        for (size_t j = 0; j < (n - 1) * d; j++) fails += y[j] != x[j];
        try {
            hook->clamp(m, 1.0f);
            fails++;
        } catch (const rust::Error &e) {
            fails += std::string(e.what()).find("d_sae") == std::string::npos;
        }
        try {
            saeplug::open_sae("/nonexistent");
            fails++;
        } catch (const rust::Error &) {
        }
        // Bounds and overlap: thrown, nothing written.
        try {
            saeplug::new_context(size_t(1) << 30);
            fails++;
        } catch (const rust::Error &e) {
            fails += std::string(e.what()).find("threads") == std::string::npos;
        }
        try {
            saeplug::new_hook(*sae, 0xffffffffu);
            fails++;
        } catch (const rust::Error &e) {
            fails += std::string(e.what()).find("'layer'") == std::string::npos;
        }
        {
            std::vector<float> buf(d + m, 0.5f);
            auto keep = buf;
            try {
                ctx->reconstruct(*sae, rust::Slice<const float>(buf.data(), d), rust::Slice<float>(buf.data(), d));
                fails++;
            } catch (const rust::Error &e) {
                fails += std::string(e.what()).find("overlap") == std::string::npos;
            }
            fails += buf != keep;
        }
    } catch (const std::exception &e) {
        std::cerr << "unexpected: " << e.what() << "\n";
        return 1;
    }
    if (fails) {
        std::cerr << fails << " checks failed\n";
        return 1;
    }
    std::cout << "cxx bridge consumer: all checks passed\n";
    return 0;
}
