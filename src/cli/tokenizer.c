// `anneal tokenizer`: vocabulary tools; `train` learns a BPE vocabulary from text files and
// writes it as a vocabulary-only GGUF.
#include "cli/cli.h"

#include "anneal/lineage.h"
#include "anneal/tokenizer.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *HELP =
    "usage: anneal tokenizer <subcommand> [flags]\n"
    "Vocabulary tools.\n"
    "\n"
    "subcommands:\n"
    "  train    learn a BPE vocabulary from text files and write it as a GGUF file\n"
    "\n"
    "`anneal tokenizer <subcommand> --help` for details.\n";

static const char *TRAIN_HELP =
    "usage: anneal tokenizer train --vocab-size N --type bpe|spm-bpe [--special TOKEN]...\n"
    "                              [--pre NAME] [--min-frequency N]\n"
    "                              [--character-coverage F] [--json] CORPUS... -o VOCAB.gguf\n"
    "Learns a BPE vocabulary from text and writes it as a vocabulary-only GGUF file\n"
    "(tokenizer.ggml.* keys and anneal.lineage.*) that `anneal tokenize -m`, `anneal init\n"
    "--vocab` and the engine load. CORPUS is a text file or a directory (its files,\n"
    "recursively, in name order; names starting with '.' are skipped). Files are read line\n"
    "by line; lines that are not valid UTF-8 are reported as PATH:LINE and skipped.\n"
    "\n"
    "  --vocab-size N            tokens in all (specials, bytes, characters, merges)\n"
    "  --type bpe                byte-level BPE as GPT-2 / Llama 3 (tokenizer.ggml.model gpt2)\n"
    "  --type spm-bpe            SentencePiece-style BPE as Llama 2 (tokenizer.ggml.model llama):\n"
    "                            <unk> <s> </s>, byte fallback <0x00>..<0xFF>, spaces as U+2581\n"
    "  --special TOKEN           an extra control token (repeatable); bpe always has\n"
    "                            <|endoftext|> (BOS and EOS), spm-bpe <unk> <s> </s>\n"
    "  --pre NAME                bpe pre-tokenizer (tokenizer.ggml.pre; default gpt-2; e.g.\n"
    "                            llama-bpe, qwen2; docs/pretokenizers.md lists them)\n"
    "  --min-frequency N         never merge a pair seen fewer than N times (default 2)\n"
    "  --character-coverage F    spm-bpe: share of character occurrences given a character\n"
    "                            token, the rest use byte fallback (default 0.9995)\n"
    "  -o, --output FILE         the GGUF file to write (replaced atomically)\n"
    "  --json                    print the summary as one JSON object\n"
    "\n"
    "Progress goes to stderr. Exit status: 0 ok, 1 unreadable input or unwritable output,\n"
    "2 usage error.\n";

#define CMD "tokenizer train"
#define READ_BLOCK ((size_t)1 << 20)
#define MAX_LINE ((size_t)64 << 20) // longer lines are skipped (they are held whole)
#define MAX_REPORTS 20              // invalid lines reported one by one, then counted

typedef struct corpus_file {
    char *path;
    uint64_t size;
    char sha256[65];
} corpus_file;

typedef struct train_cli {
    corpus_file *files;
    size_t n_files, cap_files;
    uint64_t total_bytes, done_bytes;
    uint64_t lines, skipped, reported;
    cli_progress prog;
    bool tty;
    int merge_permille;
} train_cli;

static bool add_file(train_cli *c, const char *path, uint64_t size) {
    if (c->n_files == c->cap_files) {
        size_t cap = c->cap_files ? c->cap_files * 2 : 16;
        corpus_file *f = anneal_realloc_array(c->files, cap, sizeof *f);
        if (!f) return false;
        c->files = f, c->cap_files = cap;
    }
    char *p = anneal_strndup(path, strlen(path));
    if (!p) return false;
    c->files[c->n_files++] = (corpus_file){.path = p, .size = size};
    c->total_bytes += size;
    return true;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Adds path (a file, or a directory's files recursively in name order). Errors name the path.
static anneal_status collect(train_cli *c, const char *path, int depth, anneal_err *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return anneal_err_set(err, ANNEAL_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        if (access(path, R_OK) != 0)
            return anneal_err_set(err, ANNEAL_ERR_IO, "cannot read '%s': %s", path,
                                  strerror(errno));
        return add_file(c, path, (uint64_t)st.st_size)
                   ? ANNEAL_OK
                   : anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    }
    if (!S_ISDIR(st.st_mode))
        return anneal_err_set(err, ANNEAL_ERR_INVALID_ARG,
                              "'%s' is neither a regular file nor a directory", path);
    if (depth >= 64)
        return anneal_err_set(err, ANNEAL_ERR_LIMIT, "'%s': directories nested over 64 deep", path);
    DIR *d = opendir(path);
    if (!d)
        return anneal_err_set(err, ANNEAL_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    anneal_status s = ANNEAL_OK;
    struct dirent *e;
    while (!s && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = anneal_realloc_array(names, cap, sizeof *nn);
            if (!nn) {
                s = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
                break;
            }
            names = nn;
        }
        size_t len = strlen(path) + 1 + strlen(e->d_name);
        char *full = anneal_malloc(len + 1);
        if (!full) {
            s = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
            break;
        }
        bool slash = path[strlen(path) - 1] == '/';
        snprintf(full, len + 1, "%s%s%s", path, slash ? "" : "/", e->d_name);
        names[n++] = full;
    }
    closedir(d);
    if (!s && n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (!s) s = collect(c, names[i], depth + 1, err);
        anneal_free(names[i]);
    }
    anneal_free(names);
    return s;
}

// True when s[0..n) is valid UTF-8; *bad gets the offset of the first invalid byte.
static bool utf8_ok(const char *s, size_t n, size_t *bad) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, u + i, 8);
            if (!(v & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = anneal_utf8_decode(u + i, n - i, &cp);
        if (!l) {
            *bad = i;
            return false;
        }
        i += l;
    }
    return true;
}

static void label_file(void *ctx, size_t i, FILE *f) {
    const train_cli *c = ctx;
    fputs(c->files[i].path, f);
}

static void merge_progress(void *ctx, uint32_t done, uint32_t total) {
    train_cli *c = ctx;
    if (!c->tty) return;
    int permille = total ? (int)(1000.0 * done / total) : 1000;
    if (permille == c->merge_permille) return;
    c->merge_permille = permille;
    char bar[31];
    for (int k = 0; k < 30; k++)
        bar[k] = k < permille * 30 / 1000 ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r  [%s] %3d%% merges %u/%u\033[K", bar, permille / 10, done, total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static void report_line(train_cli *c, const char *path, uint64_t line, const char *why) {
    c->skipped++;
    if (c->reported++ >= MAX_REPORTS) return;
    cli_progress_end(&c->prog);
    fprintf(stderr, "anneal " CMD ": %s:%" PRIu64 ": %s, line skipped\n", path, line, why);
}

// Streams file i into the trainer: complete valid lines are passed on in runs, straight
// from the read buffer; invalid ones are reported and left out. Hashes the bytes read.
static anneal_status read_file(train_cli *c, size_t i, anneal_tokenizer_trainer *tr,
                               anneal_err *err) {
    corpus_file *cf = &c->files[i];
    FILE *f = fopen(cf->path, "rb");
    if (!f)
        return anneal_err_set(err, ANNEAL_ERR_IO, "cannot read '%s': %s", cf->path,
                              strerror(errno));
    anneal_sha256 sha;
    anneal_status st = anneal_sha256_init(&sha);
    if (st) {
        fclose(f);
        return anneal_err_set(err, st, "SHA-256 unavailable");
    }
    size_t cap = READ_BLOCK, have = 0;
    char *buf = anneal_malloc(cap);
    bool doc_start = true, skipping = false, eof = false;
    uint64_t line = 0, file_done = 0;
    if (!buf) st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
    while (!st && !eof) {
        if (have == cap) {
            if (cap < MAX_LINE) {
                char *nb = anneal_realloc(buf, cap * 2);
                if (!nb) {
                    st = anneal_err_set(err, ANNEAL_ERR_NOMEM, "out of memory");
                    break;
                }
                buf = nb, cap *= 2;
            } else {
                // The rest of this line up to its newline is skipped as well.
                if (!skipping) report_line(c, cf->path, line + 1, "longer than 64 MiB");
                skipping = true;
                have = 0;
            }
        }
        size_t r = fread(buf + have, 1, cap - have, f);
        if (r == 0) {
            if (ferror(f)) {
                st = anneal_err_set(err, ANNEAL_ERR_IO, "reading '%s': %s", cf->path,
                                    strerror(errno));
                break;
            }
            eof = true;
        }
        anneal_sha256_update(&sha, buf + have, r);
        size_t scan = have; // bytes before this were already searched for a newline
        have += r;
        file_done += r;
        size_t p = 0, run = 0; // run: start of the valid lines not yet passed on
        while (p < have) {
            char *nl = memchr(buf + scan, '\n', have - scan);
            size_t end;
            if (nl)
                end = (size_t)(nl - buf) + 1;
            else if (eof)
                end = have; // the last line, without a newline
            else
                break;
            line++;
            size_t bad = 0;
            if (skipping || !utf8_ok(buf + p, end - p, &bad)) {
                if (run < p && !st) {
                    st = anneal_tokenizer_trainer_add(tr, buf + run, p - run, doc_start, err);
                    doc_start = false;
                }
                if (!skipping) {
                    char why[64];
                    snprintf(why, sizeof why, "invalid UTF-8 at byte %zu", bad + 1);
                    report_line(c, cf->path, line, why);
                }
                skipping = false;
                run = end;
            }
            p = scan = end;
        }
        if (run < p && !st) {
            st = anneal_tokenizer_trainer_add(tr, buf + run, p - run, doc_start, err);
            doc_start = false;
        }
        memmove(buf, buf + p, have - p);
        have -= p;
        c->done_bytes += r;
        // The bar's last drawing (which ends its line) is the file's completion, in train().
        if (r && c->done_bytes < c->total_bytes)
            cli_progress_update(&c->prog, i, false, c->done_bytes, c->total_bytes);
    }
    c->lines += line + (skipping ? 1 : 0); // a skipped last line without its newline
    anneal_free(buf);
    fclose(f);
    uint8_t digest[32];
    anneal_sha256_final(&sha, digest);
    anneal_hex(digest, 32, cf->sha256);
    if (!st && file_done != cf->size) c->total_bytes += file_done - cf->size; // grew meanwhile
    return st;
}

static int train(int argc, char **argv) {
    long vocab = -1, min_freq = -1;
    double coverage = -1;
    const char *type = NULL, *pre = NULL, *out = NULL;
    bool json = false;
    const char **specials = anneal_calloc((size_t)argc + 1, sizeof *specials);
    const char **paths = anneal_calloc((size_t)argc + 1, sizeof *paths);
    size_t n_specials = 0, n_paths = 0;
    int rc = CLI_OK;
    train_cli c = {.merge_permille = -1};
    anneal_tokenizer_trainer *tr = NULL;
    char *command = NULL;
    anneal_lineage_parent *parents = NULL;
    if (!specials || !paths) {
        fprintf(stderr, "anneal " CMD ": out of memory\n");
        rc = CLI_FAIL;
        goto done;
    }
    bool only_paths = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_paths || a[0] != '-' || a[1] == 0) {
            paths[n_paths++] = a;
            continue;
        }
        if (cli_is_help(a)) {
            fputs(TRAIN_HELP, stdout);
            goto done;
        }
        if (strcmp(a, "--") == 0) {
            only_paths = true;
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            if (json) {
                rc = cli_usage_error(CMD, "--json given twice");
                goto done;
            }
            json = true;
            continue;
        }
        bool known = !strcmp(a, "--vocab-size") || !strcmp(a, "--type") ||
                     !strcmp(a, "--special") || !strcmp(a, "--pre") ||
                     !strcmp(a, "--min-frequency") || !strcmp(a, "--character-coverage") ||
                     !strcmp(a, "-o") || !strcmp(a, "--output");
        if (!known) {
            rc = cli_usage_error(CMD, "unknown flag '%s' (see --help)", a);
            goto done;
        }
        if (++i >= argc) {
            rc = cli_usage_error(CMD, "%s needs a value", a);
            goto done;
        }
        const char *v = argv[i];
        if (!strcmp(a, "--special")) {
            specials[n_specials++] = v;
        } else if (!strcmp(a, "--vocab-size")) {
            if (vocab >= 0) {
                rc = cli_usage_error(CMD, "--vocab-size given twice");
                goto done;
            }
            if (!cli_parse_long(v, 1, 1L << 21, &vocab)) {
                rc = cli_usage_error(CMD, "--vocab-size '%s' is not a whole number in 1..2097152",
                                     v);
                goto done;
            }
        } else if (!strcmp(a, "--type")) {
            if (type) {
                rc = cli_usage_error(CMD, "--type given twice");
                goto done;
            }
            if (strcmp(v, "bpe") != 0 && strcmp(v, "spm-bpe") != 0) {
                rc = cli_usage_error(CMD, "--type '%s' is not bpe or spm-bpe", v);
                goto done;
            }
            type = v;
        } else if (!strcmp(a, "--pre")) {
            if (pre) {
                rc = cli_usage_error(CMD, "--pre given twice");
                goto done;
            }
            pre = v;
        } else if (!strcmp(a, "--min-frequency")) {
            if (min_freq >= 0) {
                rc = cli_usage_error(CMD, "--min-frequency given twice");
                goto done;
            }
            if (!cli_parse_long(v, 1, 1L << 30, &min_freq)) {
                rc = cli_usage_error(CMD, "--min-frequency '%s' is not a whole number >= 1", v);
                goto done;
            }
        } else if (!strcmp(a, "--character-coverage")) {
            if (coverage >= 0) {
                rc = cli_usage_error(CMD, "--character-coverage given twice");
                goto done;
            }
            char *end;
            errno = 0;
            coverage = strtod(v, &end);
            if (errno || end == v || *end || !(coverage > 0 && coverage <= 1)) {
                rc = cli_usage_error(CMD, "--character-coverage '%s' is not a number in (0, 1]", v);
                goto done;
            }
        } else {
            if (out) {
                rc = cli_usage_error(CMD, "%s given twice", a);
                goto done;
            }
            out = v;
        }
    }
    if (vocab < 0)
        rc = cli_usage_error(CMD, "missing --vocab-size N");
    else if (!type)
        rc = cli_usage_error(CMD, "missing --type bpe|spm-bpe");
    else if (!out)
        rc = cli_usage_error(CMD, "missing -o VOCAB.gguf");
    else if (!n_paths)
        rc = cli_usage_error(CMD, "missing CORPUS (text files or directories)");
    if (rc) goto done;
    bool spm = strcmp(type, "spm-bpe") == 0;
    if (spm && pre) {
        rc = cli_usage_error(CMD, "--pre applies to --type bpe only");
        goto done;
    }
    if (!spm && coverage >= 0) {
        rc = cli_usage_error(CMD, "--character-coverage applies to --type spm-bpe only");
        goto done;
    }
    long min_vocab = (long)n_specials + (spm ? 3 + 256 + 1 : 1 + 256);
    if (vocab < min_vocab) {
        rc = cli_usage_error(CMD,
                             "--vocab-size %ld is too small: %s needs at least %ld (%zu special "
                             "tokens + 256 byte tokens%s)",
                             vocab, type, min_vocab, n_specials + (spm ? 3 : 1),
                             spm ? " + the space character" : "");
        goto done;
    }

    anneal_err err = {0};
    anneal_tokenizer_train_opts o = {
        .kind = spm ? ANNEAL_TOK_SPM : ANNEAL_TOK_BPE,
        .vocab_size = (uint32_t)vocab,
        .pre = pre,
        .specials = specials,
        .n_specials = n_specials,
        .min_frequency = min_freq > 0 ? (uint32_t)min_freq : 0,
        .character_coverage = coverage > 0 ? coverage : 0,
        .progress = merge_progress,
        .progress_ctx = &c,
    };
    anneal_status st = anneal_tokenizer_trainer_new(&o, &tr, &err);
    if (st == ANNEAL_ERR_UNSUPPORTED) {
        rc = cli_usage_error(CMD, "--pre: %s", anneal_err_msg(&err));
        goto done;
    }
    if (st == ANNEAL_ERR_INVALID_ARG) {
        rc = cli_usage_error(CMD, "--special: %s", anneal_err_msg(&err));
        goto done;
    }
    if (st) {
        rc = cli_fail(CMD, &err);
        goto done;
    }
    for (size_t i = 0; i < n_paths && !st; i++)
        st = collect(&c, paths[i], 0, &err);
    if (st) {
        rc = cli_fail(CMD, &err);
        goto done;
    }

    uint64_t t0 = anneal_time_ns();
    c.tty = isatty(2) != 0;
    cli_progress_start(&c.prog, c.n_files, label_file, &c);
    for (size_t i = 0; i < c.n_files && !st; i++) {
        st = read_file(&c, i, tr, &err);
        if (!st)
            cli_progress_update(&c.prog, i, true, i + 1 == c.n_files ? c.total_bytes : c.done_bytes,
                                c.total_bytes ? c.total_bytes : 1);
    }
    cli_progress_end(&c.prog);
    if (st) {
        rc = cli_fail(CMD, &err);
        goto done;
    }
    if (c.reported > MAX_REPORTS)
        fprintf(stderr, "anneal " CMD ": %" PRIu64 " more lines skipped (not listed)\n",
                c.reported - MAX_REPORTS);

    parents = anneal_calloc(c.n_files ? c.n_files : 1, sizeof *parents);
    // argv[-1] is "tokenizer": cmd_tokenizer passed its own argv + 1.
    command = anneal_lineage_command(argc + 1, argv - 1);
    if (!parents || !command) {
        fprintf(stderr, "anneal " CMD ": out of memory\n");
        rc = CLI_FAIL;
        goto done;
    }
    for (size_t i = 0; i < c.n_files; i++) {
        memcpy(parents[i].sha256, c.files[i].sha256, 65);
        parents[i].role = "corpus";
        parents[i].path = c.files[i].path;
    }
    anneal_lineage lin = {.parents = parents, .n_parents = c.n_files, .command = command};
    anneal_tokenizer_train_stats s = {0};
    st = anneal_tokenizer_trainer_write(tr, out, &lin, &s, &err);
    if (st) {
        rc = cli_fail(CMD, &err);
        goto done;
    }
    double secs = (double)(anneal_time_ns() - t0) / 1e9;
    if (s.n_vocab < (uint32_t)vocab)
        fprintf(stderr,
                "anneal " CMD ": only %u tokens: no pair left that occurs at least %ld times\n",
                s.n_vocab, min_freq > 0 ? min_freq : 2);
    if (json) {
        printf("{\"output\":");
        anneal_json_write_str(stdout, out, strlen(out));
        printf(",\"type\":\"%s\",\"vocab_size\":%u,\"n_merges\":%u,\"n_chars\":%u,"
               "\"chars_dropped\":%u,\"files\":%zu,\"bytes\":%" PRIu64 ",\"lines\":%" PRIu64
               ",\"skipped_lines\":%" PRIu64 ",\"words\":%" PRIu64 ",\"unique_words\":%" PRIu64
               ",\"long_words\":%" PRIu64 ",\"tokens\":%" PRIu64
               ",\"seconds\":%.3f,\"merge_seconds\":%.3f}\n",
               type, s.n_vocab, s.n_merges, s.n_chars, s.n_chars_dropped, c.n_files, s.bytes,
               c.lines, c.skipped, s.words, s.unique_words, s.long_words, s.tokens, secs,
               s.merge_seconds);
    } else {
        printf("wrote %s: %s, %u tokens (%u merges) from %zu file%s, %" PRIu64 " bytes, %" PRIu64
               " lines (%" PRIu64 " skipped), %" PRIu64 " distinct words, %.3f tokens/byte; "
               "%.2f s (merges %.2f s)\n",
               out, type, s.n_vocab, s.n_merges, c.n_files, c.n_files == 1 ? "" : "s", s.bytes,
               c.lines, c.skipped, s.unique_words,
               s.bytes ? (double)s.tokens / (double)s.bytes : 0.0, secs, s.merge_seconds);
    }
done:
    anneal_tokenizer_trainer_free(tr);
    for (size_t i = 0; i < c.n_files; i++)
        anneal_free(c.files[i].path);
    anneal_free(c.files);
    anneal_free(parents);
    anneal_free(command);
    anneal_free(specials);
    anneal_free(paths);
    return rc;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2) {
        fputs(HELP, stderr);
        return CLI_USAGE;
    }
    if (cli_is_help(argv[1])) {
        fputs(HELP, stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "train") == 0) return train(argc - 1, argv + 1);
    fprintf(stderr, "anneal tokenizer: unknown subcommand '%s'\n(see: anneal tokenizer --help)\n",
            argv[1]);
    return CLI_USAGE;
}
