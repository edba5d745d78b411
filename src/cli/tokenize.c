// `anneal tokenize`: text to token ids and pieces with the vocabulary of a GGUF file.
#include "cli/cli.h"

#include "anneal/gguf.h"
#include "anneal/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static const char *HELP =
    "usage: anneal tokenize -m FILE [--ids|--pieces|--json] [--no-bos] [--parse-special]\n"
    "                       [TEXT | -f FILE]\n"
    "Encodes text with the vocabulary in a GGUF file (tokenizer.ggml.*: SentencePiece-style\n"
    "\"llama\" or byte-level \"gpt2\" BPE). The text is TEXT, the contents of FILE, or stdin\n"
    "when neither is given; it is used byte for byte (a trailing newline is encoded too).\n"
    "\n"
    "  -m, --model FILE   GGUF model or vocabulary file (required)\n"
    "  -f, --file FILE    read the text from FILE\n"
    "  --ids              only the ids, space-separated, on one line\n"
    "  --pieces           only the pieces, one quoted piece per line\n"
    "  --json             "
    "{\"n_tokens\":N,\"ids\":[...],\"tokens\":[{\"id\",\"text\",\"piece\"}...]}\n"
    "  --no-bos           add no BOS/EOS (by default they are added as the vocabulary's\n"
    "                     add_bos_token/add_eos_token say)\n"
    "  --parse-special    text such as \"<|im_end|>\" becomes that control token (user-defined\n"
    "                     tokens are always matched)\n"
    "\n"
    "Default output: one line per token, `ID -> 'PIECE'`, the piece being the bytes the token\n"
    "stands for (control tokens shown), with \\n, \\t, \\xNN escapes for control characters\n"
    "and bytes that are not valid UTF-8. Exit status: 0 ok, 1 unreadable file or vocabulary,\n"
    "2 usage error.\n";

typedef enum { OUT_DEFAULT, OUT_IDS, OUT_PIECES, OUT_JSON } out_mode;


// Pieces are shown with special = true; with no memory for the piece buffer they print empty.
static void print_tokens(const anneal_tokenizer *t, const anneal_token *ids, size_t n,
                         out_mode mode) {
    char *piece = anneal_malloc(anneal_tokenizer_max_piece(t) + 1);
    size_t maxp = piece ? anneal_tokenizer_max_piece(t) : 0;
    if (mode == OUT_IDS) {
        for (size_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    } else if (mode == OUT_JSON) {
        printf("{\"n_tokens\":%zu,\"ids\":[", n);
        for (size_t i = 0; i < n; i++)
            printf(i ? ",%d" : "%d", ids[i]);
        printf("],\"tokens\":[");
        for (size_t i = 0; i < n; i++) {
            size_t tl;
            const char *text = anneal_tokenizer_token_text(t, ids[i], &tl);
            int64_t pl = anneal_tokenizer_piece(t, ids[i], true, piece, maxp);
            printf("%s{\"id\":%d,\"text\":", i ? "," : "", ids[i]);
            anneal_json_write_str(stdout, text, tl);
            printf(",\"piece\":");
            anneal_json_write_str(stdout, piece, (size_t)(pl < 0 ? 0 : pl));
            putchar('}');
        }
        printf("]}\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            int64_t pl = anneal_tokenizer_piece(t, ids[i], true, piece, maxp);
            if (mode == OUT_DEFAULT)
                printf("%6d -> '", ids[i]);
            else
                putchar('\'');
            cli_put_escaped(stdout, piece, (size_t)(pl < 0 ? 0 : pl), 0, CLI_ESC_SQUOTE);
            fputs("'\n", stdout);
        }
    }
    anneal_free(piece);
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *text_arg = NULL;
    out_mode mode = OUT_DEFAULT;
    unsigned flags = ANNEAL_TOK_ADD_SPECIAL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            return CLI_OK;
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if (++i >= argc) return cli_usage_error("tokenize", "%s needs a file", a);
            model = argv[i];
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
            if (++i >= argc) return cli_usage_error("tokenize", "%s needs a file", a);
            file = argv[i];
        } else if (strcmp(a, "--ids") == 0 || strcmp(a, "--pieces") == 0 ||
                   strcmp(a, "--json") == 0) {
            out_mode m = a[2] == 'i' ? OUT_IDS : a[2] == 'p' ? OUT_PIECES : OUT_JSON;
            if (mode != OUT_DEFAULT && mode != m)
                return cli_usage_error("tokenize", "--ids, --pieces and --json exclude each other");
            mode = m;
        } else if (strcmp(a, "--no-bos") == 0) {
            flags &= ~(unsigned)ANNEAL_TOK_ADD_SPECIAL;
        } else if (strcmp(a, "--parse-special") == 0) {
            flags |= ANNEAL_TOK_PARSE_SPECIAL;
        } else if (strcmp(a, "--") == 0 && i + 1 < argc && !text_arg) {
            text_arg = argv[++i];
        } else if (a[0] == '-' && a[1] != 0) {
            return cli_usage_error("tokenize", "unknown flag '%s'", a);
        } else if (!text_arg) {
            text_arg = a;
        } else {
            return cli_usage_error("tokenize", "one TEXT argument at most (quote it)");
        }
    }
    if (!model)
        return cli_usage_error("tokenize", "missing -m FILE (the GGUF model or vocabulary)");
    if (file && text_arg) return cli_usage_error("tokenize", "give TEXT or -f FILE, not both");

    anneal_err err = {0};
    anneal_gguf *g = NULL;
    anneal_tokenizer *t = NULL;
    if (anneal_gguf_open(model, &g, &err)) {
        fprintf(stderr, "anneal tokenize: %s\n", anneal_err_msg(&err));
        return CLI_FAIL;
    }
    anneal_status st = anneal_tokenizer_load(g, &t, &err);
    anneal_gguf_close(g);
    if (st) {
        fprintf(stderr, "anneal tokenize: %s: %s\n", model, anneal_err_msg(&err));
        return CLI_FAIL;
    }

    char *owned = NULL;
    const char *text;
    size_t len;
    if (text_arg) {
        text = text_arg;
        len = strlen(text_arg);
    } else if (file) {
        st = anneal_read_file(file, CLI_MAX_STDIN, &owned, &len, &err);
        text = owned;
    } else {
        owned = cli_read_stdin(&len, &err);
        st = owned ? ANNEAL_OK : err.status;
        text = owned;
    }
    int rc = CLI_OK;
    anneal_token *ids = NULL;
    size_t n = 0;
    if (!st) {
        // Usually one id per byte or fewer; when not, the exact count comes back: retry.
        size_t cap = len + 4;
        for (int attempt = 0; attempt < 2; attempt++) {
            anneal_free(ids);
            ids = anneal_malloc(cap * sizeof *ids);
            if (!ids) {
                st = anneal_err_set(&err, ANNEAL_ERR_NOMEM, "out of memory for %zu ids", cap);
                break;
            }
            anneal_err_clear(&err);
            st = anneal_tokenizer_encode(t, text, len, flags, ids, cap, &n, &err);
            if (st != ANNEAL_ERR_RANGE) break;
            cap = n;
        }
    }
    if (st) {
        fprintf(stderr, "anneal tokenize: %s\n", anneal_err_msg(&err));
        rc = CLI_FAIL;
    } else {
        print_tokens(t, ids, n, mode);
    }
    anneal_free(ids);
    anneal_free(owned);
    anneal_tokenizer_free(t);
    return rc;
}
