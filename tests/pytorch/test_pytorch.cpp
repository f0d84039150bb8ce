// Every loss of lossjit::losses against PyTorch itself: the reference losses and gradients in
// tests/pytorch/data/*.txt were computed by PyTorch (tests/pytorch/make_reference.py, Debian's
// python3-torch; the format is described there). This test needs no PyTorch: it reads the files,
// compiles each loss with lossjit::compile, runs it with the same batch options (reduction none
// / sum / mean, ignore_index, the class-weighted mean, params) on a kernel for any K (online
// logsumexp) and on one specialized for the case's K (two-pass), and compares the reduced loss,
// the per-row losses, the gradient and the z-loss output at fp32 tolerances.
//
// Where lossjit deliberately differs from PyTorch (every row ignored; a fully masked row; a
// target 0 against a logit of -inf) the case says so on its `differs` line, its expectations are
// lossjit's documented semantics, and the test checks that PyTorch's own value there is indeed
// not finite (NaN or inf) while lossjit's is what the case expects.
#include <catch2/catch.hpp>

#include <lossjit/compile.hpp>
#include <lossjit/losses.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace lossjit;
namespace L = lossjit::losses;

#ifndef LOSSJIT_PYTORCH_DATA
#error "LOSSJIT_PYTORCH_DATA: the directory of the reference files"
#endif

namespace {

// ---- the files ---------------------------------------------------------------------------

struct Input {
    std::string name, dtype;
    std::size_t rows = 0, cols = 0;  // rows 0: one row shared by every row of the batch
    std::vector<double> v;
};

struct Expect {
    double torch_loss = std::numeric_limits<double>::quiet_NaN();
    bool has_loss = false, has_z = false;
    double loss = 0, z = 0;
    std::vector<double> rows, grad;
};

struct Case {
    std::string file, name, use, loss, differs, weighted;
    std::vector<std::pair<std::string, double>> params;
    bool extra = false;
    enum class Ignore { default_, none, value } ignore = Ignore::default_;
    std::int64_t ignore_value = -100;
    std::map<std::string, Expect> by_reduction;
};

double number(const std::string& s) {
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    return std::stod(s);
}
std::vector<double> numbers(std::istringstream& is) {
    std::vector<double> v;
    std::string w;
    while (is >> w) v.push_back(number(w));
    return v;
}

struct Reference {
    std::map<std::string, std::vector<Input>> data;
    std::vector<Case> cases;
};

Reference load(const std::string& only_file = {}) {
    Reference ref;
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(LOSSJIT_PYTORCH_DATA))
        if (e.path().extension() == ".txt") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& path : files) {
        const std::string file = path.stem().string();
        if (!only_file.empty() && file != only_file) continue;
        std::ifstream in(path);
        std::string line, data_id;
        Case* c = nullptr;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] == '#') continue;
            std::istringstream is(line);
            std::string key;
            is >> key;
            if (key == "data") {
                is >> data_id;
                ref.data[data_id];
            } else if (key == "input") {
                Input x;
                is >> x.name >> x.dtype >> x.rows >> x.cols;
                x.v = numbers(is);
                ref.data[data_id].push_back(std::move(x));
            } else if (key == "case") {
                ref.cases.emplace_back();
                c = &ref.cases.back();
                c->file = file;
                is >> c->name;
            } else if (key == "use") {
                is >> c->use;
            } else if (key == "loss") {
                is >> c->loss;
            } else if (key == "param") {
                std::string n, v;
                is >> n >> v;
                c->params.emplace_back(n, number(v));
            } else if (key == "extra") {
                c->extra = true;
            } else if (key == "ignore_index") {
                std::string v;
                is >> v;
                if (v == "none") c->ignore = Case::Ignore::none;
                else {
                    c->ignore = Case::Ignore::value;
                    c->ignore_value = std::stoll(v);
                }
            } else if (key == "weighted_mean") {
                is >> c->weighted;
            } else if (key == "differs") {
                std::getline(is >> std::ws, c->differs);
            } else if (key == "torch_loss") {
                std::string red, v;
                is >> red >> v;
                c->by_reduction[red].torch_loss = number(v);
            } else if (key == "expect") {
                std::string red, what;
                is >> red >> what;
                Expect& e = c->by_reduction[red];
                if (what == "loss") {
                    e.has_loss = true;
                    e.loss = numbers(is).at(0);
                } else if (what == "z_loss") {
                    e.has_z = true;
                    e.z = numbers(is).at(0);
                } else if (what == "rows") {
                    e.rows = numbers(is);
                } else if (what == "grad") {
                    e.grad = numbers(is);
                }
            } else if (key == "end" || key == "note") {
            } else {
                FAIL("unknown line in " << path << ": " << line.substr(0, 80));
            }
        }
    }
    return ref;
}

// ---- kernels -----------------------------------------------------------------------------

constexpr auto u = dsl::logits<"u">;
constexpr auto s = dsl::logits<"s">;

Kernel make_kernel(const Case& c, std::size_t K) {
    CompileOptions o;
    o.params = c.params;
    o.row_length = K;
    const std::string& n = c.loss;
    if (n == "cross_entropy") return compile(L::cross_entropy(), wrt(u), o);
    if (n == "soft_cross_entropy") return compile(L::soft_cross_entropy(), wrt(u), o);
    if (n == "weighted_cross_entropy") return compile(L::weighted_cross_entropy(), wrt(u), o);
    if (n == "label_smoothing_cross_entropy") return compile(L::label_smoothing_cross_entropy(), wrt(u), o);
    if (n == "weighted_label_smoothing_cross_entropy") return compile(L::weighted_label_smoothing_cross_entropy(), wrt(u), o);
    if (n == "z_loss") return compile(L::z_loss(), wrt(u), o);
    if (n == "cross_entropy_with_z_loss") {
        if (c.extra) return compile(L::cross_entropy_with_z_loss(), wrt(u), o, also<"z_loss">(L::z_loss()));
        return compile(L::cross_entropy_with_z_loss(), wrt(u), o);
    }
    if (n == "softcapped_cross_entropy") return compile(L::softcapped_cross_entropy(), wrt(u), o);
    if (n == "tempered_cross_entropy") return compile(L::tempered_cross_entropy(), wrt(u), o);
    if (n == "kl_divergence") return compile(L::kl_divergence(), wrt(u), o);
    if (n == "distillation_kl") return compile(L::distillation_kl(), wrt(s), o);
    if (n == "binary_cross_entropy_with_logits") return compile(L::binary_cross_entropy_with_logits(), wrt(u), o);
    if (n == "binary_cross_entropy") return compile(L::binary_cross_entropy(), wrt(u), o);
    if (n == "focal") return compile(L::focal(), wrt(u), o);
    if (n == "poly1_cross_entropy") return compile(L::poly1_cross_entropy(), wrt(u), o);
    FAIL("no kernel for loss " << n);
    return {};
}

// ---- comparison --------------------------------------------------------------------------

struct Stats {
    std::size_t cases = 0, runs = 0, values = 0, differs = 0;
    // max |got - want| / |want| over values with |want| >= 1e-3 (of the batch's largest, for
    // gradients), and max |got - want| over the smaller ones
    double loss_rel = 0, loss_abs = 0, grad_rel = 0, grad_abs = 0;
    void add(double got, double want, double unit, double& rel, double& abs) {
        if (!std::isfinite(want)) return;
        const double d = std::fabs(got - want);
        if (std::fabs(want) >= 1e-3 * unit && want != 0) rel = std::max(rel, d / std::fabs(want));
        else abs = std::max(abs, d);
    }
};

// fp32 tolerance: relative 2e-5 (a few float32 roundings through logsumexp and exp), with an
// absolute floor scaled by the magnitude of the values it is compared among (so that a
// gradient entry of 1e-30 next to entries of 1 is compared at the precision of the row).
bool close(double got, double want, double scale, double rel = 2e-5, double abs = 2e-6) {
    if (std::isnan(want)) return std::isnan(got);
    if (std::isinf(want)) return got == want;
    return std::isfinite(got) && std::fabs(got - want) <= rel * std::fabs(want) + abs * std::max(1.0, scale);
}

void run_case(const Reference& ref, const Case& c, bool specialized, std::map<std::string, Kernel>& kernels, Stats& st) {
    const auto it = ref.data.find(c.use);
    REQUIRE(it != ref.data.end());
    const std::vector<Input>& inputs = it->second;
    std::size_t N = 0, K = 0;
    for (const Input& x : inputs)
        if (x.rows > 0 && x.dtype == "f32") {
            N = x.rows;
            K = x.cols;
        }
    std::ostringstream key;
    key << c.loss << (c.extra ? "+z" : "") << " K" << (specialized ? K : 0);
    for (auto& [n, v] : c.params) key << " " << n << "=" << v;
    auto found = kernels.find(key.str());
    if (found == kernels.end()) found = kernels.emplace(key.str(), make_kernel(c, specialized ? K : 0)).first;
    const Kernel& k = found->second;
    const std::string wrt_name = c.loss == "distillation_kl" ? "s" : "u";

    std::size_t case_differs = 0;
    for (const auto& [red_name, e] : c.by_reduction) {
        INFO("case " << c.file << ": " << c.name << ", reduction " << red_name << ", kernel for K = " << (specialized ? K : 0));
        // inputs, as the kernel's element types
        std::vector<std::vector<float>> f(inputs.size());
        std::vector<std::vector<std::int64_t>> l(inputs.size());
        Batch b;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const Input& x = inputs[i];
            bool used = false;  // a data set serves several losses: bind what this kernel reads
            for (const Slot& sl : k.slots()) used = used || (!sl.output && sl.name == x.name);
            if (!used) continue;
            if (x.dtype == "i64") {
                l[i].assign(x.v.begin(), x.v.end());
                b.bind(x.name, column(l[i].data(), x.rows));
            } else {
                f[i].assign(x.v.begin(), x.v.end());
                b.bind(x.name, x.rows == 0 ? shared_row(f[i].data(), x.cols) : matrix(f[i].data(), x.rows, x.cols));
            }
        }
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::vector<float> grad(N * K, nan), rows(N, nan), z(N, nan);
        b.bind("grad." + wrt_name, matrix(grad.data(), N, K)).bind("loss", column(rows.data(), N));
        if (c.extra) b.bind("z_loss", column(z.data(), N));
        const Reduction red = red_name == "none" ? Reduction::none : red_name == "sum" ? Reduction::sum : Reduction::mean;
        if (red == Reduction::mean && !c.weighted.empty()) b.weighted_mean(c.weighted);
        else b.reduction(red);
        if (c.ignore == Case::Ignore::none) b.no_ignore_index();
        if (c.ignore == Case::Ignore::value) b.ignore_index(c.ignore_value);
        const Result res = k.run(b);
        ++st.runs;

        const bool same = close(e.torch_loss, e.loss, std::fabs(e.loss), 1e-12, 1e-12);
        if (!same && !std::isfinite(e.torch_loss)) {
            // lossjit deliberately differs here: allowed only where the case declares it (its
            // `differs` line); PyTorch's own value is NaN or inf, lossjit's the documented one
            INFO("deliberate difference: " << c.differs << "; PyTorch gives " << e.torch_loss << ", lossjit " << res.loss());
            CHECK(!c.differs.empty());
            ++st.differs;
            ++case_differs;
        } else {
            INFO("PyTorch's own value " << e.torch_loss << ", the reference " << e.loss);
            CHECK(same);  // elsewhere the reference is PyTorch's value
        }
        if (e.has_loss) {
            INFO("loss: got " << res.loss() << ", want " << e.loss);
            CHECK(close(res.loss(), e.loss, std::fabs(e.loss)));
            st.add(res.loss(), e.loss, 1, st.loss_rel, st.loss_abs);
            ++st.values;
        }
        if (e.has_z) {
            INFO("z_loss output: got " << res.reduced("z_loss") << ", want " << e.z);
            CHECK(close(res.reduced("z_loss"), e.z, std::fabs(e.z)));
            ++st.values;
        }
        for (std::size_t r = 0; r < e.rows.size(); ++r) {
            INFO("row " << r << " loss: got " << rows[r] << ", want " << e.rows[r]);
            CHECK(close(rows[r], e.rows[r], std::fabs(e.rows[r])));
            st.add(rows[r], e.rows[r], 1, st.loss_rel, st.loss_abs);
            ++st.values;
        }
        if (!e.grad.empty()) {
            REQUIRE(e.grad.size() == N * K);
            double all = 0;
            for (double g : e.grad)
                if (std::isfinite(g)) all = std::max(all, std::fabs(g));
            for (std::size_t r = 0; r < N; ++r) {
                // the absolute floor: relative to the row's largest entry, or to 1e-3 of the
                // batch's (a row whose gradient is a difference of two probabilities near 1,
                // all ~1e-10, is exact only to fp32's resolution at 1)
                double scale = 1e-3 * all;
                for (std::size_t j = 0; j < K; ++j)
                    if (std::isfinite(e.grad[r * K + j])) scale = std::max(scale, std::fabs(e.grad[r * K + j]));
                // and never below fp32's resolution at the reduction's unit (a gradient entry of
                // exactly 0 comes out as (1 - eps) + eps - 1 ~ 1e-8)
                const double unit = red == Reduction::mean && res.denominator > 0 ? 1 / res.denominator : 1;
                const double floor = std::max(2e-6 * scale, 1e-7 * unit);
                for (std::size_t j = 0; j < K; ++j) {
                    const double want = e.grad[r * K + j], got = grad[r * K + j];
                    if (!close(got, want, 0, 2e-5, floor)) {
                        INFO("gradient row " << r << " element " << j << ": got " << got << ", want " << want << " (row scale " << scale << ")");
                        CHECK(close(got, want, 0, 2e-5, floor));
                    }
                    st.add(got, want, all, st.grad_rel, st.grad_abs);
                    ++st.values;
                }
            }
        }
    }
    INFO("case " << c.file << ": " << c.name << " declares a difference from PyTorch: " << c.differs);
    if (!c.differs.empty()) CHECK(case_differs > 0);  // and it is real
}

void run_file(const std::string& file) {
    const Reference ref = load(file);
    REQUIRE(!ref.cases.empty());
    std::map<std::string, Kernel> kernels;
    Stats st;
    for (const Case& c : ref.cases) {
        ++st.cases;
        for (bool spec : {false, true}) run_case(ref, c, spec, kernels, st);
    }
    std::cout << "pytorch reference " << file << ": " << st.cases << " cases, " << st.runs << " runs, " << st.values
              << " values compared; " << st.differs << " runs where lossjit deliberately differs (checked: PyTorch not finite there)"
              << "; max relative error: loss " << st.loss_rel << ", gradient " << st.grad_rel
              << " (values >= 1e-3, gradients >= 1e-3 of the batch's largest); max absolute error below that: loss " << st.loss_abs
              << ", gradient " << st.grad_abs << "\n";
}

}  // namespace

TEST_CASE("PyTorch reference: label losses (cross-entropy, class weights, label smoothing, z-loss, soft-capping, temperature, focal, poly-1)") {
    run_file("label_losses");
}

TEST_CASE("PyTorch reference: probability targets (soft cross-entropy, KL divergence, distillation)") { run_file("soft_losses"); }

TEST_CASE("PyTorch reference: binary cross-entropy with logits, with and without pos_weight") { run_file("bce_losses"); }

TEST_CASE("PyTorch reference: the deliberate difference, every row ignored, said explicitly") {
    // PyTorch: F.cross_entropy(u, y) with every y == ignore_index is 0/0 = NaN (mean), and so is its
    // gradient. lossjit: loss 0 and gradient 0 (kernel.hpp, Reduction). The case's file holds
    // PyTorch's own NaN; the expectation is lossjit's 0.
    const Reference ref = load("label_losses");
    const Case* c = nullptr;
    for (const Case& x : ref.cases)
        if (x.name == "cross_entropy/K5/all_ignored") c = &x;
    REQUIRE(c != nullptr);
    const Expect& mean = c->by_reduction.at("mean");
    CHECK(std::isnan(mean.torch_loss));  // PyTorch
    CHECK(mean.loss == 0);               // lossjit
    const std::vector<Input>& in = ref.data.at(c->use);
    std::vector<float> u(in[0].v.begin(), in[0].v.end()), g(u.size(), 1.0f);
    std::vector<std::int64_t> y(in[1].v.begin(), in[1].v.end());
    for (auto v : y) REQUIRE(v == -100);
    Batch b;
    b.bind("u", matrix(u.data(), y.size(), 5)).bind("y", column(y.data(), y.size())).bind("grad.u", matrix(g.data(), y.size(), 5));
    const Result r = compile(L::cross_entropy(), wrt(dsl::logits<"u">), CompileOptions{}).run(b.reduction(Reduction::mean));
    CHECK(r.loss() == 0);
    CHECK(r.counted == 0);
    for (float x : g) CHECK(x == 0);
}
