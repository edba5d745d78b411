// Reference side of the tokenizer benchmark: encodes a text line by line with the SentencePiece library.
//
//   spm_ref MODEL TEXT [--runs N] [--ids-out FILE]
//   spm_ref MODEL --check-fixture INP OUT
//
// The first form mirrors bench/bench_tokenize.c: each line of TEXT (without its '\n', no BOS)
// is one Encode call on one thread; a run encodes every line; the figure is the median run's
// throughput, counting all input bytes including newlines, in MB/s (10^6 bytes). --ids-out
// writes the ids, one output line per input line, space-separated, from an untimed pass.
// The second form checks the model against llama.cpp's vocabulary test files: INP holds inputs
// separated by "\n__ggml_vocab_test__\n", OUT one line of expected ids (no BOS) per input.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace {

bool read_file(const char *path, std::string *out) {
    FILE *f = std::fopen(path, "rb");
    if (!f) {
        std::fprintf(stderr, "spm_ref: cannot open %s: %s\n", path, std::strerror(errno));
        return false;
    }
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, n);
    bool ok = !std::ferror(f);
    std::fclose(f);
    if (!ok) std::fprintf(stderr, "spm_ref: error reading %s\n", path);
    return ok;
}

// Splits on '\n'; a final '\n' does not start another (empty) line.
std::vector<std::string_view> split_lines(const std::string &text) {
    std::vector<std::string_view> lines;
    size_t start = 0;
    while (start < text.size()) {
        size_t nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        lines.emplace_back(text.data() + start, nl - start);
        start = nl + 1;
    }
    return lines;
}

double now_s() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

std::string join_ids(const std::vector<int> &ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); i++) {
        if (i) s += ' ';
        s += std::to_string(ids[i]);
    }
    return s;
}

// The input shown with C escapes, so whitespace-only fixture lines are readable.
std::string escaped(std::string_view s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '\n') o += "\\n";
        else if (c == '\t') o += "\\t";
        else if (c == '\r') o += "\\r";
        else if (c == '"' || c == '\\') { o += '\\'; o += static_cast<char>(c); }
        else if (c < 0x20 || c == 0x7f) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            o += b;
        } else o += static_cast<char>(c);
    }
    return o + "\"";
}

int check_fixture(const sentencepiece::SentencePieceProcessor &sp, const char *inp_path,
                  const char *out_path) {
    std::string inp, out;
    if (!read_file(inp_path, &inp) || !read_file(out_path, &out)) return 1;
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string_view> inputs;
    for (size_t start = 0; start < inp.size();) {
        size_t at = inp.find(sep, start);
        if (at == std::string::npos) at = inp.size();
        inputs.emplace_back(inp.data() + start, at - start);
        start = at + sep.size();
    }
    std::vector<std::string_view> expected = split_lines(out);
    if (inputs.size() != expected.size()) {
        std::fprintf(stderr, "spm_ref: %s has %zu inputs but %s has %zu lines\n", inp_path,
                     inputs.size(), out_path, expected.size());
        return 1;
    }
    size_t same = 0;
    std::vector<int> ids;
    for (size_t i = 0; i < inputs.size(); i++) {
        auto st = sp.Encode(inputs[i], &ids);
        if (!st.ok()) {
            std::fprintf(stderr, "spm_ref: encoding fixture input %zu: %s\n", i + 1,
                         st.ToString().c_str());
            return 1;
        }
        std::vector<int> want;
        const std::string line(expected[i]);
        const char *p = line.c_str();
        for (;;) {
            char *end;
            long v = std::strtol(p, &end, 10);
            if (end == p) break;
            want.push_back(static_cast<int>(v));
            p = end;
        }
        if (ids == want) {
            same++;
        } else {
            std::printf("fixture %zu: input %s\n  expected: %s\n  spm:      %s\n", i + 1,
                        escaped(inputs[i]).c_str(), join_ids(want).c_str(),
                        join_ids(ids).c_str());
        }
    }
    std::printf("fixture: %zu/%zu inputs give the expected ids\n", same, inputs.size());
    return same == inputs.size() ? 0 : 3;
}

int usage() {
    std::fprintf(stderr,
                 "usage: spm_ref MODEL TEXT [--runs N] [--ids-out FILE]\n"
                 "       spm_ref MODEL --check-fixture INP OUT\n");
    return 2;
}

} // namespace

int main(int argc, char **argv) {
    if (argc < 3) return usage();
    const char *model = argv[1];
    const char *text_path = nullptr, *ids_out = nullptr, *fix_inp = nullptr, *fix_out = nullptr;
    int runs = 7;
    for (int i = 2; i < argc; i++) {
        if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) {
            char *end;
            long v = std::strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) {
                std::fprintf(stderr, "spm_ref: --runs wants 1..1000, got %s\n", argv[i]);
                return 2;
            }
            runs = static_cast<int>(v);
        } else if (!std::strcmp(argv[i], "--ids-out") && i + 1 < argc) {
            ids_out = argv[++i];
        } else if (!std::strcmp(argv[i], "--check-fixture") && i + 2 < argc) {
            fix_inp = argv[++i];
            fix_out = argv[++i];
        } else if (argv[i][0] != '-' && !text_path) {
            text_path = argv[i];
        } else {
            return usage();
        }
    }
    if (!fix_inp && !text_path) return usage();

    sentencepiece::SentencePieceProcessor sp;
    auto st = sp.Load(model);
    if (!st.ok()) {
        std::fprintf(stderr, "spm_ref: loading %s: %s\n", model, st.ToString().c_str());
        return 1;
    }
    if (fix_inp) return check_fixture(sp, fix_inp, fix_out);

    std::string text;
    if (!read_file(text_path, &text)) return 1;
    const std::vector<std::string_view> lines = split_lines(text);

    std::vector<int> ids;
    std::vector<double> secs;
    size_t n_ids = 0;
    for (int r = 0; r < runs; r++) {
        n_ids = 0;
        double t0 = now_s();
        for (std::string_view line : lines) {
            st = sp.Encode(line, &ids);
            if (!st.ok()) {
                std::fprintf(stderr, "spm_ref: encode failed: %s\n", st.ToString().c_str());
                return 1;
            }
            n_ids += ids.size();
        }
        secs.push_back(now_s() - t0);
    }
    std::sort(secs.begin(), secs.end());
    // Median; for an even count, the mean of the middle two.
    double med = runs % 2 ? secs[runs / 2] : 0.5 * (secs[runs / 2 - 1] + secs[runs / 2]);

    if (ids_out) {
        FILE *f = std::fopen(ids_out, "w");
        if (!f) {
            std::fprintf(stderr, "spm_ref: cannot write %s: %s\n", ids_out, std::strerror(errno));
            return 1;
        }
        for (std::string_view line : lines) {
            st = sp.Encode(line, &ids);
            if (!st.ok()) {
                std::fprintf(stderr, "spm_ref: encode failed: %s\n", st.ToString().c_str());
                std::fclose(f);
                return 1;
            }
            std::string s = join_ids(ids);
            s += '\n';
            std::fwrite(s.data(), 1, s.size(), f);
        }
        if (std::fclose(f) != 0) {
            std::fprintf(stderr, "spm_ref: error writing %s\n", ids_out);
            return 1;
        }
    }

    std::printf("spm_ref: %zu bytes, %zu lines, %zu ids, %d runs, median %.4f s (min %.4f, max "
                "%.4f): %.2f MB/s\n",
                text.size(), lines.size(), n_ids, runs, med, secs.front(), secs.back(),
                text.size() / med / 1e6);
    return 0;
}
