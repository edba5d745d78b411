// anneal tokenizer: vocabularies from GGUF metadata (tokenizer.ggml.*), SentencePiece-style
// BPE ("llama") and byte-level BPE ("gpt2") with pre-tokenizers, special tokens, decoding
// and streaming detokenization.
#ifndef ANNEAL_TOKENIZER_H
#define ANNEAL_TOKENIZER_H

#include "anneal/base.h"
#include "anneal/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t anneal_token;

typedef enum anneal_tok_kind {
    ANNEAL_TOK_SPM = 1, // tokenizer.ggml.model = "llama"
    ANNEAL_TOK_BPE = 2, // tokenizer.ggml.model = "gpt2"
} anneal_tok_kind;

// Token types; the numbers are tokenizer.ggml.token_type's.
typedef enum anneal_tok_type {
    ANNEAL_TOK_TYPE_UNDEFINED = 0,
    ANNEAL_TOK_TYPE_NORMAL = 1,
    ANNEAL_TOK_TYPE_UNKNOWN = 2,
    ANNEAL_TOK_TYPE_CONTROL = 3,
    ANNEAL_TOK_TYPE_USER_DEFINED = 4,
    ANNEAL_TOK_TYPE_UNUSED = 5,
    ANNEAL_TOK_TYPE_BYTE = 6,
} anneal_tok_type;

typedef struct anneal_tokenizer anneal_tokenizer; // immutable after load; thread-safe to use

// Builds a tokenizer from a GGUF file's metadata: tokenizer.ggml.model ("llama" | "gpt2"),
// .tokens, .scores, .token_type, .merges (gpt2), .pre (gpt2; absent = "default"), the
// bos/eos/unknown/padding token ids and add_bos_token / add_eos_token / add_space_prefix.
// Everything is validated (array lengths, ids in range, merges naming known tokens,
// duplicate texts, a known pre-tokenizer) and errors name the key and index at fault.
// The tokenizer copies what it needs and does not keep `g`. Free with anneal_tokenizer_free.
anneal_status anneal_tokenizer_load(const anneal_gguf *g, anneal_tokenizer **out, anneal_err *err);
void anneal_tokenizer_free(anneal_tokenizer *t); // accepts NULL

anneal_tok_kind anneal_tokenizer_kind(const anneal_tokenizer *t);
const char *anneal_tokenizer_pre(const anneal_tokenizer *t); // pre-tokenizer name in use
int32_t anneal_tokenizer_n_vocab(const anneal_tokenizer *t);
// Special ids; -1 when the vocabulary has none. Absent keys default as llama.cpp does for
// "llama" vocabularies (BOS 1, EOS 2, UNK 0); "gpt2" ones have none by default.
anneal_token anneal_tokenizer_bos(const anneal_tokenizer *t);
anneal_token anneal_tokenizer_eos(const anneal_tokenizer *t);
anneal_token anneal_tokenizer_unk(const anneal_tokenizer *t);
anneal_token anneal_tokenizer_pad(const anneal_tokenizer *t);
// tokenizer.ggml.add_bos_token; default true for "llama" and llama3-style "gpt2" ones.
bool anneal_tokenizer_add_bos(const anneal_tokenizer *t);
bool anneal_tokenizer_add_eos(const anneal_tokenizer *t); // tokenizer.ggml.add_eos_token
// SPM: tokenizer.ggml.add_space_prefix (default true). Always false for byte-level BPE.
bool anneal_tokenizer_add_space_prefix(const anneal_tokenizer *t);
// The raw token text as stored in the vocabulary (▁ / Ġ escapes kept), NUL-terminated;
// NULL (and *len 0) if out of range. `len` may be NULL.
const char *anneal_tokenizer_token_text(const anneal_tokenizer *t, anneal_token id, size_t *len);
// UNDEFINED for an id out of range.
anneal_tok_type anneal_tokenizer_token_type(const anneal_tokenizer *t, anneal_token id);
float anneal_tokenizer_token_score(const anneal_tokenizer *t, anneal_token id); // 0 if out of range
// Looks up a token by its exact vocabulary text; -1 if absent.
anneal_token anneal_tokenizer_find(const anneal_tokenizer *t, const char *text, size_t len);
// The longest piece (anneal_tokenizer_piece with special = true) in bytes.
size_t anneal_tokenizer_max_piece(const anneal_tokenizer *t);

enum {
    ANNEAL_TOK_ADD_SPECIAL = 1 << 0,   // add BOS/EOS as the vocabulary's add_*_token say
    ANNEAL_TOK_PARSE_SPECIAL = 1 << 1, // text like "<|im_end|>" becomes that control token
};

// Encodes len bytes of text (need not be NUL-terminated; at most 2^30 bytes per call).
// Invalid UTF-8 is never rejected: SPM encodes each invalid byte through byte fallback
// (<0xNN>), byte-level BPE encodes bytes anyway.
// Special tokens: user-defined tokens are always split out of the text (as llama.cpp and
// Hugging Face do); control and unknown-type tokens only with ANNEAL_TOK_PARSE_SPECIAL.
// The leftmost match wins, the longest at that position. SPM adds the space prefix before
// the first text fragment and after every special token, as llama.cpp does.
// Writes up to cap ids and sets *n_ids to the full count; returns ANNEAL_ERR_RANGE (the
// first cap ids are written) when cap is too small, so callers can retry with *n_ids.
// Uses per-thread scratch memory that is kept between calls (no allocation per call in
// the steady state); safe to call from many threads on one tokenizer.
anneal_status anneal_tokenizer_encode(const anneal_tokenizer *t, const char *text, size_t len,
                                      unsigned flags, anneal_token *ids, size_t cap, size_t *n_ids,
                                      anneal_err *err);

// The bytes one token stands for (▁ -> ' ', byte tokens -> the byte, byte-level BPE
// mapped back to bytes, user-defined tokens verbatim). Control, unknown-type and unused
// tokens give "" unless `special` is true (then their text). No leading space is stripped.
// Writes up to cap bytes (no NUL); returns the full length (may exceed cap), or -1 for a
// bad id.
int64_t anneal_tokenizer_piece(const anneal_tokenizer *t, anneal_token id, bool special, char *out,
                               size_t cap);

// Decodes ids to the exact bytes they stand for (the pieces concatenated, no UTF-8 repair).
// When the vocabulary adds a space prefix (SPM), one leading space is removed from the
// first piece that produces any text (hidden BOS/control tokens do not count), so
// decode(encode(x)) == x for text without special tokens, with or without BOS.
// Sets *len to the full length and writes up to cap bytes, plus a NUL when it fits;
// ANNEAL_ERR_RANGE when cap is too small; ANNEAL_ERR_INVALID_ARG for a bad id.
anneal_status anneal_tokenizer_decode(const anneal_tokenizer *t, const anneal_token *ids, size_t n,
                                      bool special, char *out, size_t cap, size_t *len,
                                      anneal_err *err);

// Streaming detokenization: feed ids one at a time, get text that is safe to print. Bytes
// of an incomplete UTF-8 sequence are held back until the sequence completes (or is shown
// invalid, then emitted as U+FFFD, one per maximal ill-formed subpart). The leading-space
// rule is decode's. Caller owns the struct (no allocation; nothing to free).
typedef struct anneal_detok {
    const anneal_tokenizer *t;
    bool special;    // print control tokens
    bool first;      // strip the SentencePiece leading space from the next non-empty piece
    uint8_t held[8]; // pending bytes of an incomplete UTF-8 sequence (at most 3)
    size_t n_held;
} anneal_detok;
void anneal_detok_init(anneal_detok *d, const anneal_tokenizer *t, bool special);
// Appends the printable text produced by `id` to out (up to cap); returns the byte count
// written, or -1 for a bad id or when cap is too small (then nothing changes: retry with
// more room). cap >= 3 * (anneal_tokenizer_max_piece(t) + 3) is always enough.
int64_t anneal_detok_push(anneal_detok *d, anneal_token id, char *out, size_t cap);
// Ends the stream: held bytes become one U+FFFD. Returns bytes written (0 or 3), -1 if
// cap < 3 while bytes are held.
int64_t anneal_detok_flush(anneal_detok *d, char *out, size_t cap);

// ---- chat templates (src/tokenizer/chat.c, docs/tokenizer.md "Chat templates") ----------
// Renders a conversation into the prompt text a chat model was trained on, byte for byte
// what the model's own Jinja template renders with Hugging Face transformers (checked by
// tests/unit/test_chat.c against tests/reference/chat_render.py), except:
// - the BOS token text the template writes at the very start ("<s>", "<bos>",
//   "<|begin_of_text|>": anneal_chat_template_bos) is left out: tokenize the result with
//   ANNEAL_TOK_ADD_SPECIAL | ANNEAL_TOK_PARSE_SPECIAL and the vocabulary adds BOS, as
//   llama.cpp does (if anneal_tokenizer_add_bos is false, prepend the BOS text yourself).
//   Special token texts later in the text (e.g. Llama 2's "</s><s>") are kept: they need
//   ANNEAL_TOK_PARSE_SPECIAL.
// - inputs the real template would render silently wrong (an unknown role, a system
//   message that is not first where the template folds it into a user turn) are errors.
typedef enum anneal_chat_template {
    ANNEAL_CHAT_CHATML = 0,   // "chatml": <|im_start|>role\n...<|im_end|>\n
    ANNEAL_CHAT_LLAMA2 = 1,   // "llama2": <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST]
    ANNEAL_CHAT_LLAMA3 = 2,   // "llama3": Llama 3.1/3.2/3.3, with the system preamble
    ANNEAL_CHAT_MISTRAL = 3,  // "mistral": Mistral Nemo (v3-tekken) [INST]...[/INST]
    ANNEAL_CHAT_PHI3 = 4,     // "phi3": Phi-3/3.5 <|user|>\n...<|end|>\n
    ANNEAL_CHAT_GEMMA = 5,    // "gemma": Gemma 2/3 <start_of_turn>user\n...<end_of_turn>\n
    ANNEAL_CHAT_ZEPHYR = 6,   // "zephyr": <|user|>\n...</s>\n
    ANNEAL_CHAT_QWEN2 = 7,    // "qwen2": ChatML plus Qwen2.5's default system prompt
    ANNEAL_CHAT_LLAMA3_0 = 8, // "llama3.0": Llama 3.0, headers without the system preamble
    ANNEAL_CHAT_TEMPLATE_COUNT = 9,
} anneal_chat_template;

typedef struct anneal_chat_message {
    const char *role;    // "system", "user", "assistant"; "tool" (chatml, qwen2, llama3*);
                         // "ipython" (llama3*)
    const char *content; // UTF-8, NUL-terminated; "" is allowed, NULL is not
} anneal_chat_message;

// Recognizes a tokenizer.chat_template text by its markers (docs/tokenizer.md lists them).
// ANNEAL_ERR_NOT_FOUND when no known family matches (*out unchanged).
anneal_status anneal_chat_template_detect(const char *jinja, anneal_chat_template *out,
                                          anneal_err *err);
// Reads tokenizer.chat_template from `g` and detects it. When the key is absent or its
// template is not recognized, *out = ANNEAL_CHAT_CHATML (llama.cpp's default) and
// *fallback = true (`fallback` may be NULL); ANNEAL_ERR_FORMAT if the key is not a string.
anneal_status anneal_chat_template_from_gguf(const anneal_gguf *g, anneal_chat_template *out,
                                             bool *fallback, anneal_err *err);
// Parses a name as anneal_chat_template_name prints it ("chatml", "llama3", ...; also
// "qwen", "qwen2.5", "gemma2", "gemma3", "phi3.5", "mistral-nemo"). ANNEAL_ERR_INVALID_ARG
// for anything else (the message lists the names).
anneal_status anneal_chat_template_parse_name(const char *name, anneal_chat_template *out,
                                              anneal_err *err);
const char *anneal_chat_template_name(anneal_chat_template t); // "unknown" if out of range
// The text that ends an assistant turn ("<|im_end|>", "</s>", "<|eot_id|>", "<|end|>",
// "<end_of_turn>"): stop generating there (besides the vocabulary's EOS). "" if out of range.
const char *anneal_chat_template_stop(anneal_chat_template t);
// The BOS text the real template starts with and anneal_chat_apply leaves out ("" for
// chatml, qwen2, phi3, zephyr, whose templates write none; "" if out of range).
const char *anneal_chat_template_bos(anneal_chat_template t);

// Renders msgs[0..n) (n >= 1); with add_generation_prompt the text ends with the assistant
// header the model continues from (llama2 and mistral templates have none: the prompt
// already ends with "[/INST]"). Errors are ANNEAL_ERR_INVALID_ARG naming the message index
// and role: no messages, a NULL role or content, a role the template does not know, a
// system message after the first where the template folds it into a user turn (llama2,
// mistral, gemma), and roles that do not alternate user/assistant after the optional
// system message where the real template raises (llama2, mistral, gemma).
// *out is NUL-terminated, *out_len its length (may be NULL); caller frees with anneal_free.
anneal_status anneal_chat_apply(anneal_chat_template t, const anneal_chat_message *msgs, size_t n,
                                bool add_generation_prompt, char **out, size_t *out_len,
                                anneal_err *err);

// ---- training a vocabulary (src/tokenizer/train.c, docs/tokenizer.md) ---------------------
// Learns a BPE vocabulary from text and writes it as tokenizer.ggml.* keys that
// anneal_tokenizer_load reads back. Two kinds:
//  - ANNEAL_TOK_BPE: byte-level BPE (tokenizer.ggml.model "gpt2"): 256 byte tokens, merges
//    learned inside the pieces of a pre-tokenizer, written as tokenizer.ggml.merges.
//  - ANNEAL_TOK_SPM: SentencePiece-style BPE ("llama"): spaces as U+2581, <unk> <s> </s>,
//    byte fallback <0x00>..<0xFF>, the most frequent characters, merged pieces scored so
//    the encoder merges in the learned order.
// Merges are chosen by pair frequency over distinct words (pre-tokens) weighted by their
// counts; ties go to the pair with the smaller (left id, right id), ids counted in the
// order tokens were made. Same text in the same order gives the same vocabulary.

typedef struct anneal_tokenizer_train_opts {
    anneal_tok_kind kind; // ANNEAL_TOK_BPE or ANNEAL_TOK_SPM
    uint32_t vocab_size;  // every token counted (specials, bytes, characters, merges)
    const char *pre;      // BPE pre-tokenizer (tokenizer.ggml.pre); NULL or "" = "gpt-2"
    // Extra control tokens (after the default ones: "<|endoftext|>" for BPE; "<unk>",
    // "<s>", "</s>" for SPM). Copied. Their text is cut out of the training text.
    const char *const *specials;
    size_t n_specials;
    uint32_t min_frequency;    // pairs seen fewer times are never merged; 0 = 2
    double character_coverage; // SPM: share of character occurrences that get a character
                               // token (the rest use byte fallback); 0 = 0.9995
    // Called during the merge phase (about 200 times) with merges done / wanted. May be NULL.
    void (*progress)(void *ctx, uint32_t done, uint32_t total);
    void *progress_ctx;
} anneal_tokenizer_train_opts;

typedef struct anneal_tokenizer_train_stats {
    uint64_t bytes;           // text bytes added
    uint64_t words;           // words (pre-tokens) counted
    uint64_t unique_words;    // distinct words
    uint64_t long_words;      // words over 1024 bytes, left out of the merge statistics
    uint64_t tokens;          // tokens the text takes with the vocabulary learned (words over
                              // 1024 bytes not counted): what encoding it gives, chunk by chunk
    uint32_t n_vocab;         // tokens written
    uint32_t n_merges;        // merges learned (BPE: entries of tokenizer.ggml.merges)
    uint32_t n_chars;         // SPM: character tokens (BPE: 256 byte tokens)
    uint32_t n_chars_dropped; // SPM: characters seen but left to byte fallback
    double merge_seconds;     // time finish took (alphabet, pair counts, merges, keys)
} anneal_tokenizer_train_stats;

typedef struct anneal_tokenizer_trainer anneal_tokenizer_trainer;

// Checks the options and makes an empty trainer. ANNEAL_ERR_INVALID_ARG (naming the
// option) for a vocab_size below the base alphabet plus specials, an empty, duplicate or
// invalid UTF-8 special, a special that is a base token's text; ANNEAL_ERR_UNSUPPORTED
// for an unknown pre-tokenizer. Free with anneal_tokenizer_trainer_free.
anneal_status anneal_tokenizer_trainer_new(const anneal_tokenizer_train_opts *o,
                                           anneal_tokenizer_trainer **out, anneal_err *err);
void anneal_tokenizer_trainer_free(anneal_tokenizer_trainer *tr); // accepts NULL

// Counts the words of len bytes of text (at most 2^30 per call). doc_start says the text
// begins a document: SPM puts its space prefix there (and after every special token), as
// the encoder does at the start of each encode call. Chunks are pre-tokenized on their
// own, so cut long texts at line ends. Any bytes are accepted.
anneal_status anneal_tokenizer_trainer_add(anneal_tokenizer_trainer *tr, const char *text,
                                           size_t len, bool doc_start, anneal_err *err);

// Learns the merges and sets the vocabulary keys in w (general.architecture "llama",
// general.name, tokenizer.ggml.*), nothing else. Once per trainer; stats may be NULL.
anneal_status anneal_tokenizer_trainer_finish(anneal_tokenizer_trainer *tr, anneal_gguf_writer *w,
                                              anneal_tokenizer_train_stats *stats, anneal_err *err);

// finish, then the anneal.lineage.* keys from lin (parents and command; a NULL lin->config
// records the training options), then writes the file at path atomically.
struct anneal_lineage; // anneal/lineage.h
anneal_status anneal_tokenizer_trainer_write(anneal_tokenizer_trainer *tr, const char *path,
                                             const struct anneal_lineage *lin,
                                             anneal_tokenizer_train_stats *stats, anneal_err *err);

#ifdef __cplusplus
}
#endif
#endif
